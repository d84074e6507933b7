"""Unit tests for imgdex.index: the hnswlib and flat backends, RWLock, IndexManager."""

from __future__ import annotations

import functools
import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from imgdex.blobs import LocalBlobStore
from imgdex.catalog import Catalog, IndexEntry
from imgdex.config import IndexConfig
from imgdex.errors import Conflict, NotFound
from imgdex.index import IndexManager, ManagedIndex
from imgdex.index.flat import FlatBackend
from imgdex.index.hnsw import HnswBackend, HnswIndex
from imgdex.index.rwlock import RWLock
from imgdex.providers import IndexBackend, IndexLocation, VectorIndex
from imgdex.testing import ColorEmbedder, WordEmbedder

Vectors = npt.NDArray[np.float32]

BACKENDS: dict[str, Callable[[], IndexBackend]] = {"hnswlib": HnswBackend, "flat": FlatBackend}


def index_entries(catalog: Catalog, index: str) -> list[IndexEntry]:
    return [entry for batch in catalog.index_entry_batches(index) for entry in batch]


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> IndexBackend:
    return BACKENDS[request.param]()


def unit(x: npt.ArrayLike) -> Vectors:
    x = np.asarray(x, dtype=np.float32)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def random_vectors(n: int, dim: int, seed: int = 0) -> Vectors:
    return unit(np.random.default_rng(seed).normal(size=(n, dim)))


def clustered(n: int, dim: int, clusters: int, seed: int) -> Vectors:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim))
    return unit(centers[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, dim)))


def labels_of(index: VectorIndex, query: Vectors, k: int) -> list[int]:
    return index.search(query, k)[0].tolist()


def open_index(backend: IndexBackend, path: Path, dimension: int = 32) -> VectorIndex:
    return backend.open(IndexLocation.at(path), dimension=dimension, metric="cosine")


# --- both backends -----------------------------------------------------------------


def test_add_and_search_self_first(backend: IndexBackend, tmp_path: Path) -> None:
    index = open_index(backend, tmp_path / "ix")
    vectors = random_vectors(200, 32)
    index.add(np.arange(100, 300), vectors)
    assert len(index) == 200
    for row in (0, 57, 199):
        labels, scores = index.search(vectors[row], 5)
        assert labels.dtype == np.int64 and scores.dtype == np.float32
        assert labels[0] == 100 + row
        assert scores[0] == pytest.approx(1.0, abs=1e-4)
        assert list(scores) == sorted(scores, reverse=True)
        assert len(set(labels.tolist())) == 5


def test_cosine_ignores_vector_length(backend: IndexBackend, tmp_path: Path) -> None:
    index = open_index(backend, tmp_path / "ix", dimension=3)
    index.add(np.array([1, 2]), np.array([[3.0, 0, 0], [0, 0.5, 0]], np.float32))
    labels, scores = index.search(np.array([10.0, 1.0, 0], np.float32), 2)
    assert labels.tolist() == [1, 2]
    assert scores[0] == pytest.approx(10 / np.sqrt(101), abs=1e-5)
    assert scores[1] == pytest.approx(1 / np.sqrt(101), abs=1e-5)


def test_l2_scores_are_negative_squared_distance(backend: IndexBackend, tmp_path: Path) -> None:
    index = backend.open(IndexLocation.at(tmp_path / "ix"), dimension=2, metric="l2")
    index.add(np.array([1, 2]), np.array([[0.0, 0.0], [3.0, 4.0]], np.float32))
    labels, scores = index.search(np.array([3.0, 0.0], np.float32), 2)
    assert labels.tolist() == [1, 2]
    np.testing.assert_allclose(scores, [-9.0, -16.0], atol=1e-4)


def test_empty_index(backend: IndexBackend, tmp_path: Path) -> None:
    index = open_index(backend, tmp_path / "ix")
    labels, scores = index.search(random_vectors(1, 32)[0], 10)
    assert len(labels) == 0 and len(scores) == 0
    assert index.labels() == set() and index.hidden() == set() and len(index) == 0
    index.add(np.empty(0, np.int64), np.empty((0, 32), np.float32))
    assert len(index) == 0


def test_hide_and_unhide(backend: IndexBackend, tmp_path: Path) -> None:
    index = open_index(backend, tmp_path / "ix")
    vectors = random_vectors(50, 32)
    index.add(np.arange(50), vectors)
    index.hide([7, 8, 12345])  # an unknown label is ignored
    assert index.hidden() == {7, 8}
    assert index.labels() == set(range(50))  # hidden labels are still stored
    assert len(index) == 48
    assert 7 not in labels_of(index, vectors[7], 50)
    assert 8 not in labels_of(index, vectors[8], 50)
    assert len(labels_of(index, vectors[0], 50)) == 48
    index.hide([7])  # twice is fine
    index.unhide([7, 999])
    assert index.hidden() == {8}
    assert labels_of(index, vectors[7], 1) == [7]
    index.unhide([8])
    assert index.hidden() == set()
    assert len(index) == 50


