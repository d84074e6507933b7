"""Albums: made by hand (images added and removed) or smart (a stored search, evaluated
each time the album is read).

Blocking functions over the catalog for worker threads, each write one transaction; the
one step that needs the search service (a smart album's query) is `ranked_ids`, async.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from imgdex.catalog import AlbumRow, Catalog
from imgdex.errors import BadRequest, Conflict, NotFound
from imgdex.filters import ImageFilters
from imgdex.ids import check_id
from imgdex.organise import MAX_BULK_IMAGES, live_image
from imgdex.photos import image_out
from imgdex.schemas import (
    AlbumListResponse,
    AlbumOut,
    AlbumPatch,
    AlbumRequest,
    ImageListResponse,
    SearchOptions,
    SmartSpec,
)

__all__ = [
    "SMART_QUERY_LIMIT",
    "add_images",
    "album_out",
    "check_filters",
    "create_album",
    "delete_album",
    "get_album",
    "list_albums",
    "page",
    "remove_images",
    "search_options",
    "smart_of",
    "update_album",
]

# A smart album's query keeps its best matches, as a search would: the album is a view
# of "the images most like this", not of every image with a non-zero score.
SMART_QUERY_LIMIT = 1000


def smart_of(row: AlbumRow) -> SmartSpec | None:
    """A smart album's stored search (None for an album made by hand)."""
    return msgspec.json.decode(row.smart, type=SmartSpec) if row.smart else None


def check_filters(catalog: Catalog, filters: ImageFilters) -> ImageFilters:
    """`filters` if what they name exists (404 for an unknown album)."""
    if filters.album is not None:
        _album(catalog, filters.album)
    return filters


def _album(catalog: Catalog, album_id: int) -> AlbumRow:
    row = catalog.albums.get_album(album_id)
    if row is None:
        raise NotFound(f"album {album_id} not found", code="album_not_found")
    return row


