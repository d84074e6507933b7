"""``/api/albums/{id}/shares``: make, list and revoke an album's share links.

The links themselves are served by `imgdex.web.share` under ``/s/{token}``; the token is
shown once, in the answer to ``POST``, and only its hash is stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from imgdex import albums
from imgdex.auth.guards import principal_of, require
from imgdex.catalog.shares import ShareRow
from imgdex.errors import BadRequest

from .deps import CatalogDep, PoolsDep

__all__ = ["ShareCreated", "ShareRequest", "SharesController"]


class ShareRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    expires_at: datetime | None = None  # ISO 8601 with a time zone
    password: str | None = None  # visitors must give it once (a short-lived cookie)


class ShareCreated(msgspec.Struct, kw_only=True, frozen=True):
    id: int
    token: str  # shown this once; only its hash is stored
    url: str
    expires_at: float | None
    has_password: bool


class ShareList(msgspec.Struct, kw_only=True, frozen=True):
    shares: list[ShareRow]


class ShareRevoked(msgspec.Struct, kw_only=True, frozen=True):
    message: str
    album: int
    share: int


class SharesController(Controller):
    path = "/api/albums/{album:int}/shares"
    guards = [require("write")]
    tags = ["albums"]

    @post("/", status_code=HTTP_201_CREATED, summary="Make a share link of an album")
    async def create(
        self,
        catalog: CatalogDep,
        pools: PoolsDep,
        state: State,
        request: Request[Any, Any, Any],
        album: FromPath[int],
        data: JSONBody[ShareRequest],
    ) -> ShareCreated:
        """``{"expires_at"?, "password"?}``; the link ``/s/{token}`` shows this album's
        images, read-only, to anyone who has it (and the password, when one is set)."""
        await pools.run_io(albums.get_album, catalog, album)  # 404 if unknown
        if data.expires_at is not None and data.expires_at.tzinfo is None:
            raise BadRequest("expires_at needs a time zone", code="bad_expiry")
        expires = data.expires_at.timestamp() if data.expires_at is not None else None
        principal = principal_of(request)
        row, token = await pools.run_io(
            lambda: state.shares.create(
                principal, str(album), expires_at=expires, password=data.password
            )
        )
        await pools.run_io(
            lambda: state.auth.store.audit(
                "share_created", actor=principal.name, target=f"album {album} share {row.id}"
            )
        )
        return ShareCreated(
            id=row.id,
            token=token,
            url=f"/s/{token}",
            expires_at=row.expires_at,
            has_password=row.has_password,
        )

    @get("/", summary="An album's live share links (never their tokens)")
    async def list_shares(
        self, catalog: CatalogDep, pools: PoolsDep, state: State, album: FromPath[int]
    ) -> ShareList:
        await pools.run_io(albums.get_album, catalog, album)
        return ShareList(shares=await pools.run_io(state.shares.list, str(album)))

    @delete("/{share_id:int}", status_code=HTTP_200_OK, summary="Revoke a share link (at once)")
    async def revoke(
        self,
        catalog: CatalogDep,
        pools: PoolsDep,
        state: State,
        request: Request[Any, Any, Any],
        album: FromPath[int],
        share_id: FromPath[int],
    ) -> ShareRevoked:
        await pools.run_io(albums.get_album, catalog, album)
        await pools.run_io(state.shares.revoke, str(album), share_id)
        actor = principal_of(request).name
        await pools.run_io(
            lambda: state.auth.store.audit(
                "share_revoked", actor=actor, target=f"album {album} share {share_id}"
            )
        )
        return ShareRevoked(message="share link revoked", album=album, share=share_id)
