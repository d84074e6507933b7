"""The default index backend: hnswlib, registered as a plugin of the core.

Files in the index directory: ``hnsw.<gen>.bin`` (the graph), ``hidden.<gen>.npy``
(labels excluded from results) and ``state.json`` naming the current generation. A save
writes a new generation and switches ``state.json`` atomically, so a kill during a save
leaves the previous generation intact. The saved graph is a cache: the core re-adds from
the ``.npy`` vectors whatever the catalog has and the graph lacks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import hnswlib
import numpy as np
import numpy.typing as npt

from imgdex.config import IndexConfig
from imgdex.files import atomic_write
from imgdex.hookspecs import hookimpl
from imgdex.index.hnsw_vectors import IndexVectors, checked, map_saved
from imgdex.index.rwlock import RWLock
from imgdex.providers import IndexBackend, IndexLocation, Metric, VectorIndex

__all__ = ["HnswBackend", "HnswIndex"]

log = logging.getLogger(__name__)

_SPACES = {"cosine": "cosine", "ip": "ip", "l2": "l2"}
# A filtered search over at most this many labels is exact, over the index's vectors
# as NumPy arrays (`IndexVectors`): a graph walk that skips all but a few labels visits
# most of the graph, calling the filter (Python) at every node (docs/benchmarks.md,
# bench/filtered.py).
_EXACT_AT_MOST = 4096


class HnswIndex(VectorIndex):
    def __init__(
        self, path: Path, dimension: int, metric: Metric, *, m: int, ef_construction: int, ef: int
    ) -> None:
        self.path = path
        self.dimension = dimension
        self.metric = metric
        self._m, self._efc, self._ef = m, ef_construction, ef
        self._lock = RWLock()
        self._save_lock = threading.Lock()
        self._hidden: set[int] = set()
        self._gen = 0
        self._vectors = IndexVectors(dimension, metric)
        self._index = self._load() or self._new(1024)

    def _new(self, capacity: int) -> hnswlib.Index:
        index = hnswlib.Index(space=_SPACES[self.metric], dim=self.dimension)
        index.init_index(max_elements=capacity, M=self._m, ef_construction=self._efc)
        index.set_ef(self._ef)
        return index

    def _load(self) -> hnswlib.Index | None:
        state_file = self.path / "state.json"
        if not state_file.is_file():
            return None
        try:
            state = json.loads(state_file.read_text())
            gen = int(state["gen"])
            index = hnswlib.Index(space=_SPACES[self.metric], dim=self.dimension)
            index.load_index(
                str(self.path / f"hnsw.{gen}.bin"), max_elements=int(state["capacity"])
            )
            index.set_ef(self._ef)  # load_index resets ef to 10
            hidden = np.load(self.path / f"hidden.{gen}.npy", allow_pickle=False)
            self._vectors.load(index, self.path / f"hnsw.{gen}.bin")
        except Exception as exc:  # a damaged cache is rebuilt from the vectors
            log.warning("index %s: cannot load saved graph (%s); rebuilding", self.path.name, exc)
            self._vectors = IndexVectors(self.dimension, self.metric)
            return None
        self._gen = gen
        self._hidden = {int(x) for x in hidden}
        return index

    def add(self, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        if not len(ids):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), -1)
        with self._lock.write():
            needed = self._index.get_current_count() + len(ids)
            capacity = self._index.get_max_elements()
            if needed > capacity:
                self._index.resize_index(max(needed, capacity * 2))
            # add_items un-deletes a hidden label itself (hnswlib addPoint): only forget it.
            self._index.add_items(vectors, np.asarray(ids, dtype=np.int64))
            self._vectors.add(np.asarray(ids, dtype=np.int64), vectors)
            self._hidden.difference_update(int(label) for label in ids)

    def hide(self, ids: Sequence[int]) -> None:
        with self._lock.write():
            for label in ids:
                if label in self._hidden:
                    continue
                try:
                    self._index.mark_deleted(label)
                except RuntimeError:  # not in the graph: nothing to hide
                    continue
                self._hidden.add(label)

    def unhide(self, ids: Sequence[int]) -> None:
        with self._lock.write():
            for label in ids:
                if label in self._hidden:
                    self._index.unmark_deleted(label)
                    self._hidden.discard(label)

    def search(
        self, vector: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        with self._lock.read():
            k = min(k, self._index.get_current_count() - len(self._hidden))
            while k > 0:
                try:
                    labels, distances = self._index.knn_query(query, k=k)
                    break
                except RuntimeError:
                    # Fewer than k reachable live items (many hidden): ask for fewer.
                    k //= 2
            else:
                return np.empty(0, np.int64), np.empty(0, np.float32)
        scores = -distances[0] if self.metric == "l2" else 1.0 - distances[0]
        return labels[0].astype(np.int64), scores.astype(np.float32)

    def search_among(
        self, vector: npt.NDArray[np.float32], k: int, among: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Few labels (a selective filter): an exact search over their stored vectors, as
        a graph search would have to visit most of the graph to find them. Many: the
        graph search, told to skip the others."""
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        with self._lock.read():
            if len(among) <= _EXACT_AT_MOST:
                return self._exact(query[0], k, among)
            allowed = set(among.tolist())
            k = min(k, len(allowed))
            while k > 0:
                try:
                    # One thread: the filter is a Python callable, run under the GIL.
                    labels, distances = self._index.knn_query(
                        query, k=k, num_threads=1, filter=allowed.__contains__
                    )
                    break
                except RuntimeError:  # fewer than k reachable
                    k //= 2
            else:
                return np.empty(0, np.int64), np.empty(0, np.float32)
        scores = -distances[0] if self.metric == "l2" else 1.0 - distances[0]
        return labels[0].astype(np.int64), scores.astype(np.float32)

    def gather(self, among: npt.NDArray[np.int64]) -> npt.NDArray[np.float32] | None:
        with self._lock.read():
            ids, vectors = self._vectors.gather(among)
        order = np.argsort(ids, kind="stable")  # the recent ones come first
        ids, vectors = ids[order], vectors[order]
        if len(ids) != len(among) or not np.array_equal(ids, among):
            return None  # some not held (added to the label map, not yet to the graph)
        return vectors

    def search_gathered(
        self,
        vector: npt.NDArray[np.float32],
        k: int,
        among: npt.NDArray[np.int64],
        vectors: npt.NDArray[np.float32],
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        with self._lock.read():
            return self._top(among, self._vectors.score(query, vectors), k)

    def _exact(
        self, query: npt.NDArray[np.float32], k: int, among: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Under the read lock: one gather and one matmul over the vectors."""
        ids, scores = self._vectors.scores(query, np.unique(among))
        return self._top(ids, scores, k)

    def _top(
        self, ids: npt.NDArray[np.int64], scores: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Under the read lock: the `k` best of `ids` that are not hidden."""
        if self._hidden and len(ids):
            live = ~np.isin(ids, np.fromiter(self._hidden, np.int64, len(self._hidden)))
            ids, scores = ids[live], scores[live]
        if not len(ids) or k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        k = min(k, len(ids))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((ids[top], -scores[top]))]
        return ids[top], scores[top].astype(np.float32)

    def vectors_in_memory(self) -> int:
        """Vectors the exact search holds in memory (the saved ones are memory-mapped)."""
        with self._lock.read():
            return self._vectors.in_memory()

    def labels(self) -> set[int]:
        with self._lock.read():
            return {int(x) for x in self._index.get_ids_list()}

    def hidden(self) -> set[int]:
        with self._lock.read():
            return set(self._hidden)

    def __len__(self) -> int:
        with self._lock.read():
            return int(self._index.get_current_count()) - len(self._hidden)

    def save(self) -> None:
        # One save at a time from start to finish, so two savers never pick the same
        # generation; adds wait only while the graph itself is written.
        with self._save_lock:
            gen = self._gen + 1
            with self._lock.read():
                self._index.save_index(str(self.path / f"hnsw.{gen}.bin"))
                hidden = sorted(self._hidden)
                capacity = self._index.get_max_elements()
                mark = self._vectors.mark()
            atomic_write(self.path / f"hidden.{gen}.npy", _npy(hidden))
            state = {
                "gen": gen,
                "capacity": capacity,
                "metric": self.metric,
                "dimension": self.dimension,
            }
            atomic_write(self.path / "state.json", json.dumps(state).encode())
            # The vectors saved are read from the file from now on (memory-mapped), not
            # kept in memory a second time.
            saved = map_saved(self.path / f"hnsw.{gen}.bin", self.dimension)
            with self._lock.write():
                self._vectors.rebase(checked(saved, self._index), mark)
            old, self._gen = self._gen, gen
            for stale in (f"hnsw.{old}.bin", f"hidden.{old}.npy"):
                with contextlib.suppress(FileNotFoundError):
                    (self.path / stale).unlink()


def _npy(values: list[int]) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.asarray(values, dtype=np.int64), allow_pickle=False)
    return buf.getvalue()


class HnswBackend(IndexBackend):
    name = "hnswlib"

    def __init__(self, m: int = 16, ef_construction: int = 200, ef: int = 64) -> None:
        self.m, self.ef_construction, self.ef = m, ef_construction, ef

    def configure(self, config: IndexConfig) -> None:
        self.m, self.ef_construction, self.ef = config.m, config.ef_construction, config.ef_search

    def open(self, location: IndexLocation, *, dimension: int, metric: Metric) -> VectorIndex:
        path = location.directory(self.name)
        return HnswIndex(
            path, dimension, metric, m=self.m, ef_construction=self.ef_construction, ef=self.ef
        )


@hookimpl
def register_index_backends(register: Callable[[IndexBackend], None]) -> None:
    register(HnswBackend())
