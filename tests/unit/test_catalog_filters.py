"""Unit tests for the filter builder (imgdex.catalog.filters) through the image store's
`filter_ids`, `count_matching` and `list_images`, on a real SQLite catalog."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from imgdex.catalog import Catalog
from imgdex.catalog.images import PhotoFacts
from imgdex.errors import BadRequest
from imgdex.filters import ImageFilters
from imgdex.geo import bounding_box, great_circle_km


def make_id(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()[:32]


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    cat = Catalog(tmp_path / "imgdex.db")
    yield cat
    cat.close()


def add(
    cat: Catalog,
    n: int,
    *,
    taken: str | None = None,
    make: str | None = None,
    model: str | None = None,
    gps: tuple[float, float] | None = None,
    fmt: str = "JPEG",
    size: int = 1000,
    source: str | None = None,
) -> str:
    id_ = make_id(n)
    with cat.transaction() as db:
        cat.images.insert_image(
            db, id_=id_, full=id_ * 2, width=8, height=8, file_size=size, fmt=fmt,
            filename="image.jpg", source=source, status="ready",
        )  # fmt: skip
        facts = PhotoFacts(
            taken, taken[:19] if taken else None, make, model, None,
            gps[0] if gps else None, gps[1] if gps else None, None, None,
        )  # fmt: skip
        cat.images.set_facts(db, id_, facts)
    return id_


def f(**kw: Any) -> ImageFilters:
    return msgspec.convert(kw, ImageFilters)


def test_dates_camera_format_source_gps(catalog: Catalog) -> None:
    a = add(catalog, 1, taken="2019-06-01T10:00:00+02:00", make="Canon", model="EOS 5D")
    b = add(catalog, 2, taken="2021-01-01T00:00:00", make="NIKON CORPORATION", model="D750")
    c = add(catalog, 3, fmt="PNG", source="scans", gps=(48.85, 2.35))
    ids = catalog.images.filter_ids
    assert ids(f(taken_after="2019-01-01")) == {a, b}
    assert ids(f(taken_after="2019-01-01", taken_before="2020-01-01")) == {a}
    assert ids(f(taken_before="2019-06-01T10:00:00")) == set()  # before is exclusive
    assert ids(f(camera="canon")) == {a}
    assert ids(f(camera="nikon")) == {b}
    assert ids(f(camera="d75")) == {b}
    assert ids(f(camera="%")) == set()  # LIKE wildcards are literal
    assert ids(f(format="png")) == {c}
    assert ids(f(source="scans")) == {c}
    assert ids(f(has_gps=True)) == {c}
    assert ids(f(has_gps=False)) == {a, b}
    assert catalog.images.count_matching(f()) == 3
    assert catalog.images.count_matching(f(), limit=2) == 2  # stops counting there
    assert catalog.images.count_matching(f(), limit=10) == 3
    assert catalog.images.count_matching(f(has_gps=False, camera="canon")) == 1


def test_deleted_images_never_match(catalog: Catalog) -> None:
    a = add(catalog, 1)
    b = add(catalog, 2)
    with catalog.transaction() as db:
        catalog.images.set_deleted(db, a, True)
    assert catalog.images.filter_ids(f()) == {b}
    rows, total = catalog.images.list_images(offset=0, limit=10, deleted="only")
    assert [r.sha256 for r in rows] == [a] and total == 1


def test_near_uses_the_real_distance_and_crosses_the_antimeridian(catalog: Catalog) -> None:
    paris = add(catalog, 1, gps=(48.8566, 2.3522))
    london = add(catalog, 2, gps=(51.5074, -0.1278))  # ~344 km from Paris
    fiji_east = add(catalog, 3, gps=(-17.0, 179.9))
    fiji_west = add(catalog, 4, gps=(-17.0, -179.9))  # ~21 km from fiji_east
    add(catalog, 5)
    ids = catalog.images.filter_ids
    assert ids(f(near={"lat": 48.8566, "lon": 2.3522, "km": 300})) == {paris}
    assert ids(f(near={"lat": 48.8566, "lon": 2.3522, "km": 400})) == {paris, london}
    assert ids(f(near={"lat": -17.0, "lon": 179.95, "km": 30})) == {fiji_east, fiji_west}
    # A corner of the bounding box is outside the circle: the exact distance decides.
    lat_min, _, spans = bounding_box(0.0, 0.0, 100.0)
    corner = add(catalog, 6, gps=(lat_min + 0.01, spans[0][0] + 0.01))
    assert great_circle_km(lat_min + 0.01, spans[0][0] + 0.01, 0.0, 0.0) > 100
    assert corner not in ids(f(near={"lat": 0.0, "lon": 0.0, "km": 100}))
    # Near a pole the box covers every longitude.
    pole = add(catalog, 7, gps=(89.9, 120.0))
    assert ids(f(near={"lat": 89.95, "lon": -60.0, "km": 50})) == {pole}


def test_tags_albums_favourites_ratings(catalog: Catalog) -> None:
    a, b, c = add(catalog, 1), add(catalog, 2), add(catalog, 3)
    with catalog.transaction() as db:
        catalog.tags.add_tags(db, a, ["beach", "日落"], "user")
        catalog.tags.add_tags(db, b, ["beach"], "vlm_caption", 0.8)
        catalog.images.update_image(db, a, favorite=True, rating=4)
        catalog.images.update_image(db, b, rating=2)
        album = catalog.albums.create_album(
            db, name="trip", description=None, smart=None, cover=None
        )
        catalog.albums.add_to_album(db, album, [b, c])
    ids = catalog.images.filter_ids
    assert ids(f(tags=["beach"])) == {a, b}
    assert ids(f(tags=["BEACH ", "日落"])) == {a}  # normalised like stored tags
    assert ids(f(any_tags=["日落", "nothing"])) == {a}
    assert ids(f(album=album)) == {b, c}
    assert ids(f(favorite=True)) == {a}
    assert ids(f(favorite=False)) == {b, c}
    assert ids(f(min_rating=2)) == {a, b}
    assert ids(f(min_rating=2, album=album)) == {b}


def test_list_sorts_with_missing_values_last(catalog: Catalog) -> None:
    a = add(catalog, 1, taken="2020-01-01T00:00:00", size=30)
    b = add(catalog, 2, taken="2010-01-01T00:00:00", size=10)
    c = add(catalog, 3, size=20)

    def order(sort: str, direction: str) -> list[str]:
        rows, total = catalog.images.list_images(
            offset=0,
            limit=10,
            sort=sort,
            order=direction,  # type: ignore[arg-type]
        )
        assert total == 3
        return [r.sha256 for r in rows]

    assert order("taken_at", "desc") == [a, b, c]
    assert order("taken_at", "asc") == [b, a, c]
    assert order("file_size", "asc") == [b, c, a]
    assert order("file_size", "desc") == [a, c, b]


def test_bad_filters_are_refused_with_the_problem_named() -> None:
    with pytest.raises(BadRequest, match="taken_after"):
        f(taken_after="yesterday")
    with pytest.raises(msgspec.ValidationError, match="lat"):
        f(near={"lat": 91, "lon": 0, "km": 1})


def test_camera_folds_case_beyond_ascii(catalog: Catalog) -> None:
    a = add(catalog, 1, make="ÄGFA", model="Ißo")
    b = add(catalog, 2, make="Canon", model=None)
    add(catalog, 3)
    ids = catalog.images.filter_ids
    assert ids(f(camera="ägfa")) == {a}
    assert ids(f(camera="ISSO")) == {a}  # case-folded: ß matches ss
    assert ids(f(camera="  ")) == {a, b}  # any camera at all, as before


def test_near_at_tiny_and_whole_globe_radii(catalog: Catalog) -> None:
    here = add(catalog, 1, gps=(35.6812, 139.7671))
    there = add(catalog, 2, gps=(-35.6812, -40.2329))  # the antipode
    ids = catalog.images.filter_ids
    assert ids(f(near={"lat": 35.6812, "lon": 139.7671, "km": 0.001})) == {here}
    assert ids(f(near={"lat": 35.6812, "lon": 139.7671, "km": 20_040})) == {here, there}


@pytest.mark.parametrize("sort", ["taken_at", "file_size"])
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_list_pages_are_the_same_whichever_way_the_page_is_read(
    catalog: Catalog, sort: str, direction: str
) -> None:
    # A rare camera (its matches are fetched and sorted) and a common one (the sort
    # order is walked): both give exactly the pages the plain sort gives, undated last.
    made: dict[str, tuple[str | None, int, str]] = {}
    for n in range(60):
        taken = None if n % 7 == 0 else f"20{10 + n % 13:02d}-01-01T00:00:00"
        make = "Rare" if n % 20 == 3 else "Common"
        made[add(catalog, n, taken=taken, make=make, size=1000 + n % 9)] = (taken, n % 9, make)
    for make in ("rare", "common"):
        keep = [i for i, (_, _, m) in made.items() if m.casefold() == make]
        expected = sorted(keep, reverse=direction == "desc")  # ties break by id
        if sort == "file_size":
            expected.sort(key=lambda i: made[i][1], reverse=direction == "desc")
        else:
            expected.sort(key=lambda i: made[i][0] or "", reverse=direction == "desc")
            expected.sort(key=lambda i: made[i][0] is None)  # undated last either way
        for offset in (0, 2, len(keep) - 1):
            rows, total = catalog.images.list_images(
                offset=offset,
                limit=4,
                filters=f(camera=make),
                sort=sort,
                order=direction,  # type: ignore[arg-type]
            )
            assert total == len(keep)
            assert [r.sha256 for r in rows] == expected[offset : offset + 4]


def test_album_filter_follows_a_smart_albums_rule(catalog: Catalog) -> None:
    a = add(catalog, 1, make="Canon")
    b = add(catalog, 2, make="Canon")
    add(catalog, 3, make="Nikon")
    with catalog.transaction() as db:
        catalog.images.update_image(db, b, favorite=True)
        smart = catalog.albums.create_album(
            db, name="canon", description=None, cover=None,
            smart='{"filters": {"camera": "canon"}}',
        )  # fmt: skip
        queried = catalog.albums.create_album(
            db, name="q", description=None, cover=None, smart='{"query": "dogs"}'
        )
    ids = catalog.images.filter_ids
    assert ids(f(album=smart)) == {a, b}
    assert ids(f(album=smart, favorite=True)) == {b}
    assert catalog.images.count_matching(f(album=smart)) == 2
    rows, total = catalog.images.list_images(offset=0, limit=10, filters=f(album=smart))
    assert total == 2 and {r.sha256 for r in rows} == {a, b}
    with pytest.raises(BadRequest, match="smart album with a query"):
        ids(f(album=queried))
