"""Organising images: edits (source, favourite, rating) and tags, on the catalog alone.

Blocking functions for worker threads; each write is one transaction. They take the
catalog they need, not the library, so any process holding a catalog can run them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec

from imgdex.catalog import Catalog, ImageRow
from imgdex.errors import BadRequest, NotFound
from imgdex.ids import check_id
from imgdex.photos import image_out
from imgdex.schemas import ImageOut, ImagePatch
from imgdex.tags import USER_SOURCE, normalise_all

__all__ = [
    "MAX_BULK_IMAGES",
    "bulk_tag",
    "edit_image",
    "image_info",
    "list_choice",
    "live_image",
    "tag_image",
    "untag_image",
]

MAX_BULK_IMAGES = 1000
MAX_TAGS_PER_REQUEST = 100
C = TypeVar("C", bound=str)


def list_choice(value: str | None, choices: Sequence[C], name: str) -> Any:
    """`value` if it is one of `choices` (None stays None); else a 400 naming them."""
    if value is None or value in choices:
        return value
    raise BadRequest(
        f"{name} must be one of {', '.join(choices)}, got {value[:40]!r}", code=f"bad_{name}"
    )


def live_image(catalog: Catalog, id_: str) -> ImageRow:
    """An image's row; 404 when unknown or in the trash."""
    row = catalog.images.get_image(check_id(id_))
    if row is None:
        raise NotFound(f"image {id_} not found", code="image_not_found")
    if row.is_deleted:
        raise NotFound(f"image {id_} is in the trash; restore it first", code="image_deleted")
    return row


def image_info(catalog: Catalog, id_: str) -> ImageOut:
    """An image's info with its tags (descriptions and indexes are on GET /api/images/X)."""
    row = catalog.images.get_image(id_)
    if row is None:
        raise NotFound(f"image {id_} not found", code="image_not_found")
    return image_out(row, tags=[t.tag for t in catalog.tags.tags_of(id_)])


def edit_image(catalog: Catalog, id_: str, patch: ImagePatch) -> ImageOut:
    """Apply a PATCH of an image, in one transaction."""
    live_image(catalog, id_)
    source = patch.source if isinstance(patch.source, str) else None
    with catalog.transaction() as db:
        catalog.images.update_image(
            db,
            id_,
            source=source.strip()[:200] or None if source is not None else None,
            clear_source=patch.source is None,
            favorite=None if patch.favorite is msgspec.UNSET else bool(patch.favorite),
            rating=None if isinstance(patch.rating, msgspec.UnsetType) else patch.rating,
        )
    return image_info(catalog, id_)


def tag_image(catalog: Catalog, id_: str, tags: Sequence[str]) -> list[str]:
    """Add a person's tags to an image; returns all its tags."""
    live_image(catalog, id_)
    clean = _bounded(tags)
    with catalog.transaction() as db:
        catalog.tags.add_tags(db, id_, clean, USER_SOURCE)
    return [t.tag for t in catalog.tags.tags_of(id_)]


def untag_image(catalog: Catalog, id_: str, tag: str) -> None:
    """Remove one tag from an image; 404 when it does not have it."""
    live_image(catalog, id_)
    clean = normalise_all([tag], what="tag")
    with catalog.transaction() as db:
        removed = catalog.tags.remove_tags(db, id_, clean)
    if not removed:
        raise NotFound(f"image {id_} has no tag {clean[0]!r}", code="tag_not_found")


def bulk_tag(
    catalog: Catalog, ids: Sequence[str], add: Sequence[str], remove: Sequence[str]
) -> int:
    """Add and remove tags on many images in one transaction; every image must be live
    (otherwise nothing changes). Returns how many images were touched."""
    if len(ids) > MAX_BULK_IMAGES:
        raise BadRequest(
            f"at most {MAX_BULK_IMAGES} images per bulk request, got {len(ids)}",
            code="too_many_images",
        )
    if not add and not remove:
        raise BadRequest("nothing to do: give tags to add or remove", code="bad_tag")
    ids = list(dict.fromkeys(check_id(i) for i in ids))
    to_add, to_remove = _bounded(add, allow_empty=True), _bounded(remove, allow_empty=True)
    with catalog.transaction() as db:
        rows = catalog.images.get_images(ids)
        missing = [i for i in ids if i not in rows or rows[i].is_deleted]
        if missing:
            raise NotFound(
                f"{len(missing)} of the images are unknown or in the trash, e.g. {missing[0]}; "
                "nothing was changed",
                code="image_not_found",
            )
        for id_ in ids:
            catalog.tags.add_tags(db, id_, to_add, USER_SOURCE)
            catalog.tags.remove_tags(db, id_, to_remove)
    return len(ids)


def _bounded(tags: Sequence[str], *, allow_empty: bool = False) -> list[str]:
    if not tags and not allow_empty:
        raise BadRequest("tags: give at least one tag", code="bad_tag")
    if len(tags) > MAX_TAGS_PER_REQUEST:
        raise BadRequest(
            f"tags: at most {MAX_TAGS_PER_REQUEST} per request, got {len(tags)}", code="bad_tag"
        )
    return normalise_all(tags)