def test_add_replaces_vector_under_same_label(backend: IndexBackend, tmp_path: Path) -> None:
    index = open_index(backend, tmp_path / "ix")
    vectors = random_vectors(21, 32)
    index.add(np.arange(20), vectors[:20])
    index.add(np.array([5]), vectors[20:])
    assert len(index) == 20
    labels, scores = index.search(vectors[20], 1)
    assert labels.tolist() == [5] and scores[0] == pytest.approx(1.0, abs=1e-4)
    labels, scores = index.search(vectors[5], 1)  # the old vector is gone
    assert not (labels[0] == 5 and scores[0] > 0.99)


def test_add_of_hidden_label_makes_it_visible(backend: IndexBackend, tmp_path: Path) -> None:
    # "Insert (or replace)": re-adding a hidden label (re-embedding an entry that was
    # hidden) stores the new vector and shows it, on every backend.
    index = open_index(backend, tmp_path / "ix")
    vectors = random_vectors(11, 32)
    index.add(np.arange(10), vectors[:10])
    index.hide([3])
    index.add(np.array([3]), vectors[10:])
    assert index.hidden() == set()
    assert len(index) == 10
    assert labels_of(index, vectors[10], 1) == [3]


def test_save_and_reopen(backend: IndexBackend, tmp_path: Path) -> None:
    path = tmp_path / "ix"
    index = open_index(backend, path)
    vectors = random_vectors(300, 32, seed=3)
    index.add(np.arange(300), vectors)
    index.hide([1, 2, 3, 250])
    queries = random_vectors(20, 32, seed=4)
    before = [index.search(q, 10) for q in queries]
    index.save()
    index.save()  # a second generation replaces the first
    reopened = open_index(type(backend)(), path)
    assert reopened.hidden() == {1, 2, 3, 250}
    assert reopened.labels() == set(range(300))
    assert len(reopened) == 296
    for q, (labels, scores) in zip(queries, before, strict=True):
        again = reopened.search(q, 10)
        assert again[0].tolist() == labels.tolist()
        np.testing.assert_allclose(again[1], scores, atol=1e-5)
    # Only the current generation's files stay on disk.
    state = json.loads((path / "state.json").read_text())
    assert state["gen"] == 2
    assert not any(".1." in p.name for p in path.iterdir())


def test_reopen_without_save_is_empty(backend: IndexBackend, tmp_path: Path) -> None:
    index = open_index(backend, tmp_path / "ix")
    index.add(np.arange(10), random_vectors(10, 32))
    assert len(open_index(type(backend)(), tmp_path / "ix")) == 0


def test_growth_beyond_initial_capacity(backend: IndexBackend, tmp_path: Path) -> None:
    index = open_index(backend, tmp_path / "ix", dimension=16)
    vectors = random_vectors(3000, 16, seed=5)
    for start in range(0, 3000, 500):
        index.add(np.arange(start, start + 500), vectors[start : start + 500])
    assert len(index) == 3000
    assert index.labels() == set(range(3000))
    hits = sum(labels_of(index, vectors[i], 1) == [i] for i in range(0, 3000, 10))
    assert hits >= 295
    index.save()
    reopened = open_index(type(backend)(), tmp_path / "ix", dimension=16)
    assert len(reopened) == 3000
    reopened.add(np.array([5000]), random_vectors(1, 16, seed=6))  # still grows after load
    assert len(reopened) == 3001


def test_k_larger_than_live_count(backend: IndexBackend, tmp_path: Path) -> None:
    index = open_index(backend, tmp_path / "ix")
    vectors = random_vectors(8, 32)
    index.add(np.arange(8), vectors)
    index.hide([0, 1])
    labels, scores = index.search(vectors[2], 100)
    assert sorted(labels.tolist()) == [2, 3, 4, 5, 6, 7]
    assert len(scores) == 6


