"""`ImageFilters` -> a WHERE clause over ``images i``: one builder for the image list,
albums and every search.

Tags are compared in their normal form (`imgdex.tags.normalise`), dates by the photo's
wall-clock time (`taken_local`), `camera` as a case-insensitive substring of make or
model. `near` is a bounding box (indexed) and then the exact great-circle distance
through the dialect.
"""

from __future__ import annotations

from typing import Any

from imgdex.catalog.dialect import Dialect
from imgdex.catalog.engine import marks
from imgdex.filters import ImageFilters, parse_when
from imgdex.geo import bounding_box
from imgdex.tags import normalise

__all__ = ["where_clause"]


def where_clause(filters: ImageFilters, dialect: Dialect) -> tuple[str, list[Any]]:
    """``(sql, params)``: conditions on table alias ``i`` (``1=1`` when there are none).
    Says nothing about deletion: callers add ``i.is_deleted`` as they need."""
    where: list[str] = []
    params: list[Any] = []
    f = filters
    if f.taken_after is not None:
        where.append("i.taken_local >= ?")
        params.append(_when(f.taken_after))
    if f.taken_before is not None:
        where.append("i.taken_local < ?")
        params.append(_when(f.taken_before))
    if f.camera is not None:
        pattern = "%" + _escape_like(f.camera.strip().lower()) + "%"
        where.append(
            "(LOWER(i.camera_make) LIKE ? ESCAPE '\\' OR LOWER(i.camera_model) LIKE ? ESCAPE '\\')"
        )
        params += [pattern, pattern]
    if f.source is not None:
        where.append("i.source = ?")
        params.append(f.source)
    for tag in dict.fromkeys(normalise(t) for t in f.tags or ()):
        where.append(
            "EXISTS (SELECT 1 FROM image_tags t WHERE t.image_sha256 = i.sha256 AND t.tag = ?)"
        )
        params.append(tag)
    if f.any_tags:
        tags = list(dict.fromkeys(normalise(t) for t in f.any_tags))
        where.append(
            "EXISTS (SELECT 1 FROM image_tags t WHERE t.image_sha256 = i.sha256 "
            f"AND t.tag IN ({marks(len(tags))}))"
        )
        params += tags
    if f.album is not None:
        where.append(
            "EXISTS (SELECT 1 FROM album_images a WHERE a.image_sha256 = i.sha256 "
            "AND a.album_id = ?)"
        )
        params.append(f.album)
    if f.favorite is not None:
        where.append("i.favorite = ?")
        params.append(int(f.favorite))
    if f.min_rating is not None:
        where.append("i.rating >= ?")
        params.append(f.min_rating)
    if f.has_gps is not None:
        where.append("i.gps_lat IS NOT NULL" if f.has_gps else "i.gps_lat IS NULL")
    if f.near is not None:
        lat_min, lat_max, spans = bounding_box(f.near.lat, f.near.lon, f.near.km)
        where.append("i.gps_lat BETWEEN ? AND ?")
        params += [lat_min, lat_max]
        where.append("(" + " OR ".join("i.gps_lon BETWEEN ? AND ?" for _ in spans) + ")")
        params += [bound for span in spans for bound in span]
        where.append(f"{dialect.distance_km('i.gps_lat', 'i.gps_lon')} <= ?")
        params += [f.near.lat, f.near.lon, f.near.km]
    if f.format is not None:
        where.append("UPPER(i.format) = ?")
        params.append(f.format.strip().upper())
    return (" AND ".join(where) or "1=1"), params


def _when(value: str) -> str:
    # ImageFilters checked it already; normalise the same way it did.
    normal = parse_when(value, "date")
    assert normal is not None
    return normal


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
