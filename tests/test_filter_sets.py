"""What a filter allows, kept between searches (`imgdex.filter_sets`): the catalog's facts
revision moves with every write a filter depends on (in any connection), a kept set is
used only at its revision and label-map version, and searches through kept sets match
exact filtered search at every selectivity."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from litestar.testing import TestClient

from imgdex.catalog import Catalog
from imgdex.filter_sets import FilterSets
from imgdex.filters import ImageFilters
from imgdex.index import IndexInfo, ManagedIndex
from imgdex.index.flat import FlatBackend
from imgdex.index.hnsw import HnswBackend
from imgdex.providers import IndexLocation
from imgdex.search_filters import CatalogAllowed, Scope
from imgdex.testing import image_bytes

Client = TestClient[Any]

N, DIM = 20_000, 64
IN = ImageFilters(source="in")


def clustered(rng: np.random.Generator, n: int) -> npt.NDArray[np.float32]:
    centres = rng.standard_normal((200, DIM)).astype(np.float32)
    x = centres[rng.integers(0, 200, n)] + 0.35 * rng.standard_normal((n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def managed(path: Path, backend: str = "hnswlib") -> ManagedIndex:
    info = IndexInfo("big_v1", "m", "1", DIM, "cosine", "image", backend, "now")
    opener = HnswBackend() if backend == "hnswlib" else FlatBackend()
    return ManagedIndex(
        info, path, opener.open(IndexLocation.at(path), dimension=DIM, metric="cosine")
    )


@pytest.fixture(scope="module")
def big() -> tuple[npt.NDArray[np.float32], list[str]]:
    rng = np.random.default_rng(5)
    return clustered(rng, N), [f"{i:032x}" for i in range(N)]


@pytest.fixture(scope="module")
def big_index(
    tmp_path_factory: pytest.TempPathFactory, big: tuple[npt.NDArray[np.float32], list[str]]
) -> ManagedIndex:
    vectors, images = big
    index = managed(tmp_path_factory.mktemp("big"))
    index.add(list(range(1, N + 1)), vectors, [(image, "image", 1, 1) for image in images])
    return index


def small_index(
    path: Path, big: tuple[npt.NDArray[np.float32], list[str]], n: int, backend: str = "hnswlib"
) -> ManagedIndex:
    """An index of the first `n` of the big corpus."""
    vectors, images = big
    index = managed(path / "index", backend)
    index.add(list(range(1, n + 1)), vectors[:n], [(i, "image", 1, 1) for i in images[:n]])
    return index


def catalog_of(path: Path, images: list[str], chosen: set[int]) -> Catalog:
    """A real catalog of `images`, those at rows `chosen` with source ``in``."""
    catalog = Catalog(path / "catalog.db")
    with catalog.transaction() as db:
        for row, image in enumerate(images):
            catalog.insert_image(
                db, id_=image, full=image * 2, width=1, height=1, file_size=1, fmt="PNG",
                filename="a.png", source="in" if row in chosen else "out", status="ready",
            )  # fmt: skip
    return catalog


def exact(
    vectors: npt.NDArray[np.float32], query: npt.NDArray[np.float32], rows: list[int], k: int
) -> list[int]:
    scores = vectors[np.asarray(rows)] @ (query / np.linalg.norm(query))
    return [rows[i] + 1 for i in np.argsort(-scores)[:k]]


# --- the facts revision ----------------------------------------------------------


def test_the_revision_moves_with_every_write_a_filter_depends_on(tmp_path: Path) -> None:
    images = [f"{i:032x}" for i in range(3)]
    catalog = catalog_of(tmp_path, images, {0})
    other = Catalog(tmp_path / "catalog.db")  # another connection, as another process has
    rev = catalog.images.facts_revision()

    def moved(what: str) -> None:
        nonlocal rev
        now = other.images.facts_revision()
        assert now > rev, what
        rev = now

    with catalog.transaction() as db:
        catalog.images.update_image(db, images[1], rating=3)
    moved("rating")
    with catalog.transaction() as db:
        catalog.images.update_image(db, images[1], favorite=True)
    moved("favourite")
    with catalog.transaction() as db:
        catalog.tags.add_tags(db, images[1], ["beach"], "user")
    moved("tag added")
    with catalog.transaction() as db:
        catalog.tags.remove_tags(db, images[1], ["beach"])
    moved("tag removed")
    with catalog.transaction() as db:
        album = catalog.albums.create_album(
            db, name="trip", description=None, smart=None, cover=None
        )
    moved("album made (a filter may name it before)")
    with catalog.transaction() as db:
        catalog.albums.add_to_album(db, album, [images[2]])
    moved("image added to an album")
    with catalog.transaction() as db:
        catalog.albums.update_album(db, album, {"smart": '{"filters": {"favorite": true}}'})
    moved("a smart album's rule")
    with catalog.transaction() as db:
        catalog.images.set_deleted(db, images[2], True)
    moved("trashed")
    with catalog.transaction() as db:
        catalog.insert_image(
            db, id_="f" * 32, full="f" * 64, width=1, height=1, file_size=1, fmt="PNG",
            filename="n.png", source="in", status="ready",
        )  # fmt: skip
    moved("new image")
    # Writes no filter reads leave it: a description, an image's status.
    with catalog.transaction() as db:
        catalog.descriptions.upsert_description(db, images[0], "human", "a red kite")
    catalog.images.set_status(images[0], "failed")
    assert other.images.facts_revision() == rev
    other.close()
    catalog.close()


def test_the_log_names_the_images_changed_since_a_revision(tmp_path: Path) -> None:
    images = [f"{i:032x}" for i in range(5000)]
    catalog = catalog_of(tmp_path, images[:3], {0})
    start = catalog.images.facts_revision()
    assert catalog.images.facts_changed(start, 10) == set()
    with catalog.transaction() as db:
        catalog.images.update_image(db, images[1], rating=2)
        catalog.tags.add_tags(db, images[2], ["kite"], "user")
        catalog.images.update_image(db, images[1], favorite=True)
    assert catalog.images.facts_changed(start, 10) == {images[1], images[2]}
    assert catalog.images.facts_changed(start, 2) is None, "more entries than asked for"
    middle = catalog.images.facts_revision()
    with catalog.transaction() as db:
        catalog.albums.create_album(db, name="a", description=None, smart=None, cover=None)
    assert catalog.images.facts_changed(middle, 10) is None, "any image's matches may change"
    later = catalog.images.facts_revision()
    with catalog.transaction() as db:  # more than the log keeps
        for image in images[3:]:
            catalog.insert_image(
                db, id_=image, full=image * 2, width=1, height=1, file_size=1, fmt="PNG",
                filename="a.png", source="out", status="ready",
            )  # fmt: skip
    assert catalog.images.facts_revision() == later + 4997
    assert catalog.images.facts_changed(later, 10_000) is None, "trimmed from the log"
    catalog.close()


# --- searches through kept sets --------------------------------------------------


def warmed(
    index: ManagedIndex, catalog: Catalog, filters: ImageFilters, budget: int = 256 << 20
) -> tuple[FilterSets, CatalogAllowed]:
    """Kept sets built in the calling thread, and a filter's set built (second search)."""
    sets = FilterSets(catalog, budget)
    source = CatalogAllowed(catalog, sets)
    for _ in range(2):
        Scope(filters, source).search(index, None)
    return sets, source


