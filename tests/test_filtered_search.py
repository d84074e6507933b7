"""Filtered search: a full page of matching results whatever the filter's selectivity,
checked against exact filtered search on a 20k-vector index, and the filters and sort
of all three searches through the real app."""

from __future__ import annotations

import base64
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from litestar.testing import TestClient

from imgdex.catalog import Catalog
from imgdex.filters import ImageFilters
from imgdex.index import IndexInfo, ManagedIndex
from imgdex.index.flat import FlatBackend
from imgdex.index.hnsw import HnswBackend
from imgdex.providers import IndexLocation, VectorIndex
from imgdex.search_filters import CatalogAllowed, Scope
from imgdex.testing import image_bytes

from .photos import photo

Client = TestClient[Any]

N, DIM, K = 20_000, 64, 10


def clustered(rng: np.random.Generator, n: int) -> npt.NDArray[np.float32]:
    """Unit vectors around 200 centres: closer to real embeddings than pure noise."""
    centres = rng.standard_normal((200, DIM)).astype(np.float32)
    x = centres[rng.integers(0, 200, n)] + 0.35 * rng.standard_normal((n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def big_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[ManagedIndex, Any, list[str]]:
    rng = np.random.default_rng(7)
    vectors = clustered(rng, N)
    images = [f"{i:032x}" for i in range(N)]
    path = tmp_path_factory.mktemp("big")
    info = IndexInfo("big_v1", "m", "1", DIM, "cosine", "image", "hnswlib", "now")
    managed = ManagedIndex(
        info, path, HnswBackend().open(IndexLocation.at(path), dimension=DIM, metric="cosine")
    )
    labels = list(range(1, N + 1))
    managed.add(labels, vectors, [(image, "image", 1, 1) for image in images])
    return managed, vectors, images


def exact(
    vectors: npt.NDArray[np.float32], query: npt.NDArray[np.float32], allowed: list[int], k: int
) -> list[int]:
    """Labels (row + 1) of the exact top `k` among rows `allowed`."""
    rows = np.asarray(allowed)
    scores = vectors[rows] @ query
    return [int(rows[i]) + 1 for i in np.argsort(-scores)[:k]]


@pytest.mark.parametrize("share", [0.9, 0.05, 0.001])
def test_filtered_search_fills_the_page_and_matches_exact(
    big_index: tuple[ManagedIndex, Any, list[str]], share: float
) -> None:
    managed, vectors, images = big_index
    rng = np.random.default_rng(11)
    rows = sorted(rng.choice(N, int(N * share), replace=False).tolist())
    among = managed.labels.labels_of({images[r] for r in rows})
    assert among.tolist() == [r + 1 for r in rows]
    recalls = []
    for q in range(20):
        query = vectors[rng.integers(0, N)] + 0.1 * rng.standard_normal(DIM).astype(np.float32)
        labels, scores = managed.search(query, K, among)
        assert len(labels) == K, "a full page, whatever the selectivity"
        assert set(labels.tolist()) <= set(among.tolist()), "every result matches"
        assert np.all(np.diff(scores) <= 1e-6)
        truth = exact(vectors, query / np.linalg.norm(query), rows, K)
        recalls.append(len(set(labels.tolist()) & set(truth)) / K)
        if share < 0.01:  # few: searched exactly over the matching vectors
            assert labels.tolist() == truth, q
    assert np.mean(recalls) >= 0.95


@pytest.mark.parametrize("own", [True, False])
def test_every_backend_searches_among_labels(tmp_path: Path, own: bool) -> None:
    # The flat backend's own filtered search, and the seam's default (widening a plain
    # search) that any third-party backend inherits.
    rng = np.random.default_rng(3)
    vectors = clustered(rng, 500)
    index = FlatBackend().open(IndexLocation.at(tmp_path), dimension=DIM, metric="cosine")
    index.add(np.arange(1, 501, dtype=np.int64), vectors)
    index.hide([2])
    rows = list(range(0, 500, 25))  # 20 allowed, one of them hidden
    among = np.asarray([r + 1 for r in rows])
    search = index.search_among if own else partial(VectorIndex.search_among, index)
    labels, _ = search(vectors[0], 10, among)
    truth = [t for t in exact(vectors, vectors[0], rows, 11) if t != 2][:10]
    assert labels.tolist() == truth


# --- post-filtering the graph's candidates, or enumerating the matches ------------


def catalog_of(path: Path, images: list[str], chosen: set[int]) -> Catalog:
    """A real catalog of `images`, those at rows `chosen` with source ``in``."""
    catalog = Catalog(path / "catalog.db")
    with catalog.transaction() as db:
        for row, image in enumerate(images):
            source = "in" if row in chosen else "out"
            catalog.insert_image(
                db, id_=image, full=image * 2, width=1, height=1, file_size=1, fmt="PNG",
                filename="a.png", source=source, status="ready",
            )  # fmt: skip
    return catalog


# Each side of each switch in imgdex.index.filtered: the count that enumerates at once
# (at most 2,048 matching images, 10.24% of 20k), the local share of matches that
# decides between widening and enumerating (2%), the enumeration's exact search (at
# most 4,096 labels) and its graph walk (a wide window on a broad filter), the widest
# post-filter (4,096 candidates, reached first with a large k), and the broad filters
# that post-filter in one round.
@pytest.mark.parametrize(
    ("share", "k"),
    [(0.9, K), (0.5, 50), (0.25, 1500), (0.15, 1500), (0.2, 50), (0.11, 50), (0.1024, 50),
     (0.1, 50), (0.05, 200), (0.019, 50), (0.001, 50)],
)  # fmt: skip
def test_scoped_search_fills_the_page_and_matches_exact(
    big_index: tuple[ManagedIndex, Any, list[str]], tmp_path: Path, share: float, k: int
) -> None:
    managed, vectors, images = big_index
    rng = np.random.default_rng(int(share * 1000) + k)
    rows = sorted(rng.choice(N, int(N * share), replace=False).tolist())
    catalog = catalog_of(tmp_path, images, set(rows))
    allowed = CatalogAllowed(catalog)
    recalls = []
    for q in range(20):
        query = vectors[rng.integers(0, N)] + 0.1 * rng.standard_normal(DIM).astype(np.float32)
        scope = Scope(ImageFilters(source="in"), allowed)
        scope.check()
        search = scope.search(managed, None)
        labels, scores = search(query, k)
        assert len(labels) == min(k, len(rows)), "a full window, whatever the selectivity"
        assert {int(x) - 1 for x in labels} <= set(rows), "every result matches"
        assert np.all(np.diff(scores) <= 1e-6)
        truth = exact(vectors, query / np.linalg.norm(query), rows, k)
        recalls.append(len(set(labels.tolist()) & set(truth)) / len(truth))
        if len(rows) <= 2048:  # counted, enumerated at once and searched exactly
            assert search.enumerated and search.rounds == 0
            assert labels.tolist() == truth, q
        elif k < 1000:
            assert search.rounds > 0
            assert not search.enumerated, "a broad filter never enumerates its matches"
        else:  # too wide a window for post-filtering
            assert search.enumerated
            if len(rows) <= 4096:  # exactly (up to float32 near-ties), else a graph walk
                best = vectors[np.asarray(truth) - 1] @ (query / np.linalg.norm(query))
                assert np.allclose(scores, best, atol=1e-5), q
    assert np.mean(recalls) >= 0.95
    catalog.close()


def test_scoped_search_sees_every_write(
    big_index: tuple[ManagedIndex, Any, list[str]], tmp_path: Path
) -> None:
    # Nothing is kept between searches: a change of source or a deletion shows at once.
    managed, vectors, images = big_index
    catalog = catalog_of(tmp_path, images, set(range(0, N, 2)))
    allowed = CatalogAllowed(catalog)

    def top() -> list[int]:
        scope = Scope(ImageFilters(source="in"), allowed)
        return scope.search(managed, None)(vectors[0], K)[0].tolist()

    first = top()
    assert first[0] == 1 and all((x - 1) % 2 == 0 for x in first)
    with catalog.transaction() as db:
        catalog.images.update_image(db, images[first[0] - 1], source="out")
        catalog.images.set_deleted(db, images[first[1] - 1], True)
        nearest_out = exact(vectors, vectors[0], list(range(1, N, 2)), 1)[0]
        catalog.images.update_image(db, images[nearest_out - 1], source="in")
    again = top()
    assert first[0] not in again and first[1] not in again
    assert nearest_out in again, "matches now"
    catalog.close()


def test_matching_among_asks_about_the_given_ids_only(tmp_path: Path) -> None:
    images = [f"{i:032x}" for i in range(10)]
    catalog = catalog_of(tmp_path, images, {1, 2, 3})
    with catalog.transaction() as db:
        catalog.images.set_deleted(db, images[3], True)
    found = catalog.images.matching_among(ImageFilters(source="in"), [*images[:3], "f" * 32])
    assert found == {images[1], images[2]}, "live, matching and asked about"
    catalog.close()


# --- through the app --------------------------------------------------------------


def upload(client: Client, data: bytes, source: str) -> str:
    r = client.post(
        "/api/images", files={"file": ("a.png", data, "image/png")}, data={"source": source}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["sha256"])


def library(client: Client) -> dict[str, list[str]]:
    shas: dict[str, list[str]] = {"phone": [], "scan": []}
    for i in range(12):
        source = "scan" if i % 4 == 0 else "phone"
        sha = upload(client, image_bytes("red", pattern=i + 1), source)
        r = client.post(
            f"/api/images/{sha}/descriptions",
            json={"method": "human", "content": f"red kite number {i}"},
        )
        assert r.status_code == 201, r.text
        shas[source].append(sha)
    return shas


def test_all_three_searches_take_filters(imgdex_client: Client) -> None:
    shas = library(imgdex_client)
    scans = set(shas["scan"])
    r = imgdex_client.post(
        "/api/search/text", json={"query": "red kite", "top_k": 3, "filters": {"source": "scan"}}
    )
    assert r.status_code == 200, r.text
    assert {x["sha256"] for x in r.json()["results"]} == scans
    query = image_bytes("red", pattern=1)
    r = imgdex_client.post(
        "/api/search/image",
        files={"file": ("q.png", query, "image/png")},
        data={"source": "scan", "format": "png", "top_k": "5"},
    )
    assert r.status_code == 200, r.text
    assert {x["sha256"] for x in r.json()["results"]} == scans
    body = {"image": base64.b64encode(query).decode(), "filters": {"source": "phone"}, "top_k": 9}
    r = imgdex_client.post("/api/search/image/base64", json=body)
    assert r.status_code == 200, r.text
    assert {x["sha256"] for x in r.json()["results"]} == set(shas["phone"])
    r = imgdex_client.post(
        "/api/search/text", json={"query": "red kite", "filters": {"source": "nowhere"}}
    )
    assert r.status_code == 200 and r.json()["results"] == []


def test_every_index_of_a_search_shares_one_evaluation(imgdex_client: Client) -> None:
    shas = library(imgdex_client)
    chosen = set(shas["phone"][:2])
    runtime = imgdex_client.app.state.runtime
    seen = []

    class Counting(CatalogAllowed):
        def images(self, filters: ImageFilters) -> set[str]:
            seen.append(filters)
            return chosen

        def count(self, filters: ImageFilters, limit: int) -> int:
            return len(chosen)  # few: every index enumerates them

    runtime.searcher.allowed = Counting(runtime.catalog)  # no kept sets
    r = imgdex_client.post(
        "/api/search/text", json={"query": "red kite", "filters": {"favorite": True}}
    )
    assert r.status_code == 200, r.text
    assert {x["sha256"] for x in r.json()["results"]} == chosen
    assert len(r.json()["indexes_searched"]) > 1
    assert len(seen) == 1, "evaluated once per search, shared by every index"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"filters": {"taken_after": "yesterday"}}, "bad_filter"),
        ({"filters": {"near": {"lat": 91, "lon": 0, "km": 1}}}, "invalid_request"),
        ({"filters": {"colour": "red"}}, "invalid_request"),
        ({"sort": "size"}, "invalid_request"),
    ],
)
def test_bad_filters_and_sorts_are_400(imgdex_client: Client, body: Any, error: str) -> None:
    r = imgdex_client.post("/api/search/text", json={"query": "red", **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == error


def test_bad_form_filters_are_400(imgdex_client: Client) -> None:
    upload(imgdex_client, image_bytes("red", pattern=1), "phone")
    bad = ({"near": "1,2"}, {"taken_before": "soon"}, {"min_rating": "9"})
    for data in bad:
        r = imgdex_client.post(
            "/api/search/image",
            files={"file": ("q.png", image_bytes("red"), "image/png")},
            data=data,
        )
        assert r.status_code == 400, (data, r.text)


def test_sort_by_taken_at_end_to_end(imgdex_client: Client) -> None:
    # Real photos with EXIF DateTimeOriginal, dates read at upload, sorted by the catalog's
    # capture dates: newest first, undated last.
    c = imgdex_client
    dated = {}
    for year, color in [(2019, (200, 30, 30)), (2023, (210, 40, 30)), (2021, (190, 20, 40))]:
        data = photo(taken=f"{year}:03:01 12:00:00", color=color)
        r = c.post("/api/images", files={"file": (f"{year}.jpg", data, "image/jpeg")})
        assert r.status_code == 201, r.text
        dated[r.json()["sha256"]] = year
    r = c.post("/api/images", files={"file": ("x.jpg", photo(color=(205, 35, 35)), "image/jpeg")})
    undated = r.json()["sha256"]
    assert c.get(f"/api/images/{undated}").json()["taken_at"] is None
    body = {"query": "red", "top_k": 10, "sort": "taken_at"}
    r = c.post("/api/search/text", json=body)
    assert r.status_code == 200, r.text
    ids = [x["sha256"] for x in r.json()["results"]]
    assert ids == [*sorted(dated, key=dated.__getitem__, reverse=True), undated]
    # Relevance stays the default, over the same results.
    plain = c.post("/api/search/text", json={"query": "red", "top_k": 10}).json()["results"]
    assert {x["sha256"] for x in plain} == set(ids)
