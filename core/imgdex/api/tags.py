"""Tags: ``/api/images/{sha256}/tags``, ``/api/tags`` and ``/api/tags/bulk``."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, post
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK

from imgdex.auth.guards import require
from imgdex.catalog import Catalog
from imgdex.organise import bulk_tag, live_image, tag_image, untag_image
from imgdex.schemas import (
    BulkTagRequest,
    BulkTagResponse,
    ImageTagsResponse,
    TagCount,
    TagListResponse,
    TagOut,
    TagsRequest,
)
from imgdex.tags import normalise

from .deps import CatalogDep, PoolsDep

__all__ = ["TagsController"]


def _image_tags(catalog: Catalog, id_: str) -> ImageTagsResponse:
    live_image(catalog, id_)
    rows = catalog.tags.tags_of(id_)
    return ImageTagsResponse(
        sha256=id_,
        tags=[
            TagOut(tag=t.tag, source=t.source, confidence=t.confidence, created_at=t.created_at)
            for t in rows
        ],
    )


class TagsController(Controller):
    path = "/api"
    guards = [require("read")]  # and write where a handler says so
    tags = ["tags"]

    @get("/images/{sha256:str}/tags", summary="An image's tags")
    async def image_tags(
        self, catalog: CatalogDep, pools: PoolsDep, sha256: FromPath[str]
    ) -> ImageTagsResponse:
        return await pools.run_io(_image_tags, catalog, sha256)

    @post(
        "/images/{sha256:str}/tags",
        status_code=HTTP_200_OK,
        summary="Tag an image",
        guards=[require("write")],
    )
    async def add_tags(
        self,
        catalog: CatalogDep,
        pools: PoolsDep,
        sha256: FromPath[str],
        data: JSONBody[TagsRequest],
    ) -> ImageTagsResponse:
        """``{"tags": [...]}``: tags are normalised (Unicode NFKC, case-folded, spaces
        collapsed); a person's tag replaces a model's."""

        def run() -> ImageTagsResponse:
            tag_image(catalog, sha256, data.tags)
            return _image_tags(catalog, sha256)

        return await pools.run_io(run)

    @delete(
        "/images/{sha256:str}/tags/{tag:str}",
        status_code=HTTP_200_OK,
        summary="Untag an image",
        guards=[require("write")],
    )
    async def remove_tag(
        self, catalog: CatalogDep, pools: PoolsDep, sha256: FromPath[str], tag: FromPath[str]
    ) -> ImageTagsResponse:
        def run() -> ImageTagsResponse:
            untag_image(catalog, sha256, tag)
            return _image_tags(catalog, sha256)

        return await pools.run_io(run)

    @get("/tags", summary="Every tag, with how many images have it")
    async def list_tags(
        self,
        catalog: CatalogDep,
        pools: PoolsDep,
        prefix: Annotated[
            str | None, QueryParameter(max_length=100, description="tags starting with it")
        ] = None,
        limit: Annotated[
            int, QueryParameter(ge=1, le=10_000, description="at most this many tags")
        ] = 1000,
    ) -> TagListResponse:
        """Most used first; ``prefix`` narrows to tags starting with it (normalised)."""
        start = normalise(prefix) if prefix else None
        counts = await pools.run_io(lambda: catalog.tags.tag_counts(prefix=start, limit=limit))
        return TagListResponse(tags=[TagCount(tag=t, count=n) for t, n in counts])

    @post(
        "/tags/bulk",
        status_code=HTTP_200_OK,
        summary="Add and remove tags on many images",
        guards=[require("write")],
    )
    async def bulk(
        self, catalog: CatalogDep, pools: PoolsDep, data: JSONBody[BulkTagRequest]
    ) -> BulkTagResponse:
        """``{"images": [...], "add": [...], "remove": [...]}`` in one transaction: all
        images or none (404 names a missing one); at most 1000 images."""
        n = await pools.run_io(bulk_tag, catalog, data.images, data.add, data.remove)
        return BulkTagResponse(message="tags updated", images=n)
