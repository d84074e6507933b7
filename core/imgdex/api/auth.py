"""``/api/auth``: log in and out, who am I, and one's own sessions."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import Cookie, State
from litestar.middleware.csrf import generate_csrf_token
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK

from imgdex.auth.guards import principal_of, require
from imgdex.auth.middleware import SESSION_COOKIE
from imgdex.auth.policy import role_scopes
from imgdex.auth.service import AuthService
from imgdex.catalog.users import SessionRow
from imgdex.errors import NotFound

from .deps import PoolsDep


class SessionList(msgspec.Struct, kw_only=True, frozen=True):
    sessions: list[SessionRow]


class Revoked(msgspec.Struct, kw_only=True, frozen=True):
    """How many sessions (or which key) a revoke took away."""

    revoked: int


__all__ = ["AuthController", "LoginRequest", "Me"]


class LoginRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    username: str
    password: str


class Me(msgspec.Struct, kw_only=True, frozen=True):
    username: str
    role: str | None
    scopes: list[str]
    via: str
    # The CSRF token to echo in X-CSRFToken on unsafe requests made with the cookie.
    csrf_token: str | None = None


def _client(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


class AuthController(Controller):
    path = "/api/auth"
    tags = ["auth"]

    @post("/login", status_code=HTTP_200_OK, summary="Log in (sets the session cookie)")
    async def login(
        self,
        pools: PoolsDep,
        state: State,
        request: Request[Any, Any, Any],
        data: JSONBody[LoginRequest],
    ) -> Response[Me]:
        """Sets ``imgdex_session`` (HttpOnly, SameSite=Lax, Secure over https) and the
        ``csrftoken`` cookie; unsafe requests made with the session need ``X-CSRFToken``.
        Failed attempts are limited per account and per address (429 + Retry-After)."""
        auth: AuthService = state.auth
        user, token = await pools.run_io(auth.login, data.username, data.password, _client(request))
        secure = request.url.scheme == "https"
        csrf = request.cookies.get("csrftoken") or generate_csrf_token(state.csrf_config.secret)
        cookies = [
            Cookie(
                key=SESSION_COOKIE,
                value=token,
                httponly=True,
                samesite="lax",
                secure=secure,
                path="/",
                max_age=int(auth.config.session_lifetime),
            ),
            Cookie(
                key="csrftoken", value=csrf, httponly=False, samesite="lax", secure=secure, path="/"
            ),
        ]
        me = Me(
            username=user.username,
            role=user.role,
            scopes=sorted(role_scopes(user.role)),
            via="cookie",
            csrf_token=csrf,
        )
        return Response(me, cookies=cookies)

    @post("/logout", status_code=HTTP_200_OK, summary="Log out (ends this session)")
    async def logout(
        self, pools: PoolsDep, state: State, request: Request[Any, Any, Any]
    ) -> Response[dict[str, bool]]:
        await pools.run_io(state.auth.logout, principal_of(request))
        return Response(
            {"logged_out": True},
            cookies=[Cookie(key=SESSION_COOKIE, value="", max_age=0, path="/", httponly=True)],
        )

    @get("/me", summary="Who the request acts as", guards=[require("read")])
    async def me(self, request: Request[Any, Any, Any]) -> Me:
        p = principal_of(request)
        return Me(
            username=p.name or "anonymous",
            role=p.role,
            scopes=sorted(p.scopes),
            via=p.via,
            csrf_token=request.cookies.get("csrftoken") if p.via == "cookie" else None,
        )

    @get("/sessions", summary="One's own login sessions", guards=[require("read")])
    async def sessions(
        self, pools: PoolsDep, state: State, request: Request[Any, Any, Any]
    ) -> SessionList:
        p = principal_of(request)
        if p.user_id is None:
            return SessionList(sessions=[])
        return SessionList(sessions=await pools.run_io(state.auth.store.list_sessions, p.user_id))

    @delete(
        "/sessions",
        status_code=HTTP_200_OK,
        summary="Revoke all of one's sessions",
        guards=[require("read")],
    )
    async def revoke_all(
        self, pools: PoolsDep, state: State, request: Request[Any, Any, Any]
    ) -> Revoked:
        p = principal_of(request)
        if p.user_id is None:
            return Revoked(revoked=0)
        return Revoked(revoked=await pools.run_io(state.auth.store.delete_sessions, p.user_id))

    @delete(
        "/sessions/{session_id:str}",
        status_code=HTTP_200_OK,
        summary="Revoke a session",
        guards=[require("read")],
    )
    async def revoke(
        self,
        pools: PoolsDep,
        state: State,
        request: Request[Any, Any, Any],
        session_id: FromPath[str],
    ) -> Revoked:
        p = principal_of(request)
        n = 0
        if p.user_id is not None:
            n = await pools.run_io(state.auth.store.delete_sessions, p.user_id, session_id)
        if not n:
            raise NotFound("no such session of yours", code="unknown_session")
        return Revoked(revoked=n)