@pytest.mark.parametrize("share", [0.9, 0.5, 0.2, 0.05, 0.001])
def test_kept_sets_fill_the_page_and_match_exact(
    big_index: ManagedIndex,
    big: tuple[npt.NDArray[np.float32], list[str]],
    tmp_path: Path,
    share: float,
) -> None:
    vectors, images = big
    rng = np.random.default_rng(int(share * 1000))
    rows = sorted(rng.choice(N, int(N * share), replace=False).tolist())
    catalog = catalog_of(tmp_path, images, set(rows))
    sets, source = warmed(big_index, catalog, IN)
    assert len(sets) == 1
    recalls = []
    for q in range(20):
        query = vectors[rng.integers(0, N)] + 0.1 * rng.standard_normal(DIM).astype(np.float32)
        search = Scope(IN, source).search(big_index, None)
        assert search.total == len(rows), "the kept set says how many match"
        labels, scores = search(query, 50)
        assert len(labels) == min(50, len(rows))
        assert {int(x) - 1 for x in labels} <= set(rows), "every result matches"
        assert np.all(np.diff(scores) <= 1e-6)
        truth = exact(vectors, query, rows, 50)
        recalls.append(len(set(labels.tolist()) & set(truth)) / len(truth))
        if share < 0.3:  # exactly, over the set's gathered vectors
            assert search.enumerated and search.rounds == 0
            assert labels.tolist() == truth, q
        else:  # the graph's candidates through the set's mask: no catalog query
            assert search.rounds >= 1 and not search.enumerated
    assert np.mean(recalls) >= 0.95
    catalog.close()


