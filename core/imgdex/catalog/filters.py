"""`ImageFilters` -> a WHERE clause over ``images i``: one builder for the image list,
albums and every search.

Tags are compared in their normal form (`imgdex.tags.normalise`), dates by the photo's
wall-clock time (`taken_local`), `camera` as a case-insensitive substring of make or
model (matched in the small camera dictionary, `imgdex.catalog.facts`). `near` is a
bounding box (indexed) and then the exact great-circle distance as a chord between unit
vectors. `album` is an album's members, or for a smart album its rule (`album_rule`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from imgdex.catalog.dialect import Connection, Dialect
from imgdex.catalog.engine import marks
from imgdex.catalog.facts import fold
from imgdex.errors import BadRequest
from imgdex.filters import ImageFilters, parse_when
from imgdex.geo import bounding_box, chord_squared, unit_vector
from imgdex.tags import normalise

__all__ = ["album_rule", "where_clause"]


class _Smart(msgspec.Struct, kw_only=True):
    """The part of a smart album's stored search (``albums.smart``) the catalog reads."""

    query: str | None = None
    filters: ImageFilters | None = None


def album_rule(conn: Connection, filters: ImageFilters) -> ImageFilters | None:
    """The rule of the smart album `filters` name (None for an album made by hand, or
    none named): what the album shows, so what ``album`` must match. A smart album with
    a query shows a ranked search, which the catalog cannot evaluate: a clear 400."""
    if filters.album is None:
        return None
    row = conn.execute("SELECT smart FROM albums WHERE id = ?", (filters.album,)).fetchone()
    if row is None or not row[0]:
        return None
    smart = msgspec.json.decode(row[0], type=_Smart)
    if smart.query:
        raise BadRequest(
            f"filters: album {filters.album} is a smart album with a query; filter by a "
            "manual album or one defined by filters only",
            code="bad_filter",
        )
    return smart.filters or ImageFilters()


def where_clause(
    filters: ImageFilters,
    dialect: Dialect,
    *,
    rule: ImageFilters | None = None,
    indexed: bool = True,
) -> tuple[str, list[Any]]:
    """``(sql, params)``: conditions on table alias ``i`` (``1=1`` when there are none).
    Says nothing about deletion: callers add ``i.is_deleted`` as they need.

    `rule`: the smart album's rule when ``filters.album`` names one (`album_rule`).
    `indexed=False` keeps the camera, place and favourite conditions off their indexes,
    so that the planner walks the sort order's index instead (`ImageStore.list_images`
    decides which is cheaper)."""
    where: list[str] = []
    params: list[Any] = []
    f = filters

    def col(name: str) -> str:
        return name if indexed else dialect.unindexed(name)

    if f.taken_after is not None:
        where.append("i.taken_local >= ?")
        params.append(_when(f.taken_after))
    if f.taken_before is not None:
        where.append("i.taken_local < ?")
        params.append(_when(f.taken_before))
    if f.camera is not None:
        pattern = "%" + _escape_like(fold(f.camera.strip())) + "%"
        where.append(
            f"{col('i.camera_id')} IN (SELECT c.id FROM cameras c "
            "WHERE c.make LIKE ? ESCAPE '\\' OR c.model LIKE ? ESCAPE '\\')"
        )
        params += [pattern, pattern]
    if f.source is not None:
        where.append(f"{col('i.source')} = ?")
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
    if f.album is not None and rule is not None:
        sql, more = where_clause(rule, dialect, indexed=indexed)
        where.append(f"({sql})")
        params += more
    elif f.album is not None:
        where.append(
            "EXISTS (SELECT 1 FROM album_images a WHERE a.image_sha256 = i.sha256 "
            "AND a.album_id = ?)"
        )
        params.append(f.album)
    if f.favorite is not None:
        where.append(f"{col('i.favorite')} = ?")
        params.append(int(f.favorite))
    if f.min_rating is not None:
        where.append("i.rating >= ?")
        params.append(f.min_rating)
    if f.has_gps is not None:
        where.append(f"{col('i.gps_lat')} IS {'NOT ' if f.has_gps else ''}NULL")
    if f.near is not None:
        lat_min, lat_max, spans = bounding_box(f.near.lat, f.near.lon, f.near.km)
        where.append(f"{col('i.gps_lat')} BETWEEN ? AND ?")
        params += [lat_min, lat_max]
        where.append("(" + " OR ".join("i.gps_lon BETWEEN ? AND ?" for _ in spans) + ")")
        params += [bound for span in spans for bound in span]
        x, y, z = unit_vector(f.near.lat, f.near.lon)
        where.append(
            "(i.gps_x - ?) * (i.gps_x - ?) + (i.gps_y - ?) * (i.gps_y - ?) "
            "+ (i.gps_z - ?) * (i.gps_z - ?) <= ?"
        )
        params += [x, x, y, y, z, z, chord_squared(f.near.km)]
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
