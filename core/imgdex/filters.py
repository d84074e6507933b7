"""Image filters: one shape for the image list and all three searches.

In search bodies they are the ``filters`` object; in the image list's query string and
the image search's multipart form they are plain fields of the same names. The catalog
turns them into the set of matching images (`ImageFilters` never touches SQL itself).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from msgspec import Meta, Struct

from imgdex.errors import BadRequest

__all__ = ["MAX_FILTER_TAGS", "ImageFilters", "Near", "parse_when"]

MAX_FILTER_TAGS = 50
Tag = Annotated[str, Meta(min_length=1, max_length=100)]


class Near(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A circle on the globe: images whose GPS position lies within `km` of it."""

    lat: Annotated[float, Meta(ge=-90, le=90, description="latitude in degrees")]
    lon: Annotated[float, Meta(ge=-180, le=180, description="longitude in degrees")]
    km: Annotated[float, Meta(gt=0, le=20_040, description="radius in kilometres")]


class ImageFilters(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Conditions every returned image meets (all of them; absent ones do not apply)."""

    taken_after: (
        Annotated[str, Meta(description="ISO 8601 date or date-time; taken at or after it")] | None
    ) = None
    taken_before: (
        Annotated[str, Meta(description="ISO 8601 date or date-time; taken before it")] | None
    ) = None
    camera: (
        Annotated[str, Meta(max_length=200, description="camera make or model, case-insensitive")]
        | None
    ) = None
    source: Annotated[str, Meta(max_length=200, description="exact source label")] | None = None
    tags: (
        Annotated[
            list[Tag], Meta(max_length=MAX_FILTER_TAGS, description="images with all of them")
        ]
        | None
    ) = None
    any_tags: (
        Annotated[
            list[Tag],
            Meta(max_length=MAX_FILTER_TAGS, description="images with at least one of them"),
        ]
        | None
    ) = None
    album: Annotated[int, Meta(ge=1, description="album id")] | None = None
    favorite: (
        Annotated[bool, Meta(description="only favourites (true) or only others (false)")] | None
    ) = None
    min_rating: Annotated[int, Meta(ge=0, le=5, description="rating at least")] | None = None
    has_gps: (
        Annotated[bool, Meta(description="with (true) or without (false) a GPS position")] | None
    ) = None
    near: Near | None = None
    format: (
        Annotated[str, Meta(max_length=16, description="stored format, e.g. JPEG, PNG, HEIF")]
        | None
    ) = None

    def __post_init__(self) -> None:
        after = parse_when(self.taken_after, "taken_after")
        before = parse_when(self.taken_before, "taken_before")
        if after is not None and before is not None and after >= before:
            raise BadRequest(
                "filters: taken_after must be earlier than taken_before", code="bad_filter"
            )

    @property
    def empty(self) -> bool:
        """True when no condition is set."""
        return self == _NONE


def parse_when(value: str | None, name: str) -> str | None:
    """An ISO 8601 date or date-time, normalised to ``YYYY-MM-DDTHH:MM:SS``: compared with
    the wall-clock time the camera recorded (an offset is ignored, as most photos have
    none); a clear 400 names a malformed one."""
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadRequest(
            f"filters: {name} must be an ISO 8601 date (2019-01-31) or date-time "
            f"(2019-01-31T18:30:00), got {value[:40]!r}",
            code="bad_filter",
        ) from None
    return when.replace(tzinfo=None).isoformat(timespec="seconds")


_NONE = ImageFilters()