def test_a_write_in_another_connection_retires_a_kept_set(
    big_index: ManagedIndex, big: tuple[npt.NDArray[np.float32], list[str]], tmp_path: Path
) -> None:
    vectors, images = big
    rows = list(range(0, N, 10))
    catalog = catalog_of(tmp_path, images, set(rows))
    _, source = warmed(big_index, catalog, IN)

    def top() -> list[int]:
        return Scope(IN, source).search(big_index, None)(vectors[0], 10)[0].tolist()

    first = top()
    assert first == exact(vectors, vectors[0], rows, 10)
    other = Catalog(tmp_path / "catalog.db")
    outside = [r for r in range(N) if r % 10]
    nearest_out = exact(vectors, vectors[0], outside, 1)[0]
    with other.transaction() as db:
        other.images.update_image(db, images[first[0] - 1], source="out")
        other.images.update_image(db, images[nearest_out - 1], source="in")
    other.close()
    again = top()
    assert first[0] not in again and nearest_out in again, "the old set is not used"
    rows = sorted({*rows, nearest_out - 1} - {first[0] - 1})
    assert again == exact(vectors, vectors[0], rows, 10)
    catalog.close()


@pytest.mark.parametrize("share", [0.5, 0.15])
def test_a_kept_set_follows_a_few_edits(
    big_index: ManagedIndex,
    big: tuple[npt.NDArray[np.float32], list[str]],
    tmp_path: Path,
    share: float,
) -> None:
    # A person rating or tagging between searches: the set is brought forward through
    # the images they changed, in whichever connection, and used at once.
    vectors, images = big
    rows = list(range(0, N, round(1 / share)))
    catalog = catalog_of(tmp_path, images, set(rows))
    sets, source = warmed(big_index, catalog, IN)
    query = vectors[3]
    first = Scope(IN, source).search(big_index, None)(query, 10)[0].tolist()
    outside = sorted(set(range(N)) - set(rows))
    coming = exact(vectors, query, outside, 2)
    other = Catalog(tmp_path / "catalog.db")
    with other.transaction() as db:
        for label in first[:3]:
            other.images.update_image(db, images[label - 1], source="out")
        for label in coming:
            other.images.update_image(db, images[label - 1], source="in")
        other.images.update_image(db, images[outside[-1]], rating=4)  # no match either way
    other.close()
    rows = sorted({*rows, *(c - 1 for c in coming)} - {f - 1 for f in first[:3]})
    search = Scope(IN, source).search(big_index, None)
    assert search.total == len(rows), "the kept set, brought forward, not a first search"
    labels = search(query, 10)[0].tolist()
    assert labels == exact(vectors, query, rows, 10)
    assert set(coming) <= set(labels) and not set(first[:3]) & set(labels)
    # An album's rule may change any image's matches: no bringing forward then.
    with catalog.transaction() as db:
        catalog.albums.create_album(db, name="a", description=None, smart=None, cover=None)
    search = Scope(IN, source).search(big_index, None)
    assert len(sets) == 0, "dropped, to be built again"
    assert search(query, 10)[0].tolist() == exact(vectors, query, rows, 10)
    catalog.close()


