"""``GET /api/images/{sha256}/similar``: images like a stored one, from its vectors."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import FromPath, FromQuery, QueryParameter

from imgdex.auth.guards import require
from imgdex.schemas import SearchResponse

from .deps import SimilarDep

__all__ = ["SimilarController"]


class SimilarController(Controller):
    path = "/api/images"
    tags = ["search"]

    guards = [require("read")]

    @get("/{sha256:str}/similar", summary="Images similar to a stored image")
    async def similar(
        self,
        similar: SimilarDep,
        sha256: FromPath[str],
        top_k: Annotated[int, QueryParameter(ge=1, le=1000)] = 10,
        index: FromQuery[str | None] = None,
    ) -> SearchResponse:
        """Answers like a search; the image itself is left out."""
        return await similar.similar_images(sha256, top_k, index)
