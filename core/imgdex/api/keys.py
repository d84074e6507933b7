"""``/api/keys``: API keys of the logged-in user (admins see and revoke everyone's)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from imgdex.auth.guards import principal_of, require
from imgdex.auth.service import Forbidden
from imgdex.catalog.users import ApiKeyRow

from .auth import Revoked
from .deps import PoolsDep


class KeyList(msgspec.Struct, kw_only=True, frozen=True):
    keys: list[ApiKeyRow]


__all__ = ["KeyCreated", "KeyRequest", "KeysController"]


class KeyRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    name: str
    scopes: list[str] = msgspec.field(default_factory=lambda: ["read"])
    expires_at: datetime | None = None  # ISO 8601 with a time zone


class KeyCreated(msgspec.Struct, kw_only=True, frozen=True):
    id: int
    name: str
    scopes: list[str]
    expires_at: float | None
    key: str  # shown this once; only its hash is stored


class KeysController(Controller):
    path = "/api/keys"
    tags = ["keys"]
    guards = [require("read")]

    @post("/", status_code=HTTP_201_CREATED, summary="Create an API key (shown once)")
    async def create(
        self,
        pools: PoolsDep,
        state: State,
        request: Request[Any, Any, Any],
        data: JSONBody[KeyRequest],
    ) -> KeyCreated:
        """Scopes: read, write, delete, admin; never beyond the owner's role (403)."""
        expires = data.expires_at.timestamp() if data.expires_at is not None else None
        row, key = await pools.run_io(
            state.auth.create_key, principal_of(request), data.name, data.scopes, expires
        )
        return KeyCreated(
            id=row.id, name=row.name, scopes=list(row.scopes), expires_at=row.expires_at, key=key
        )

    @get("/", summary="List API keys (no secrets)")
    async def list_keys(
        self,
        pools: PoolsDep,
        state: State,
        request: Request[Any, Any, Any],
        all_users: FromQuery[bool] = False,
    ) -> KeyList:
        """One's own keys; ``?all_users=true`` lists everyone's (admin)."""
        p = principal_of(request)
        if all_users:
            if not p.allows("admin"):
                raise Forbidden("listing everyone's keys needs the admin role")
            return KeyList(keys=await pools.run_io(state.auth.store.list_keys))
        if p.user_id is None:
            return KeyList(keys=[])
        return KeyList(keys=await pools.run_io(state.auth.store.list_keys, p.user_id))

    @delete("/{key_id:int}", status_code=HTTP_200_OK, summary="Revoke an API key")
    async def revoke(
        self,
        pools: PoolsDep,
        state: State,
        request: Request[Any, Any, Any],
        key_id: FromPath[int],
    ) -> Revoked:
        """Takes effect at once: the next request with the key gets 401."""
        await pools.run_io(state.auth.revoke_key, principal_of(request), key_id)
        return Revoked(revoked=key_id)
