"""The organising pages (issue 16 over the issue 14 APIs): albums, an album, the trash,
near-duplicates; and what the image page shows about tags and albums."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from imgdex import albums
from imgdex.api.deps import CatalogDep, DuplicatesDep, ImagesDep, PoolsDep
from imgdex.catalog import Catalog
from imgdex.catalog.rows import TagRow
from imgdex.errors import ImgdexError
from imgdex.ops.duplicates import GroupsQuery
from imgdex.pools import Pools
from imgdex.schemas import AlbumOut

from .access import page_exception_handlers, page_guard
from .headers import security_headers
from .views import PAGE_SIZE, cards_of

__all__ = ["OrganisePagesController", "all_albums", "image_extras"]

# The duplicates page: groups per page, and cards per group (a group chaining thousands
# of images shows its most alike ones and says how many it holds).
GROUPS_PER_PAGE = 20
IMAGES_PER_GROUP = 48


def _error(exc: ImgdexError) -> Template:
    return Template(
        template_name="error.html",
        context={"page": "", "status": exc.status, "detail": exc.detail},
        status_code=exc.status,
    )


async def all_albums(catalog: Catalog, pools: Pools) -> list[AlbumOut]:
    """Every album, by name (for the add-to-album selects and the filters)."""
    return (await pools.run_io(albums.list_albums, catalog)).albums


async def image_extras(catalog: Catalog, pools: Pools, sha256: str) -> dict[str, Any]:
    """The image page's tags (with who set them: a person or a describer model), and the
    albums an image can go to (smart albums choose their own images)."""
    rows: list[TagRow] = await pools.run_io(catalog.tags.tags_of, sha256)
    hand_made = [a for a in await all_albums(catalog, pools) if a.smart is None]
    return {"tag_rows": rows, "albums": hand_made}


class OrganisePagesController(Controller):
    path = "/"
    include_in_schema = False
    after_request = security_headers  # type: ignore[assignment]
    exception_handlers = page_exception_handlers

    @get("/albums", name="web-albums", guards=[page_guard("read")])
    async def albums_page(self, catalog: CatalogDep, pools: PoolsDep) -> Template:
        return Template(
            template_name="albums.html",
            context={"page": "albums", "albums": await all_albums(catalog, pools)},
        )

    @get("/albums/{album:int}", name="web-album", guards=[page_guard("read")])
    async def album_page(
        self,
        catalog: CatalogDep,
        pools: PoolsDep,
        reader: ImagesDep,
        album: FromPath[int],
        offset: FromQuery[int] = 0,
    ) -> Template:
        offset = max(0, min(offset, 1_000_000_000))
        try:
            row = await pools.run_io(albums.get_album, catalog, album)
            if row.smart is not None and row.smart.query:
                # A smart album with a query is a search: its own API ranks it.
                listing = None
            else:
                listing = await pools.run_io(
                    lambda: albums.page(
                        catalog, album, offset=offset, limit=PAGE_SIZE,
                        sort="created_at", order="desc", ranked=None,
                    )
                )  # fmt: skip
        except ImgdexError as exc:
            return _error(exc)
        cards = await cards_of(reader, listing.images) if listing else []
        total = listing.total if listing else 0
        next_offset = offset + PAGE_SIZE
        return Template(
            template_name="album.html",
            context={
                "page": "albums",
                "album": row,
                "cards": cards,
                "total": total,
                "more_url": f"/albums/{album}?offset={next_offset}"
                if next_offset < total
                else None,
            },
        )

    @get("/trash", name="web-trash", guards=[page_guard("delete")])
    async def trash(self, reader: ImagesDep, offset: FromQuery[int] = 0) -> Template:
        offset = max(0, min(offset, 1_000_000_000))
        listing = await reader.list_images(offset=offset, limit=PAGE_SIZE, deleted="only")
        next_offset = offset + PAGE_SIZE
        return Template(
            template_name="trash.html",
            context={
                "page": "trash",
                "cards": await cards_of(reader, listing.images),
                "total": listing.total,
                "more_url": f"/trash?offset={next_offset}" if next_offset < listing.total else None,
            },
        )

    @get("/duplicates", name="web-duplicates", guards=[page_guard("read")])
    async def duplicates_page(
        self, duplicates: DuplicatesDep, offset: FromQuery[int] = 0
    ) -> Template:
        offset = max(0, min(offset, 1_000_000_000))
        query = GroupsQuery(offset=offset, limit=GROUPS_PER_PAGE, per_group=IMAGES_PER_GROUP)
        found = await duplicates.groups(query)
        next_offset = offset + GROUPS_PER_PAGE
        return Template(
            template_name="duplicates.html",
            context={
                "page": "duplicates",
                "found": found,
                "more_url": f"/duplicates?offset={next_offset}"
                if next_offset < found.total
                else None,
                "back_url": f"/duplicates?offset={max(0, offset - GROUPS_PER_PAGE)}"
                if offset
                else None,
            },
        )
