"""The near-duplicate groups are kept between listings, and never served stale: through
the real app, every write that changes the groups (a pair recorded, an image trashed,
restored, resolved or deleted, another catalog object on the same file) shows in the
next listing, and a repeated listing is answered from the kept groups.

The finder is off: the pairs are recorded as it records them, so that each test says
exactly which pairs exist."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from litestar.testing import TestClient
from PIL import Image

from imgdex.catalog import Catalog
from imgdex.ops.duplicate_groups import GroupCache
from imgdex.testing import make_config, toy_plugins

Client = TestClient[Any]
ADMIN = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture
def client(tmp_path: Any) -> Any:
    from imgdex.api import create_app

    config = make_config(
        tmp_path / "data", duplicates={"enabled": False, "min_score": 0.9, "threshold": 0.95}
    )
    app = create_app(config, plugins=toy_plugins(), entry_points=False, preload=False)
    with TestClient(app) as c:
        yield c


def upload(client: Client, n: int) -> list[str]:
    rng = np.random.default_rng(n)
    shas = []
    for i in range(n):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8)).save(buffer, "PNG")
        r = client.post("/api/images", files={"file": (f"{i}.png", buffer.getvalue(), "image/png")})
        assert r.status_code == 201, r.text
        shas.append(str(r.json()["sha256"]))
    return shas


def record(catalog: Catalog, *pairs: tuple[str, str, float]) -> None:
    with catalog.transaction() as db:
        for a, b, score in pairs:
            catalog.record_duplicates(db, a, "toy_color_v1", [(b, score)])


def groups(client: Client, **params: Any) -> list[set[str]]:
    r = client.get("/api/duplicates", params=params)
    assert r.status_code == 200, r.text
    return [{i["sha256"] for i in g["images"]} for g in r.json()["groups"]]


def cache(client: Client) -> GroupCache:
    found: GroupCache = client.app.state.runtime.duplicates.cache
    return found


def test_a_repeated_listing_is_answered_from_the_kept_groups(client: Client) -> None:
    a, b, c, d = upload(client, 4)
    record(client.app.state.runtime.catalog, (a, b, 0.99), (c, d, 0.97))
    first = client.get("/api/duplicates").json()
    misses = cache(client).misses
    assert client.get("/api/duplicates").json() == first
    assert [set(g) for g in groups(client, limit=1, offset=1)] == [{c, d}]
    assert client.get("/duplicates").status_code == 200  # the page lists the same groups
    assert cache(client).misses == misses
    # Another threshold is grouped once, and kept alongside.
    assert groups(client, threshold=0.98) == [{a, b}]
    assert groups(client, threshold=0.98) == [{a, b}]
    assert groups(client) == [{a, b}, {c, d}]
    assert cache(client).misses == misses + 1


def test_every_change_to_the_groups_shows_in_the_next_listing(client: Client) -> None:
    a, b, c, d, e, f = upload(client, 6)
    catalog = client.app.state.runtime.catalog
    record(catalog, (a, b, 0.99), (c, d, 0.97))
    assert groups(client) == [{a, b}, {c, d}]
    # A pair recorded by the finder joins e to c and d.
    record(catalog, (d, e, 0.96))
    assert groups(client) == [{a, b}, {c, d, e}]
    # A changed score reorders the groups.
    record(catalog, (d, e, 0.995))
    assert groups(client) == [{c, d, e}, {a, b}]
    # The trash breaks the chain through d; restoring it mends it.
    assert client.delete(f"/api/images/{d}").status_code == 200
    assert groups(client) == [{a, b}]
    assert client.post(f"/api/images/{d}/restore").status_code == 200
    assert groups(client) == [{c, d, e}, {a, b}]
    # Resolving keeps a, trashes b: the group is gone.
    r = client.post("/api/duplicates/resolve", json={"keep": a, "trash": [b]})
    assert r.status_code == 200, r.text
    assert groups(client) == [{c, d, e}]
    # A hard delete takes its pairs along.
    assert client.delete(f"/api/images/{e}", params={"hard": "true"}, headers=ADMIN).is_success
    assert groups(client) == [{c, d}]
    # Re-recording a pair with its score (the finder seeing it from the other image)
    # changes nothing, and the kept groups stay.
    misses = cache(client).misses
    record(catalog, (d, c, 0.97))
    assert groups(client) == [{c, d}]
    assert cache(client).misses == misses
    # Trashing an image that is in no pair leaves the groups, and the kept ones, alone.
    assert client.delete(f"/api/images/{f}").status_code == 200
    assert groups(client) == [{c, d}]
    assert cache(client).misses == misses


def test_a_pair_written_through_another_catalog_object_shows(client: Client) -> None:
    a, b, c = upload(client, 3)
    runtime = client.app.state.runtime
    record(runtime.catalog, (a, b, 0.99))
    assert groups(client) == [{a, b}]
    other = Catalog(runtime.catalog.path)  # as another process opens the same file
    try:
        record(other, (b, c, 0.98))
        assert groups(client) == [{a, b, c}]
        with other.transaction() as db:
            other.set_deleted(db, b, True)
    finally:
        other.close()
    assert groups(client) == []