@pytest.mark.parametrize("step", [2, 50])  # broad (post-filtered), narrow (its matrix)
def test_a_kept_set_follows_new_and_hidden_vectors(
    big: tuple[npt.NDArray[np.float32], list[str]], tmp_path: Path, step: int
) -> None:
    # Vectors added to an index (a new description of an image, say) or hidden (one
    # deleted) change no filtered fact, only the label map: the set is brought forward
    # through those labels and used at once, for the methods it was kept for.
    vectors, images = big
    n = 5000
    index = small_index(tmp_path, big, n)
    rows = list(range(0, n, step))
    catalog = catalog_of(tmp_path, images[:n], set(rows))
    sets, source = warmed(index, catalog, IN)
    warmed_images = Scope(IN, source)
    for _ in range(2):
        warmed_images.search(index, {"image"})
    assert len(sets) == 2
    query = vectors[n]  # not in the index
    index.add([n + 1], query[None, :], [(images[0], "caption", 1, 1)])  # row 0 matches
    index.add([n + 2], vectors[n + 1][None, :], [(images[1], "caption", 1, 1)])  # 1 does not
    search = Scope(IN, source).search(index, None)
    assert search.total == len(rows) + 1, "brought forward, not a first search"
    labels = search(query, 5)[0].tolist()
    assert labels[0] == n + 1 and n + 2 not in labels
    assert len(sets) == 2
    only_images = Scope(IN, source).search(index, {"image"})
    assert only_images.total == len(rows), "a caption's label is not an image's"
    assert n + 1 not in only_images(query, 5)[0].tolist()
    # Hidden (its image deleted): out of the set; shown again: back in.
    index.hide([n + 1, rows[-1] + 1])
    search = Scope(IN, source).search(index, None)
    assert search.total == len(rows) - 1
    labels = search(query, 10)[0].tolist()
    assert n + 1 not in labels and rows[-1] + 1 not in labels
    assert labels == exact(vectors, query, rows[:-1], 10)
    index.unhide([n + 1])
    search = Scope(IN, source).search(index, None)
    assert search.total == len(rows) and search(query, 5)[0].tolist()[0] == n + 1
    assert len(sets) == 2


def test_many_new_vectors_or_a_reload_retire_a_kept_set(
    big: tuple[npt.NDArray[np.float32], list[str]], tmp_path: Path
) -> None:
    vectors, images = big
    n = 5000
    index = small_index(tmp_path, big, n)
    rows = list(range(0, n, 2))
    catalog = catalog_of(tmp_path, images[:n], set(rows))
    sets, source = warmed(index, catalog, IN)
    more = 1100  # more labels than a set is brought forward through
    index.add(
        list(range(n + 1, n + more + 1)),
        vectors[n : n + more],
        [(images[i % n], "caption", 1, 1) for i in range(more)],
    )
    search = Scope(IN, source).search(index, None)
    assert search.total == len(index), "a first search: the set was dropped"
    assert len(sets) == 0, "and not rebuilt at once: more vectors may be coming"
    Scope(IN, source).search(index, None)
    assert len(sets) == 1, "the second search at the new version builds it again"
    assert Scope(IN, source).search(index, None).total == len(rows) + more // 2
    index.labels.load(
        ((label, (images[label - 1], "image", 1, 1), True) for label in range(1, n + 1)), n
    )
    assert Scope(IN, source).search(index, None).total == len(index), "reloaded: not known"
    catalog.close()


