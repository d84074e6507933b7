"""``/api/admin/users`` and ``/api/admin/audit``: accounts and the audit log (admin)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, patch, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED

from imgdex.auth.guards import principal_of, require
from imgdex.catalog.users import AuditRow, UserRow

from .deps import PoolsDep

__all__ = ["NewUser", "UserChange", "UsersController"]


class NewUser(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    username: str
    password: str
    role: str = "viewer"


class UserChange(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    role: str | None = None
    disabled: bool | None = None
    password: str | None = None


class UsersController(Controller):
    path = "/api/admin"
    tags = ["admin"]
    guards = [require("admin")]

    @get("/users", summary="List users")
    async def list_users(self, pools: PoolsDep, state: State) -> dict[str, list[UserRow]]:
        return {"users": await pools.run_io(state.auth.store.list_users)}

    @post("/users", status_code=HTTP_201_CREATED, summary="Create a user")
    async def create(
        self,
        pools: PoolsDep,
        state: State,
        request: Request[Any, Any, Any],
        data: JSONBody[NewUser],
    ) -> UserRow:
        actor = principal_of(request).name
        user: UserRow = await pools.run_io(
            state.auth.create_user, data.username, data.password, data.role, actor
        )
        return user

    @patch("/users/{username:str}", summary="Change a user's role, state or password")
    async def change(
        self,
        pools: PoolsDep,
        state: State,
        request: Request[Any, Any, Any],
        username: FromPath[str],
        data: JSONBody[UserChange],
    ) -> UserRow:
        """Disabling a user or resetting their password ends their sessions at once."""
        actor = principal_of(request).name

        def run() -> UserRow:
            user: UserRow = state.auth.update_user(
                username, actor, role=data.role, disabled=data.disabled, password=data.password
            )
            return user

        return await pools.run_io(run)

    @get("/audit", summary="The audit log, newest first")
    async def audit(
        self,
        pools: PoolsDep,
        state: State,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        before: FromQuery[int | None] = None,
        action: FromQuery[str | None] = None,
    ) -> dict[str, list[AuditRow]]:
        """Logins, failed logins, key creation and revocation, role changes, hard
        deletes, plugin and service changes. ``before``: page on by id."""
        rows = await pools.run_io(
            lambda: state.auth.store.audit_log(limit=limit, before=before, action=action)
        )
        return {"entries": rows}