def test_most_items_hidden_still_returns_live(backend: IndexBackend, tmp_path: Path) -> None:
    index = open_index(backend, tmp_path / "ix", dimension=16)
    vectors = random_vectors(2000, 16, seed=8)
    index.add(np.arange(2000), vectors)
    live = [3, 400, 777, 1200, 1999]
    index.hide([i for i in range(2000) if i not in live])
    for query in (vectors[3], vectors[1000], random_vectors(1, 16, seed=9)[0]):
        assert sorted(labels_of(index, query, 10)) == live
        assert sorted(labels_of(index, query, 5)) == live
    assert labels_of(index, vectors[777], 1) == [777]


def test_stray_next_generation_is_ignored(backend: IndexBackend, tmp_path: Path) -> None:
    # A kill during save leaves the next generation's file half written.
    path = tmp_path / "ix"
    index = open_index(backend, path)
    vectors = random_vectors(100, 32)
    index.add(np.arange(100), vectors)
    index.hide([9])
    index.save()
    gen = json.loads((path / "state.json").read_text())["gen"]
    for name in (f"hnsw.{gen + 1}.bin", f"hidden.{gen + 1}.npy", f"flat.{gen + 1}.npz"):
        (path / name).write_bytes(b"\x00garbage from an interrupted save")
    reopened = open_index(type(backend)(), path)
    assert reopened.labels() == set(range(100))
    assert reopened.hidden() == {9}
    assert labels_of(reopened, vectors[42], 1) == [42]
    reopened.add(np.array([100]), random_vectors(1, 32, seed=1))
    reopened.save()  # the stray generation is overwritten by a whole one
    again = open_index(type(backend)(), path)
    assert len(again) == 100 and 100 in again.labels()


def save_after(index: VectorIndex, start: threading.Barrier) -> None:
    start.wait()
    index.save()  # an exception fails the test through pytest's thread-exception warning