def test_a_kept_set_does_not_outlive_its_index(
    big: tuple[npt.NDArray[np.float32], list[str]], tmp_path: Path
) -> None:
    n = 3000
    index = small_index(tmp_path, big, n)
    catalog = catalog_of(tmp_path, big[1][:n], set(range(0, n, 2)))
    sets, source = warmed(index, catalog, IN)
    assert len(sets) == 1
    old = weakref.ref(index.index)
    index.index = managed(tmp_path / "rebuilt").index  # as a rebuild swaps it
    gc.collect()
    assert old() is None, "the kept set did not keep the old graph in memory"
    assert Scope(IN, source).search(index, None).total == 0, "nor is it used on the new one"
    catalog.close()


def test_the_budget_bounds_kept_sets(
    big_index: ManagedIndex, big: tuple[npt.NDArray[np.float32], list[str]], tmp_path: Path
) -> None:
    _, images = big
    catalog = catalog_of(tmp_path, images, set(range(0, N, 20)))  # 1,000: 256 KB of vectors
    budget = 600_000
    sets = FilterSets(catalog, budget)
    source = CatalogAllowed(catalog, sets)
    same = [  # four filters matching the same 1,000 images: each set about 290 KB
        IN,
        ImageFilters(source="in", has_gps=False),
        ImageFilters(source="in", min_rating=0),
        ImageFilters(source="in", format="png"),
    ]
    for filters in same:
        for _ in range(2):
            Scope(filters, source).search(big_index, None)
        assert 0 < sets.nbytes <= budget
    assert len(sets) == 2, "the least recently used went"
    none_kept = FilterSets(catalog, 0)
    for _ in range(3):
        Scope(IN, CatalogAllowed(catalog, none_kept)).search(big_index, None)
    assert len(none_kept) == 0
    catalog.close()


def test_backends_without_gathered_vectors_search_kept_sets(
    big: tuple[npt.NDArray[np.float32], list[str]], tmp_path: Path
) -> None:
    vectors, images = big
    n = 2000
    index = small_index(tmp_path, big, n, backend="flat")
    rows = list(range(0, n, 5))
    catalog = catalog_of(tmp_path, images[:n], set(rows))
    sets, source = warmed(index, catalog, IN)
    assert len(sets) == 1
    labels = Scope(IN, source).search(index, None)(vectors[7], 10)[0].tolist()
    assert labels == exact(vectors, vectors[7], rows, 10)
    catalog.close()


# --- through the app --------------------------------------------------------------


def test_repeated_filtered_searches_see_each_change(imgdex_client: Client) -> None:
    c = imgdex_client
    shas = []
    for i in range(8):
        files = {"file": ("a.png", image_bytes("red", pattern=i + 1), "image/png")}
        r = c.post("/api/images", files=files)
        assert r.status_code == 201, r.text
        shas.append(r.json()["sha256"])
    for sha in shas[:4]:
        assert c.patch(f"/api/images/{sha}", json={"rating": 4}).status_code == 200

    def found() -> set[str]:
        body = {"query": "red", "top_k": 10, "filters": {"min_rating": 3}}
        r = c.post("/api/search/text", json=body)
        assert r.status_code == 200, r.text
        return {x["sha256"] for x in r.json()["results"]}

    for _ in range(3):  # the second builds the kept sets, the third uses them
        assert found() == set(shas[:4])
    assert c.patch(f"/api/images/{shas[0]}", json={"rating": 1}).status_code == 200
    assert c.patch(f"/api/images/{shas[5]}", json={"rating": 5}).status_code == 200
    assert found() == {*shas[1:4], shas[5]}
    assert c.delete(f"/api/images/{shas[1]}").status_code in (200, 204)
    assert found() == {*shas[2:4], shas[5]}
