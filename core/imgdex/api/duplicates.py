"""``/api/duplicates``: near-duplicate groups, and keeping one image of a group."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.params import JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK

from imgdex.auth.guards import require
from imgdex.ops.duplicates import (
    DEFAULT_LIMIT,
    DEFAULT_PER_GROUP,
    MAX_PAGE,
    DuplicatesResponse,
    GroupsQuery,
    ResolveRequest,
    ResolveResponse,
)

from .deps import DuplicatesDep

__all__ = ["DuplicatesController"]


class DuplicatesController(Controller):
    path = "/api/duplicates"
    tags = ["images"]

    guards = [require("read")]  # resolving trashes: "delete"

    @get("/", summary="Near-duplicate groups")
    async def list_groups(
        self,
        duplicates: DuplicatesDep,
        threshold: Annotated[float | None, QueryParameter(ge=0, le=1)] = None,
        offset: Annotated[int, QueryParameter(ge=0, le=1_000_000_000)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = DEFAULT_LIMIT,
        per_group: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = DEFAULT_PER_GROUP,
    ) -> DuplicatesResponse:
        """Groups of images at least `threshold` alike (default ``duplicates.threshold``)
        in an image index: resized, re-encoded or lightly edited copies. A page of
        `limit` groups from `offset` (most alike first; `total` counts them all), each
        with its `size` and at most `per_group` of its images, most alike first."""
        query = GroupsQuery(threshold=threshold, offset=offset, limit=limit, per_group=per_group)
        return await duplicates.groups(query)

    @post(
        "/resolve",
        status_code=HTTP_200_OK,
        summary="Keep one image, trash the others",
        guards=[require("delete")],
    )
    async def resolve(
        self, duplicates: DuplicatesDep, data: JSONBody[ResolveRequest]
    ) -> ResolveResponse:
        """Soft-deletes every image of `trash` (restorable); `keep` stays."""
        return await duplicates.resolve(data)
