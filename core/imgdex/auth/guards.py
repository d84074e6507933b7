"""Route guards: ``guards=[require("read")]`` on a controller or handler.

401 with ``WWW-Authenticate`` when the request has no valid credentials, 403 when it has
but its role or key scopes do not allow the action. The scope a guard requires is kept on
it (`required_scope`) so that the OpenAPI document and the route test can list them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import msgspec
from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import HTTPRouteHandler
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec

from imgdex.auth.middleware import PRINCIPAL_KEY
from imgdex.auth.policy import Principal, anonymous

__all__ = ["ErrorBody", "Guard", "document", "is_admin", "principal_of", "require"]

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]

_CHALLENGE = 'Bearer realm="imgdex"'


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The principal `AuthMiddleware` resolved (anonymous and powerless if it did not run)."""
    found = cast(dict[str, Any], connection.scope).get(PRINCIPAL_KEY)
    return found if isinstance(found, Principal) else anonymous(False)


def is_admin(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """Whether the request carries an admin credential (the admin token, an admin's
    session, or an admin key with the ``admin`` scope). The one test for "is admin"."""
    return principal_of(connection).allows("admin")


def deny(principal: Principal, scope: str) -> None:
    """Raise the 401 or 403 for a principal that lacks `scope`."""
    if not principal.authenticated:
        detail = principal.refused or (
            "admin endpoints need 'Authorization: Bearer <admin token>'"
            if scope == "admin" and principal.scopes
            else "log in or send 'Authorization: Bearer <API key>'"
        )
        challenge = _CHALLENGE + (', error="invalid_token"' if principal.refused else "")
        raise NotAuthorizedException(detail, headers={"WWW-Authenticate": challenge})
    what = f"role {principal.role}" if principal.key_id is None else "this key's scopes"
    raise PermissionDeniedException(f"{what} do not allow this ({scope!r} is needed)")


def require(scope: str) -> Guard:
    """A guard that lets through only principals allowed `scope`."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = principal_of(connection)
        if not principal.allows(scope):
            deny(principal, scope)

    guard.required_scope = scope  # type: ignore[attr-defined]
    guard.__name__ = f"require_{scope}"
    return guard


def check_hard_delete(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Hard deletes destroy data: they need an admin credential in every auth mode (the
    open mode's anonymous caller may trash, never destroy)."""
    if not is_admin(connection):
        deny(principal_of(connection), "admin")


def creator(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The name recorded as creator of what this request writes (None when anonymous)."""
    return principal_of(connection).name


class ErrorBody(msgspec.Struct, kw_only=True, frozen=True):
    """The JSON of every error (``imgdex.api.errors``)."""

    status_code: int
    error: str
    detail: str


def document(app: Litestar) -> None:
    """List the 401 and 403 answers (and the scope needed) on every guarded operation of
    the OpenAPI document, and mark unguarded ones as needing no credentials."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if not isinstance(handler, HTTPRouteHandler):
                continue
            scopes = sorted(
                {
                    s
                    for g in handler.resolve_guards()
                    # Litestar wraps guards in an AsyncCallable: the guard is `.func`.
                    if (s := getattr(getattr(g, "func", g), "required_scope", None)) is not None
                }
            )
            if not scopes:
                if not handler.include_in_schema or handler.security is not None:
                    continue
                handler.security = [{}]  # public: /health, login, logout
                continue
            needs = ", ".join(repr(s) for s in scopes)
            handler.responses = {
                401: ResponseSpec(
                    ErrorBody,
                    description="No valid credentials (session cookie or bearer key); "
                    "WWW-Authenticate says so",
                    generate_examples=False,
                ),
                403: ResponseSpec(
                    ErrorBody,
                    description=f"The role or key lacks the scope {needs}, or the CSRF "
                    "token of a cookie-authenticated unsafe request is missing",
                    generate_examples=False,
                ),
                **(handler.responses or {}),
            }
            note = f"Needs the scope{'s' if len(scopes) > 1 else ''} {needs}."
            if handler.description is None or note not in handler.description:
                handler.description = f"{handler.description or ''}\n\n{note}".strip()
