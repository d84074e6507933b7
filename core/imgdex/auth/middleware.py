"""Who is asking, CSRF for cookie sessions, and security headers on HTML responses.

`AuthMiddleware` runs before every route: it refuses API keys in query strings, resolves
the request's `Principal` (``Authorization: Bearer`` with the admin token or an API key,
else the session cookie, else anonymous) into the scope for the guards, and sends
requests authenticated by the session cookie through Litestar's `CSRFMiddleware`
(double submit: the ``csrftoken`` cookie echoed in ``X-CSRFToken``). Bearer requests
skip CSRF: a browser never attaches that header by itself, so a forged cross-site
request cannot carry it.

`SecurityHeadersMiddleware` adds CSP, ``X-Content-Type-Options``, ``frame-ancestors``
and ``Referrer-Policy`` to every ``text/html`` response that does not set its own.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl

import anyio.to_thread
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware.csrf import CSRFMiddleware

from imgdex.auth.policy import Principal, anonymous
from imgdex.auth.tokens import KEY_PREFIX
from imgdex.errors import BadRequest

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from imgdex.auth.service import AuthService

__all__ = [
    "PRINCIPAL_KEY",
    "SESSION_COOKIE",
    "AuthMiddleware",
    "SecurityHeadersMiddleware",
    "csrf_config",
]

PRINCIPAL_KEY = "imgdex.principal"
SESSION_COOKIE = "imgdex_session"
# Query parameters that look like credentials: refused so that keys never sit in URLs
# (access logs, proxies, browser history).
_CREDENTIAL_PARAMS = {"api_key", "apikey", "access_token", "token"}


def csrf_config(secret: str) -> CSRFConfig:
    """Litestar's double-submit defaults: a ``csrftoken`` cookie the page can read and an
    ``X-CSRFToken`` header on unsafe requests."""
    return CSRFConfig(
        secret=secret, cookie_name="csrftoken", header_name="x-csrftoken", cookie_samesite="lax"
    )


def _refuse_key_in_query(scope: Scope) -> None:
    query = scope.get("query_string", b"")
    if not query:
        return
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if value.startswith(KEY_PREFIX) or (name.lower() in _CREDENTIAL_PARAMS and value):
            raise BadRequest(
                "API keys are accepted only in the 'Authorization: Bearer <key>' header: a key "
                "in a URL ends up in logs and browser history (revoke this one)",
                code="key_in_query",
            )


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                k, _, v = part.strip().partition("=")
                if k == name and v:
                    return v
    return None


def _bearer(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


async def resolve(service: AuthService, scope: Scope) -> Principal:
    """The principal of a request (catalog look-ups in a thread, only when needed)."""
    token = _bearer(scope)
    if token is not None:
        if token:
            if (found := await anyio.to_thread.run_sync(service.bearer, token)) is not None:
                return found
            return anonymous(service.open_mode, "the bearer token is invalid, expired or revoked")
        return anonymous(service.open_mode, "the Authorization header must be 'Bearer <key>'")
    session = _cookie(scope, SESSION_COOKIE)
    if session is not None:
        if (found := await anyio.to_thread.run_sync(service.session, session)) is not None:
            return found
        return anonymous(service.open_mode, "the session has expired: log in again")
    return anonymous(service.open_mode)


class AuthMiddleware:
    """Resolve the principal; CSRF for cookie sessions. Needs ``app.state.auth``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._csrf: CSRFMiddleware | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        state = scope["litestar_app"].state
        _refuse_key_in_query(scope)
        principal = await resolve(state.auth, scope)
        cast(dict[str, Any], scope)[PRINCIPAL_KEY] = principal
        if principal.via != "cookie":
            await self.app(scope, receive, send)
            return
        if self._csrf is None:
            self._csrf = CSRFMiddleware(self.app, state.csrf_config)
        await self._csrf(scope, receive, send)


_CSP = (
    "default-src 'self'; script-src 'self'{scripts}; style-src 'self'{styles}; "
    "img-src 'self' data: blob:{images}; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
# The API docs page (Litestar's Swagger UI) loads its assets from this CDN and starts
# with one inline script, whose hash is allowed (the page embeds no user content).
_DOCS_CDN = " https://cdn.jsdelivr.net"
_INLINE_SCRIPT = re.compile(rb"<script(?:\s[^>]*)?>(.*?)</script>", re.S)


def _headers(csp: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-security-policy", csp.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
    ]


def _add_missing(message: Message, csp: str) -> None:
    headers = MutableScopeHeaders.from_message(message)  # type: ignore[arg-type]
    for name, value in _headers(csp):
        if name.decode() not in headers:
            headers.add(name.decode(), value.decode())


class SecurityHeadersMiddleware:
    """Security headers on every ``text/html`` response (pages may set their own CSP)."""

    def __init__(self, app: ASGIApp, docs_path: str = "/docs") -> None:
        self.app = app
        self.docs_path = docs_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(self.docs_path):
            await self._docs(scope, receive, send)
            return

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start" and _is_html(message):
                _add_missing(message, _CSP.format(scripts="", styles="", images=""))
            await send(message)

        await self.app(scope, receive, wrapped)

    async def _docs(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The page is small: hold it to hash its inline scripts into the policy.
        start: Message | None = None
        chunks: list[bytes] = []

        async def wrapped(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and _is_html(message):
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            hashes = "".join(
                " 'sha256-" + base64.b64encode(hashlib.sha256(m).digest()).decode() + "'"
                for m in _INLINE_SCRIPT.findall(body)
                if m.strip()
            )
            csp = _CSP.format(
                scripts=_DOCS_CDN + hashes, styles=_DOCS_CDN + " 'unsafe-inline'", images=_DOCS_CDN
            )
            _add_missing(start, csp)
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, wrapped)


def _is_html(message: Message) -> bool:
    headers: Any = message.get("headers", ())
    for key, value in headers:
        if key.lower() == b"content-type":
            return bool(value.lower().startswith(b"text/html"))
    return False
