"""Image filters from a query string or form fields: the same names as the search
bodies' ``filters`` object (`imgdex.filters.ImageFilters`), as plain text fields.

``tags`` and ``any_tags`` may repeat or hold comma-separated lists; ``near`` is
``lat,lon,km``; booleans are ``true``/``false`` (or 1/0). A bad value is a 400 naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from imgdex.errors import BadRequest
from imgdex.filters import ImageFilters

__all__ = ["FILTER_FIELDS", "filters_from_fields"]

FILTER_FIELDS = tuple(ImageFilters.__struct_fields__)
_LISTS = {"tags", "any_tags"}


def filters_from_fields(get: Callable[[str], Sequence[str]]) -> ImageFilters:
    """`ImageFilters` from text fields; `get(name)` returns every value given for a name."""
    raw: dict[str, Any] = {}
    for name in FILTER_FIELDS:
        values = [v for v in get(name) if v.strip()]
        if not values:
            continue
        if name in _LISTS:
            raw[name] = [t.strip() for v in values for t in v.split(",") if t.strip()]
        elif len(values) > 1:
            raise BadRequest(f"filters: {name} is given more than once", code="bad_filter")
        elif name == "near":
            raw[name] = _near(values[0])
        else:
            raw[name] = values[0].strip()
    try:
        return msgspec.convert(raw, ImageFilters, strict=False)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"filters: {_where(str(exc))}", code="bad_filter") from None


def _near(value: str) -> dict[str, str]:
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 3:
        raise BadRequest(
            f"filters: near must be 'lat,lon,km' (three numbers), got {value[:60]!r}",
            code="bad_filter",
        )
    return dict(zip(("lat", "lon", "km"), parts, strict=True))


def _where(message: str) -> str:
    # msgspec says "Expected `float` <= 90 - at `$.near.lat`": name the field plainly.
    text, _, path = message.partition(" - at `$.")
    return f"{path.rstrip('`')}: {text}" if path else message