def album_out(catalog: Catalog, row: AlbumRow) -> AlbumOut:
    """An album as clients read it."""
    smart = smart_of(row)
    count: int | None = row.image_count
    if smart is not None:
        count = None if smart.query else catalog.images.count_matching(smart.filters or _ALL)
    cover = row.cover or (catalog.albums.latest_image(row.id) if smart is None else None)
    return AlbumOut(
        id=row.id,
        name=row.name,
        description=row.description,
        cover=cover,
        smart=smart,
        image_count=count,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _check_smart(smart: SmartSpec | None) -> str | None:
    if smart is None:
        return None
    if smart.query is None and smart.filters is None:
        raise BadRequest("smart: give a query, filters, or both", code="bad_album")
    if smart.filters is not None and smart.filters.album is not None:
        # An album inside a smart album's definition could refer back to itself.
        raise BadRequest("smart: filters cannot name an album", code="bad_album")
    return msgspec.json.encode(smart).decode()


def _check_cover(catalog: Catalog, cover: str | None) -> str | None:
    if cover is not None:
        live_image(catalog, cover)
    return cover


def create_album(catalog: Catalog, request: AlbumRequest) -> AlbumOut:
    """Make an album."""
    smart = _check_smart(request.smart)
    cover = _check_cover(catalog, request.cover)
    with catalog.transaction() as db:
        album_id = catalog.albums.create_album(
            db, name=request.name.strip() or request.name, description=request.description,
            smart=smart, cover=cover,
        )  # fmt: skip
    return get_album(catalog, album_id)


def get_album(catalog: Catalog, album_id: int) -> AlbumOut:
    """One album; 404 when unknown."""
    return album_out(catalog, _album(catalog, album_id))


def list_albums(catalog: Catalog) -> AlbumListResponse:
    """Every album, by name."""
    return AlbumListResponse(albums=[album_out(catalog, r) for r in catalog.albums.list_albums()])


def update_album(catalog: Catalog, album_id: int, patch: AlbumPatch) -> AlbumOut:
    """Apply a PATCH of an album, in one transaction."""
    changes: dict[str, object] = {}
    if not isinstance(patch.name, msgspec.UnsetType):
        changes["name"] = patch.name
    if not isinstance(patch.description, msgspec.UnsetType):
        changes["description"] = patch.description
    if not isinstance(patch.smart, msgspec.UnsetType):
        changes["smart"] = _check_smart(patch.smart)
    if not isinstance(patch.cover, msgspec.UnsetType):
        changes["cover"] = _check_cover(catalog, patch.cover)
    with catalog.transaction() as db:
        if catalog.albums.get_album(album_id, db) is None:
            raise NotFound(f"album {album_id} not found", code="album_not_found")
        catalog.albums.update_album(db, album_id, changes)
    return get_album(catalog, album_id)


def delete_album(catalog: Catalog, album_id: int) -> None:
    """Remove an album; its images stay in the library."""
    with catalog.transaction() as db:
        if not catalog.albums.delete_album(db, album_id):
            raise NotFound(f"album {album_id} not found", code="album_not_found")


def _members(catalog: Catalog, album_id: int, ids: Sequence[str]) -> list[str]:
    if len(ids) > MAX_BULK_IMAGES:
        raise BadRequest(
            f"at most {MAX_BULK_IMAGES} images per request, got {len(ids)}",
            code="too_many_images",
        )
    row = _album(catalog, album_id)
    if row.smart:
        raise Conflict(
            f"album {album_id} is smart: its images come from its search", code="smart_album"
        )
    return list(dict.fromkeys(check_id(i) for i in ids))


def add_images(catalog: Catalog, album_id: int, ids: Sequence[str]) -> int:
    """Add live images to an album in one transaction (all or none); returns how many
    were new to it."""
    clean = _members(catalog, album_id, ids)
    with catalog.transaction() as db:
        rows = catalog.images.get_images(clean)
        missing = [i for i in clean if i not in rows or rows[i].is_deleted]
        if missing:
            raise NotFound(
                f"{len(missing)} of the images are unknown or in the trash, e.g. {missing[0]}; "
                "nothing was added",
                code="image_not_found",
            )
        if catalog.albums.get_album(album_id, db) is None:  # deleted meanwhile
            raise NotFound(f"album {album_id} not found", code="album_not_found")
        return catalog.albums.add_to_album(db, album_id, clean)


def remove_images(catalog: Catalog, album_id: int, ids: Sequence[str]) -> int:
    """Take images out of an album; returns how many were in it."""
    clean = _members(catalog, album_id, ids)
    with catalog.transaction() as db:
        return catalog.albums.remove_from_album(db, album_id, clean)


def search_options(smart: SmartSpec) -> SearchOptions:
    """The search a smart album's query runs: its filters go with it once search takes
    them (`SearchOptions.filters`); `page` applies them to the results in any case."""
    if "filters" in SearchOptions.__struct_fields__ and smart.filters is not None:
        return msgspec.convert(
            {"top_k": SMART_QUERY_LIMIT, "filters": msgspec.to_builtins(smart.filters)},
            SearchOptions,
        )
    return SearchOptions(top_k=SMART_QUERY_LIMIT)


def page(
    catalog: Catalog,
    album_id: int,
    *,
    offset: int,
    limit: int,
    sort: str,
    order: Literal["asc", "desc"],
    ranked: Sequence[str] | None = None,
) -> ImageListResponse:
    """A page of an album's images, like ``GET /api/images``. `ranked` is a smart
    album's query result, best first (that order is kept)."""
    row = _album(catalog, album_id)
    smart = smart_of(row)
    filters = ImageFilters(album=album_id) if smart is None else smart.filters or _ALL
    if smart is None or not smart.query:
        rows, total = catalog.images.list_images(
            offset=offset, limit=limit, filters=filters, sort=sort, order=order
        )
    else:
        keep = catalog.images.filter_ids(filters)
        matching = [i for i in (ranked or ()) if i in keep]
        total = len(matching)
        found = catalog.images.get_images(matching[offset : offset + limit])
        rows = [found[i] for i in matching[offset : offset + limit] if i in found]
    tags = catalog.tags.tags_of_many(r.sha256 for r in rows)
    return ImageListResponse(
        images=[image_out(r, tags=tags.get(r.sha256, ())) for r in rows],
        total=total,
        offset=offset,
        limit=limit,
    )


_ALL = ImageFilters()