def test_concurrent_saves_keep_a_loadable_generation(backend: IndexBackend, tmp_path: Path) -> None:
    # VectorIndex promises safety under concurrent calls: two saves racing each other
    # must still leave state.json naming files that exist. Several rounds: races are racy.
    for round_ in range(10):
        path = tmp_path / f"ix{round_}"
        index = open_index(backend, path, dimension=16)
        index.add(np.arange(200), random_vectors(200, 16))
        index.hide([5])
        start = threading.Barrier(2, timeout=10)
        threads = [threading.Thread(target=save_after, args=(index, start)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not start.broken
        state = json.loads((path / "state.json").read_text())
        reopened = open_index(type(backend)(), path, dimension=16)
        assert reopened.labels() == set(range(200)), f"round {round_}: {state}"
        assert reopened.hidden() == {5}


def test_concurrent_adds_and_queries(backend: IndexBackend, tmp_path: Path) -> None:
    index = open_index(backend, tmp_path / "ix", dimension=16)
    index.add(np.arange(200), random_vectors(200, 16, seed=10))
    per_writer, batch = 1000, 25
    data = {w: random_vectors(per_writer, 16, seed=100 + w) for w in range(4)}
    errors: list[BaseException] = []
    writers_done = threading.Event()
    queries = [0] * 4

    def writer(w: int) -> None:
        try:
            base = 1000 + w * per_writer
            for start in range(0, per_writer, batch):
                ids = np.arange(base + start, base + start + batch)
                index.add(ids, data[w][start : start + batch])
        except BaseException as exc:  # reported below
            errors.append(exc)

    def reader(r: int) -> None:
        rng = np.random.default_rng(r)
        deadline = time.monotonic() + 2.0
        try:
            # Query for ~2 s, and at least as long as the writers write.
            while time.monotonic() < deadline or not writers_done.is_set():
                labels, scores = index.search(unit(rng.normal(size=16)), 20)
                assert len(labels) == len(scores) == 20
                assert list(scores) == sorted(scores, reverse=True)
                queries[r] += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    readers = [threading.Thread(target=reader, args=(r,)) for r in range(4)]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join(60)
    writers_done.set()
    for thread in readers:
        thread.join(60)
    assert errors == []
    assert all(n > 0 for n in queries)
    expected = set(range(200)) | {
        1000 + w * per_writer + i for w in range(4) for i in range(per_writer)
    }
    assert index.labels() == expected
    assert len(index) == len(expected)
    for w in range(4):
        for i in range(0, per_writer, 7):
            assert 1000 + w * per_writer + i in labels_of(index, data[w][i], 10)


@pytest.fixture(scope="module")
def clustered_data() -> tuple[Vectors, Vectors]:
    """5000 vectors in 50 Gaussian clusters, and 200 queries from the same clusters."""
    both = clustered(5200, 64, 50, seed=11)
    return both[:5000], both[5000:]


def test_hnsw_recall_against_flat(tmp_path: Path, clustered_data: tuple[Vectors, Vectors]) -> None:
    data, queries = clustered_data
    assert len(queries) == 200
    ids = np.arange(len(data))
    hnsw = HnswBackend(ef=64).open(IndexLocation.at(tmp_path / "h"), dimension=64, metric="cosine")
    flat = FlatBackend().open(IndexLocation.at(tmp_path / "f"), dimension=64, metric="cosine")
    for start in range(0, len(data), 1000):
        hnsw.add(ids[start : start + 1000], data[start : start + 1000])
    flat.add(ids, data)

    def recall(index: VectorIndex) -> float:
        found = 0
        for q in queries:
            exact = set(labels_of(flat, q, 10))
            found += len(exact & set(labels_of(index, q, 10)))
        return found / (10 * len(queries))

    assert recall(hnsw) >= 0.95
    # After a save and reload hnswlib's ef would be 10 unless it is set again.
    hnsw.save()
    reloaded = HnswBackend(ef=64).open(
        IndexLocation.at(tmp_path / "h"), dimension=64, metric="cosine"
    )
    assert isinstance(reloaded, HnswIndex)
    assert reloaded._index.ef == 64
    assert recall(reloaded) >= 0.95


def test_hnsw_configure_sets_parameters(tmp_path: Path) -> None:
    backend = HnswBackend()
    backend.configure(IndexConfig(m=8, ef_construction=50, ef_search=123))
    index = backend.open(IndexLocation.at(tmp_path / "ix"), dimension=8, metric="cosine")
    assert isinstance(index, HnswIndex)
    assert index._index.ef == 123
    assert index._index.M == 8
    assert index._index.ef_construction == 50
    index.add(np.arange(5), random_vectors(5, 8))
    index.save()
    again = backend.open(IndexLocation.at(tmp_path / "ix"), dimension=8, metric="cosine")
    assert isinstance(again, HnswIndex)
    assert again._index.ef == 123


def test_hnsw_damaged_cache_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "ix"
    index = HnswBackend().open(IndexLocation.at(path), dimension=8, metric="cosine")
    index.add(np.arange(5), random_vectors(5, 8))
    index.save()
    state = json.loads((path / "state.json").read_text())
    (path / f"hnsw.{state['gen']}.bin").write_bytes(b"not a graph")
    reopened = HnswBackend().open(IndexLocation.at(path), dimension=8, metric="cosine")
    assert len(reopened) == 0  # the core re-adds from the .npy vectors (reconcile)
    reopened.add(np.arange(3), random_vectors(3, 8))
    assert len(reopened) == 3


# --- RWLock ------------------------------------------------------------------------


def test_rwlock_readers_share() -> None:
    lock = RWLock()
    both_inside = threading.Barrier(3, timeout=5)

    def reader() -> None:
        with lock.read():
            both_inside.wait()  # only passes if both readers hold the lock at once

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    both_inside.wait()
    for thread in threads:
        thread.join(5)
    assert not both_inside.broken


def test_rwlock_writer_excludes_readers_and_writers() -> None:
    lock = RWLock()
    entered: list[str] = []

    def reader() -> None:
        with lock.read():
            entered.append("reader")

    def writer() -> None:
        with lock.write():
            entered.append("writer")

    with lock.write():
        threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
        for thread in threads:
            thread.start()
        time.sleep(0.2)
        assert entered == []
    for thread in threads:
        thread.join(5)
    assert sorted(entered) == ["reader", "writer"]


def test_rwlock_writer_waits_for_readers() -> None:
    lock = RWLock()
    inside = threading.Event()
    release = threading.Event()
    wrote = threading.Event()

    def reader() -> None:
        with lock.read():
            inside.set()
            release.wait(5)

    def writer() -> None:
        with lock.write():
            wrote.set()

    threads = [threading.Thread(target=reader)]
    threads[0].start()
    assert inside.wait(5)
    threads.append(threading.Thread(target=writer))
    threads[1].start()
    assert not wrote.wait(0.2)
    release.set()
    assert wrote.wait(5)
    for thread in threads:
        thread.join(5)


def test_rwlock_prefers_waiting_writer() -> None:
    # A stream of readers must not starve a writer: once it waits, new readers queue.
    lock = RWLock()
    order: list[str] = []
    first_in = threading.Event()
    release = threading.Event()

    def first_reader() -> None:
        with lock.read():
            first_in.set()
            release.wait(5)

    def writer() -> None:
        with lock.write():
            order.append("writer")

    def late_reader() -> None:
        with lock.read():
            order.append("late reader")

    threads = [threading.Thread(target=first_reader)]
    threads[0].start()
    assert first_in.wait(5)
    threads.append(threading.Thread(target=writer))
    threads[1].start()
    time.sleep(0.1)  # the writer is waiting now
    threads.append(threading.Thread(target=late_reader))
    threads[2].start()
    time.sleep(0.1)
    assert order == []  # the late reader does not overtake the waiting writer
    release.set()
    for thread in threads:
        thread.join(5)
    assert order == ["writer", "late reader"]


def test_rwlock_released_on_exception() -> None:
    lock = RWLock()
    with pytest.raises(ValueError), lock.write():
        raise ValueError
    with pytest.raises(ValueError), lock.read():
        raise ValueError
    done = threading.Event()

    def writer() -> None:
        with lock.write():
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    assert done.wait(5)
    thread.join(5)


# --- IndexManager ------------------------------------------------------------------


@dataclass
class Env:
    root: Path
    catalog: Catalog
    storage: LocalBlobStore
    backend_name: str

    def manager(self) -> IndexManager:
        backend = BACKENDS[self.backend_name]()
        return IndexManager(self.root / "vector_index", backend, self.catalog, self.storage)


@pytest.fixture(params=sorted(BACKENDS))
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    catalog = Catalog(tmp_path / "imgdex.db")
    yield Env(tmp_path, catalog, LocalBlobStore(tmp_path / "storage"), request.param)
    catalog.close()


WORDS = [f"w{i}" for i in range(300)]


@functools.cache
def text_for(n: int) -> str:
    rng = random.Random(n)
    return f"item{n} " + " ".join(rng.sample(WORDS, 6))


def store_texts(
    env: Env,
    managed: ManagedIndex,
    embedder: WordEmbedder,
    numbers: range | list[int],
    *,
    add_to_index: bool = True,
) -> dict[int, tuple[str, int, Vectors]]:
    """Write images, descriptions and vectors as the library does; ``n -> (id, label, vec)``."""
    numbers = list(numbers)
    vectors = embedder.embed_texts([text_for(n) for n in numbers], query=False)
    out: dict[int, tuple[str, int, Vectors]] = {}
    with env.catalog.transaction() as db:
        for n, vector in zip(numbers, vectors, strict=True):
            id_ = hashlib.sha256(str(n).encode()).hexdigest()[:32]
            env.catalog.insert_image(
                db, id_=id_, full=id_ * 2, width=1, height=1, file_size=1, fmt="PNG",
                filename="image.png", source=None, status="ready",
            )  # fmt: skip
            env.catalog.upsert_description(db, id_, "caption", text_for(n))
            env.storage.image_dir(id_).mkdir(parents=True, exist_ok=True)  # as put_image does
            env.storage.put_vector(id_, managed.name, "caption", vector)
            label = env.catalog.add_vector_entry(
                db, id_, "caption", embedder.model, embedder.version, managed.name, text_for(n)
            )
            assert label is not None
            out[n] = (id_, label, vector)
    if add_to_index:
        managed.add(
            [v[1] for v in out.values()],
            np.stack([v[2] for v in out.values()]),
            [(v[0], "caption", 1, 1) for v in out.values()],
        )
    return out


def clear_graph(managed_path: Path) -> None:
    for entry in managed_path.iterdir():
        if entry.name != "meta.json":
            entry.unlink()


def test_open_for_writes_meta(env: Env) -> None:
    embedder = WordEmbedder()
    manager = env.manager()
    managed = manager.open_for(embedder, embedder.dimension)
    assert managed.name == "toy_words_v1"
    assert managed.path == env.root / "vector_index" / "toy_words_v1"
    meta = json.loads((managed.path / "meta.json").read_text())
    assert meta["index"] == "toy_words_v1"
    assert meta["model"] == "imgdex-toy-words"
    assert meta["model_version"] == "1"
    assert meta["dimension"] == 256
    assert meta["metric"] == "cosine"
    assert meta["stores"] == "text"
    assert meta["backend"] == env.backend_name
    assert meta["count"] == 0
    assert manager.read_meta("toy_words_v1") == meta
    assert manager.on_disk() == {"toy_words_v1": meta}
    assert manager.open_for(embedder, 256) is managed  # opened once
    assert manager.get("toy_words_v1") is managed

    store_texts(env, managed, embedder, range(5))
    assert manager.save_dirty() == 1
    assert manager.save_dirty() == 0  # nothing changed since
    meta2 = json.loads((managed.path / "meta.json").read_text())
    assert meta2["count"] == 5
    assert meta2["created_at"] == meta["created_at"]


def test_meta_keeps_created_at_on_reopen(env: Env) -> None:
    embedder = ColorEmbedder()
    managed = env.manager().open_for(embedder, embedder.dimension)
    meta = json.loads((managed.path / "meta.json").read_text())
    meta["created_at"] = "2020-01-01 00:00:00"
    (managed.path / "meta.json").write_text(json.dumps(meta))
    again = env.manager().open_for(embedder, embedder.dimension)
    assert again.info.created_at == "2020-01-01 00:00:00"
    assert json.loads((again.path / "meta.json").read_text())["stores"] == "image"


@pytest.mark.parametrize(
    ("change", "dimension"),
    [("version", 256), ("model", 256), ("dimension", 128)],
)
def test_open_for_mismatch_is_conflict(env: Env, change: str, dimension: int) -> None:
    first = WordEmbedder()
    env.manager().open_for(first, 256)
    other = WordEmbedder(version="2" if change == "version" else "1")
    if change == "model":
        other.model = "another-model"
    with pytest.raises(Conflict) as info:
        env.manager().open_for(other, dimension)
    assert info.value.code == "index_mismatch"
    assert info.value.status == 409
    assert "toy_words_v1" in str(info.value)
    # The refused open changed nothing on disk.
    meta = json.loads((env.root / "vector_index" / "toy_words_v1" / "meta.json").read_text())
    assert (meta["model"], meta["model_version"], meta["dimension"]) == (
        "imgdex-toy-words",
        "1",
        256,
    )


def test_open_for_mismatch_on_an_open_index(env: Env) -> None:
    manager = env.manager()
    manager.open_for(WordEmbedder(), 256)
    with pytest.raises(Conflict):
        manager.open_for(WordEmbedder(version="9"), 256)


def test_reconcile_readds_missing_vectors(env: Env) -> None:
    embedder = WordEmbedder()
    manager = env.manager()
    managed = manager.open_for(embedder, 256)
    stored = store_texts(env, managed, embedder, range(40))
    manager.close()
    clear_graph(managed.path)  # the graph cache is gone; catalog and .npy remain

    manager = env.manager()
    reopened = manager.open_for(embedder, 256)
    assert len(reopened) == 40
    assert reopened.index.labels() == {label for _, label, _ in stored.values()}
    for _, label, vector in stored.values():
        assert reopened.search(vector, 1)[0].tolist() == [label]
    assert manager.reconcile(reopened) == {"readded": 0, "lost": 0, "removed": 0}
    # The label map is rebuilt from the catalog on open.
    labels = sorted(label for _, label, _ in stored.values())
    assert reopened.resolve(labels) == (
        {label: (id_, "caption") for id_, label, _ in stored.values()},
        {id_: (1, 1) for id_, _, _ in stored.values()},
        [],
    )


def test_meta_count_is_written_after_reconcile(env: Env) -> None:
    embedder = WordEmbedder()
    manager = env.manager()
    managed = manager.open_for(embedder, 256)
    store_texts(env, managed, embedder, range(25))
    manager.close()
    clear_graph(managed.path)
    reopened = env.manager().open_for(embedder, 256)
    assert len(reopened) == 25
    # meta.json describes the index as opened, not the empty graph found on disk.
    assert json.loads((reopened.path / "meta.json").read_text())["count"] == 25


def test_reconcile_readds_only_what_is_missing(env: Env) -> None:
    embedder = WordEmbedder()
    manager = env.manager()
    managed = manager.open_for(embedder, 256)
    store_texts(env, managed, embedder, range(10))
    # Recorded in the catalog and on disk, but the process died before the index add.
    later = store_texts(env, managed, embedder, range(10, 15), add_to_index=False)
    assert len(managed) == 10
    assert manager.reconcile(managed) == {"readded": 5, "lost": 0, "removed": 0}
    assert len(managed) == 15
    for _, label, vector in later.values():
        assert managed.search(vector, 1)[0].tolist() == [label]
    assert manager.reconcile(managed) == {"readded": 0, "lost": 0, "removed": 0}


def test_reconcile_hides_labels_not_in_catalog(env: Env) -> None:
    embedder = WordEmbedder()
    manager = env.manager()
    managed = manager.open_for(embedder, 256)
    stored = store_texts(env, managed, embedder, range(10))
    stray = embedder.embed_texts(["a stray vector nobody recorded"], query=False)
    managed.add([10_000], stray, [("f" * 32, "caption", 1, 1)])
    manager.close()

    manager = env.manager()
    reopened = manager.open_for(embedder, 256)
    assert 10_000 in reopened.index.hidden()
    assert 10_000 not in reopened.search(stray[0], 20)[0].tolist()
    assert reopened.resolve([10_000]) == ({}, {}, [10_000])
    assert len(reopened) == 10
    assert reopened.search(stored[3][2], 1)[0].tolist() == [stored[3][1]]


def test_reconcile_follows_soft_deletes(env: Env) -> None:
    embedder = WordEmbedder()
    manager = env.manager()
    managed = manager.open_for(embedder, 256)
    stored = store_texts(env, managed, embedder, range(10))
    manager.close()
    id_, label, vector = stored[4]
    with env.catalog.transaction() as db:  # soft-deleted while the index was closed
        env.catalog.set_deleted(db, id_, True)
    manager = env.manager()
    reopened = manager.open_for(embedder, 256)
    assert reopened.index.hidden() == {label}
    assert label not in reopened.search(vector, 10)[0].tolist()
    assert reopened.resolve([label]) == ({}, {}, [label])
    manager.close()
    with env.catalog.transaction() as db:  # restored while closed
        env.catalog.set_deleted(db, id_, False)
    manager = env.manager()
    reopened = manager.open_for(embedder, 256)
    assert reopened.index.hidden() == set()
    assert reopened.search(vector, 1)[0].tolist() == [label]
    assert reopened.resolve([label]) == ({label: (id_, "caption")}, {id_: (1, 1)}, [])


def test_reconcile_loses_entries_without_vector_file(env: Env) -> None:
    embedder = WordEmbedder()
    manager = env.manager()
    managed = manager.open_for(embedder, 256)
    stored = store_texts(env, managed, embedder, range(10))
    manager.close()
    clear_graph(managed.path)
    gone_id, gone_label, _ = stored[2]
    env.storage.vector_path(gone_id, managed.name, "caption").unlink()
    bad_id, bad_label, _ = stored[3]
    env.storage.put_vector(bad_id, managed.name, "caption", np.ones(17, np.float32))

    manager = env.manager()
    reopened = manager.open_for(embedder, 256)
    assert reopened.index.labels() == {label for _, label, _ in stored.values()} - {
        gone_label,
        bad_label,
    }
    assert env.catalog.resolve_entries([gone_label, bad_label]) == {}
    assert reopened.resolve([gone_label, bad_label, stored[4][1]]) == (
        {stored[4][1]: (stored[4][0], "caption")},
        {stored[4][0]: (1, 1)},
        [gone_label, bad_label],
    )
    # The description is now missing a vector: a job embeds it again.
    jobs = env.catalog.engine.read("SELECT kind, target, image_sha256, method, state FROM jobs")
    assert sorted(jobs) == sorted(
        ("embed_text", managed.name, id_, "caption", "queued") for id_ in (gone_id, bad_id)
    )


def test_damaged_graph_is_rebuilt_from_vectors(env: Env) -> None:
    # The saved graph is a cache of the .npy vectors: a damaged one must not keep the
    # index from opening.
    embedder = WordEmbedder()
    manager = env.manager()
    managed = manager.open_for(embedder, 256)
    stored = store_texts(env, managed, embedder, range(12))
    manager.close()
    for entry in managed.path.iterdir():
        if entry.name not in ("meta.json", "state.json"):
            entry.write_bytes(b"\x00 damaged")
    reopened = env.manager().open_for(embedder, 256)
    assert len(reopened) == 12
    assert reopened.search(stored[4][2], 1)[0].tolist() == [stored[4][1]]


def test_backend_change_rebuilds_from_vectors(env: Env) -> None:
    embedder = WordEmbedder()
    manager = env.manager()
    managed = manager.open_for(embedder, 256)
    stored = store_texts(env, managed, embedder, range(12))
    manager.close()
    other = "flat" if env.backend_name == "hnswlib" else "hnswlib"
    switched = IndexManager(env.root / "vector_index", BACKENDS[other](), env.catalog, env.storage)
    reopened = switched.open_for(embedder, 256)
    assert reopened.info.backend == other
    assert json.loads((reopened.path / "meta.json").read_text())["backend"] == other
    assert len(reopened) == 12
    assert reopened.search(stored[7][2], 1)[0].tolist() == [stored[7][1]]


def test_rebuild_compacts_while_searches_continue(env: Env) -> None:
    embedder = WordEmbedder()
    manager = env.manager()
    managed = manager.open_for(embedder, 256)
    stored = store_texts(env, managed, embedder, range(400))
    hard = [n for n in stored if n % 2]  # hard-deleted: rows gone, labels hidden
    soft = [n for n in stored if n % 10 == 4]  # soft-deleted: hidden, kept
    with env.catalog.transaction() as db:
        for n in hard:
            env.catalog.delete_image_rows(db, stored[n][0])
        for n in soft:
            env.catalog.set_deleted(db, stored[n][0], True)
    managed.hide([stored[n][1] for n in hard + soft])
    live = [n for n in stored if n not in hard and n not in soft]
    kept_labels = {stored[n][1] for n in stored if n not in hard}
    assert len(managed.index.labels()) == 400

    probes = [stored[n] for n in live[::10]]
    before = [managed.search(vector, 10) for _, _, vector in probes]
    errors: list[BaseException] = []
    answered: list[float] = []
    stop = threading.Event()

    def searcher() -> None:
        try:
            i = 0
            while not stop.is_set():
                _, label, vector = probes[i % len(probes)]
                labels, _ = managed.search(vector, 5)
                assert labels[0] == label
                answered.append(time.monotonic())
                i += 1
                time.sleep(0.001)  # leave the GIL to the rebuild between queries
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=searcher)
    thread.start()
    started = time.monotonic()
    report = manager.rebuild(managed.name)
    ended = time.monotonic()
    stop.set()
    thread.join(30)
    assert errors == []
    assert any(started <= t <= ended for t in answered)  # searches answered meanwhile

    assert manager.get(managed.name) is managed
    assert managed.index.labels() == kept_labels  # hard-deleted entries are gone
    assert managed.index.hidden() == {stored[n][1] for n in soft}
    assert report == {"before": len(live), "after": len(live)}
    for (_, _, vector), (labels, scores) in zip(probes, before, strict=True):
        again = managed.search(vector, 10)
        assert again[0][0] == labels[0]
        np.testing.assert_allclose(np.sort(again[1]), np.sort(scores), atol=1e-4)
    # Nothing of the rebuild is left beside the index.
    assert sorted(p.name for p in (env.root / "vector_index").iterdir()) == [managed.name]
    # The rebuilt index was saved and reopens as it is.
    manager.close()
    reopened = env.manager().open_for(embedder, 256)
    assert reopened.index.labels() == kept_labels


def test_rebuild_keeps_writes_made_during_it(env: Env) -> None:
    embedder = WordEmbedder()
    manager = env.manager()
    managed = manager.open_for(embedder, 256)
    store_texts(env, managed, embedder, range(300))
    written: dict[int, tuple[str, int, Vectors]] = {}
    errors: list[BaseException] = []
    rebuilding = threading.Event()

    def writer() -> None:
        try:
            rebuilding.wait(5)
            for start in range(1000, 1200, 10):
                written.update(store_texts(env, managed, embedder, range(start, start + 10)))
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    rebuilding.set()
    manager.rebuild(managed.name)
    thread.join(60)
    assert errors == []
    assert len(written) == 200
    rows = index_entries(env.catalog, managed.name)
    assert managed.index.labels() == {row.id for row in rows}
    assert managed.index.hidden() == set()
    assert managed.resolve([row.id for row in rows]) == (
        {row.id: (row.image, row.method) for row in rows},
        {row.image: (1, 1) for row in rows},
        [],
    )
    for _, label, vector in list(written.values())[::7]:
        assert managed.search(vector, 1)[0].tolist() == [label]


def test_rebuild_unknown_index(env: Env) -> None:
    with pytest.raises(NotFound):
        env.manager().rebuild("nope")


def test_remove_index(env: Env) -> None:
    manager = env.manager()
    managed = manager.open_for(ColorEmbedder(), 80)
    assert managed.path.exists()
    manager.remove(managed.name)
    assert not managed.path.exists()
    assert manager.get(managed.name) is None
    assert list((env.root / "vector_index").iterdir()) == []


def test_compact_rebuilds_only_indexes_with_many_deleted_entries(env: Env) -> None:
    embedder = WordEmbedder()
    manager = env.manager()
    managed = manager.open_for(embedder, 256)
    stored = store_texts(env, managed, embedder, range(40))
    assert manager.compact(min_hidden=5, min_share=0.2) == {}
    doomed = [stored[n][1] for n in range(10)]
    with env.catalog.transaction() as db:
        env.catalog.delete_vector_entries(db, doomed)
    managed.hide(doomed)
    assert manager.compact(min_hidden=20, min_share=0.2) == {}  # not enough yet
    result = manager.compact(min_hidden=5, min_share=0.2)
    assert result == {"toy_words_v1": {"before": 30, "after": 30}}
    assert managed.index.hidden() == set()
    assert managed.index.labels() == {stored[n][1] for n in range(10, 40)}
