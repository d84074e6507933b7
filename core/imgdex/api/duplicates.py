"""``/api/duplicates``: near-duplicate groups, and keeping one image of a group."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.params import JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK

from imgdex.auth.guards import require
from imgdex.ops.duplicates import (
    DuplicatesResponse,
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
    ) -> DuplicatesResponse:
        """Groups of images at least `threshold` alike (default ``duplicates.threshold``)
        in an image index: resized, re-encoded or lightly edited copies."""
        return await duplicates.groups(threshold)

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
