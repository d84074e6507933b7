"""Distances on the globe, for the ``near`` filter."""

from __future__ import annotations

import math

__all__ = ["EARTH_KM", "bounding_box", "chord_squared", "great_circle_km", "unit_vector"]

EARTH_KM = 6371.0088  # mean Earth radius (IUGG)


def great_circle_km(lat1: float | None, lon1: float | None, lat2: float, lon2: float) -> float:
    """The haversine distance in km; infinite when the first point is missing."""
    if lat1 is None or lon1 is None:
        return math.inf
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_KM * math.asin(min(1.0, math.sqrt(h)))


def bounding_box(
    lat: float, lon: float, km: float
) -> tuple[float, float, list[tuple[float, float]]]:
    """``(lat_min, lat_max, lon_ranges)`` enclosing every point within `km` of the centre:
    a cheap indexed pre-filter before the exact distance. The longitude span is one or two
    ranges (split at the antimeridian), or the whole circle near a pole."""
    dlat = math.degrees(km / EARTH_KM)
    lat_min, lat_max = max(-90.0, lat - dlat), min(90.0, lat + dlat)
    if lat_min <= -90.0 or lat_max >= 90.0:
        return lat_min, lat_max, [(-180.0, 180.0)]
    # The widest longitude span of the circle (at the latitude of its tangent points).
    ratio = math.sin(km / EARTH_KM) / math.cos(math.radians(lat))
    if ratio >= 1.0:
        return lat_min, lat_max, [(-180.0, 180.0)]
    dlon = math.degrees(math.asin(ratio))
    west, east = lon - dlon, lon + dlon
    if west < -180.0:
        return lat_min, lat_max, [(west + 360.0, 180.0), (-180.0, east)]
    if east > 180.0:
        return lat_min, lat_max, [(west, 180.0), (-180.0, east - 360.0)]
    return lat_min, lat_max, [(west, east)]


def unit_vector(lat: float, lon: float) -> tuple[float, float, float]:
    """The point on the unit sphere: the catalog stores it so that the exact ``near``
    check is arithmetic the database does itself (`chord_squared`)."""
    p, q = math.radians(lat), math.radians(lon)
    return math.cos(p) * math.cos(q), math.cos(p) * math.sin(q), math.sin(p)


def chord_squared(km: float) -> float:
    """The squared straight-line distance between two unit vectors `km` apart on the
    globe: a point is within `km` exactly when its squared chord is at most this. The
    chord stays accurate at small distances, where a dot product against a cosine would
    lose them to rounding."""
    angle = km / EARTH_KM
    if angle >= math.pi:
        return 5.0  # every point (the largest squared chord is 4)
    return (2.0 * math.sin(angle / 2.0)) ** 2
