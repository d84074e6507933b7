"""Security headers of every HTML page, fragment and static file of the web app."""

from __future__ import annotations

from litestar import Response

__all__ = ["CSP", "SECURITY_HEADERS", "security_headers"]

# No inline script or style anywhere, nothing from another origin, never framed.
# `blob:` images are the local previews of a query image and of uploads.
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


async def security_headers(response: Response[object]) -> Response[object]:
    """After-request hook of every page, fragment and static file of the web app."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
