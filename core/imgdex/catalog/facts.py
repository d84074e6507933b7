"""Columns derived from a photo's facts so that the camera and place filters use
indexes: the camera dictionary and the GPS position as a unit vector.

``camera`` matches a substring of make or model, which no B-tree can answer. A library
holds few distinct cameras, so the substring is matched against the small ``cameras``
table (one row per case-folded make and model) and images are found through their
indexed ``camera_id``. ``near`` checks the exact distance as the chord between unit
vectors (`imgdex.geo.chord_squared`), arithmetic on indexed columns instead of a
function called per row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from imgdex.catalog.dialect import Connection, Dialect
from imgdex.geo import unit_vector

__all__ = ["Derived", "backfill", "derive", "fold"]


class Derived(NamedTuple):
    """What `derive` adds to an image row."""

    camera_id: int | None
    gps_x: float | None
    gps_y: float | None
    gps_z: float | None


def fold(text: str | None) -> str:
    """A camera name as the filter compares it: case-folded, '' when absent."""
    return (text or "").casefold()


def derive(
    db: Connection,
    dialect: Dialect,
    make: str | None,
    model: str | None,
    lat: float | None,
    lon: float | None,
) -> Derived:
    """The derived columns of an image with these facts (adds its camera to the
    dictionary when new), inside transaction `db`."""
    camera_id = None
    if make is not None or model is not None:
        key = (fold(make), fold(model))
        db.execute(
            f"INSERT INTO cameras (make, model) VALUES (?, ?) {dialect.insert_ignore()}", key
        )
        row = db.execute("SELECT id FROM cameras WHERE make = ? AND model = ?", key).fetchone()
        camera_id = int(row[0])
    if lat is None or lon is None:
        return Derived(camera_id, None, None, None)
    return Derived(camera_id, *unit_vector(lat, lon))


def backfill(dialect: Dialect) -> Callable[[Connection], None]:
    """A migration step that fills the derived columns of the images already stored."""

    def run(db: Connection) -> None:
        rows = db.execute(
            "SELECT sha256, camera_make, camera_model, gps_lat, gps_lon FROM images "
            "WHERE camera_make IS NOT NULL OR camera_model IS NOT NULL OR gps_lat IS NOT NULL"
        ).fetchall()
        for id_, make, model, lat, lon in rows:
            db.execute(
                "UPDATE images SET camera_id = ?, gps_x = ?, gps_y = ?, gps_z = ? WHERE sha256 = ?",
                (*derive(db, dialect, make, model, lat, lon), id_),
            )

    return run
