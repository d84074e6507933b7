"""``/api/albums``: albums by hand and smart albums, and their images."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from imgdex import albums
from imgdex.auth.guards import require
from imgdex.catalog.images import SORT_KEYS
from imgdex.organise import list_choice
from imgdex.schemas import (
    AlbumDeleted,
    AlbumImagesRequest,
    AlbumImagesResponse,
    AlbumListResponse,
    AlbumOut,
    AlbumPatch,
    AlbumRequest,
    ImageListResponse,
)

from .deps import CatalogDep, PoolsDep, SearcherDep

__all__ = ["AlbumsController"]


class AlbumsController(Controller):
    path = "/api/albums"
    guards = [require("read")]  # and write where a handler says so
    tags = ["albums"]

    @post("/", status_code=HTTP_201_CREATED, summary="Make an album", guards=[require("write")])
    async def create(
        self, catalog: CatalogDep, pools: PoolsDep, data: JSONBody[AlbumRequest]
    ) -> AlbumOut:
        """``{"name", "description"?, "smart"?: {"query"?, "filters"?}, "cover"?}``; a
        smart album's images are its search, evaluated whenever it is read."""
        return await pools.run_io(albums.create_album, catalog, data)

    @get("/", summary="Every album")
    async def list_albums(self, catalog: CatalogDep, pools: PoolsDep) -> AlbumListResponse:
        return await pools.run_io(albums.list_albums, catalog)

    @get("/{album:int}", summary="One album")
    async def get_album(
        self, catalog: CatalogDep, pools: PoolsDep, album: FromPath[int]
    ) -> AlbumOut:
        return await pools.run_io(albums.get_album, catalog, album)

    @patch(
        "/{album:int}",
        summary="Rename, describe, re-define or re-cover an album",
        guards=[require("write")],
    )
    async def update(
        self, catalog: CatalogDep, pools: PoolsDep, album: FromPath[int], data: JSONBody[AlbumPatch]
    ) -> AlbumOut:
        return await pools.run_io(albums.update_album, catalog, album, data)

    @delete(
        "/{album:int}",
        status_code=HTTP_200_OK,
        summary="Delete an album",
        guards=[require("write")],
    )
    async def delete_album(
        self, catalog: CatalogDep, pools: PoolsDep, album: FromPath[int]
    ) -> AlbumDeleted:
        """The album goes; its images stay in the library."""
        await pools.run_io(albums.delete_album, catalog, album)
        return AlbumDeleted(message="album deleted", album=album)

    @post(
        "/{album:int}/images",
        status_code=HTTP_200_OK,
        summary="Add images to an album",
        guards=[require("write")],
    )
    async def add(
        self,
        catalog: CatalogDep,
        pools: PoolsDep,
        album: FromPath[int],
        data: JSONBody[AlbumImagesRequest],
    ) -> AlbumImagesResponse:
        """``{"images": [sha256, ...]}``, all or none (404 names a missing one); at most
        1000; 409 for a smart album."""
        n = await pools.run_io(albums.add_images, catalog, album, data.images)
        return AlbumImagesResponse(message="images added", album=album, changed=n)

    @delete(
        "/{album:int}/images",
        status_code=HTTP_200_OK,
        summary="Take images out of an album",
        guards=[require("write")],
    )
    async def remove(
        self,
        catalog: CatalogDep,
        pools: PoolsDep,
        album: FromPath[int],
        data: JSONBody[AlbumImagesRequest],
    ) -> AlbumImagesResponse:
        n = await pools.run_io(albums.remove_images, catalog, album, data.images)
        return AlbumImagesResponse(message="images removed", album=album, changed=n)

    @get("/{album:int}/images", summary="An album's images, a page at a time")
    async def images(
        self,
        catalog: CatalogDep,
        pools: PoolsDep,
        searcher: SearcherDep,
        album: FromPath[int],
        offset: Annotated[int, QueryParameter(ge=0, le=1_000_000_000)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 20,
        sort: Annotated[str, QueryParameter(description="|".join(SORT_KEYS))] = "created_at",
        order: Annotated[str, QueryParameter(description="asc or desc")] = "desc",
    ) -> ImageListResponse:
        """Like ``GET /api/images``; a smart album with a query lists its matches best
        first (``sort`` does not apply to it)."""
        sort = list_choice(sort, SORT_KEYS, "sort")
        direction = list_choice(order, ("asc", "desc"), "order")
        row = await pools.run_io(albums.get_album, catalog, album)
        ranked = None
        if row.smart is not None and row.smart.query:
            found = await searcher.search_text(row.smart.query, albums.search_options(row.smart))
            ranked = [r.sha256 for r in found.results]
        return await pools.run_io(
            lambda: albums.page(
                catalog, album, offset=offset, limit=limit, sort=sort,
                order=direction, ranked=ranked,
            )
        )  # fmt: skip
