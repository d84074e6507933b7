"""Access control of the pages: log-in redirects, 403 pages, and what the nav may show.

A page (full HTML document) asks a visitor without a valid session to log in: 303 to
``/login?next=<path>``. A visitor who is logged in but whose role lacks the scope gets a
403 page. The htmx fragments are guarded like the JSON API they mirror (`require`), since
the page scripts that fetch them handle JSON errors.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.response import Redirect, Template

from imgdex.auth.guards import Guard, principal_of

__all__ = [
    "LoginRequired",
    "PageForbidden",
    "page_exception_handlers",
    "page_guard",
    "safe_next",
    "users_mode",
]


class LoginRequired(Exception):
    """Raised by a page guard for a visitor without a valid session."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class PageForbidden(Exception):
    """Raised by a page guard for a logged-in visitor whose role lacks the scope."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def users_mode(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """Whether the server runs with ``auth.mode: users`` (pages need a login)."""
    return not connection.app.state.auth.open_mode


def safe_next(value: str | None) -> str:
    """`value` if it is a path on this site, else ``/``: never an open redirect.

    ``//host`` and ``/\\host`` are read by browsers as another origin; a scheme or a
    control character has no business in a local path either.
    """
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    if any(c in value for c in "\\\r\n\t") or any(ord(c) < 0x20 for c in value):
        return "/"
    return value


def page_guard(scope: str, *, open_admin: bool = False) -> Guard:
    """A guard for a page that needs `scope`. With `open_admin`, the page is left to its
    token prompt in ``auth.mode: none`` (the admin page)."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = principal_of(connection)
        if principal.allows(scope) or (open_admin and not users_mode(connection)):
            return
        if not principal.authenticated:
            query = connection.scope.get("query_string", b"").decode("latin-1")
            raise LoginRequired(connection.url.path + (f"?{query}" if query else ""))
        raise PageForbidden(f"Your role ({principal.role}) does not allow this page.")

    guard.required_scope = scope  # type: ignore[attr-defined]
    guard.login_redirect = True  # type: ignore[attr-defined]
    guard.__name__ = f"page_requires_{scope}"
    return guard


def _login(request: Request[Any, Any, Any], exc: LoginRequired) -> Response[Any]:
    url = f"/login?{urlencode({'next': safe_next(exc.path)}, quote_via=quote)}"
    if request.headers.get("hx-request") == "true":
        # htmx would follow a redirect and swap the log-in page into the grid: it goes
        # to HX-Redirect instead (a whole-page navigation).
        return Response(b"", status_code=401, headers={"HX-Redirect": url})
    return Redirect(url, status_code=303)


def _forbidden(_: Request[Any, Any, Any], exc: PageForbidden) -> Response[Any]:
    return Template(
        template_name="error.html",
        context={"page": "", "status": 403, "detail": exc.detail},
        status_code=403,
    )


page_exception_handlers: dict[Any, Any] = {LoginRequired: _login, PageForbidden: _forbidden}
