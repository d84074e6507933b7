"""An exact (brute-force NumPy) index backend: ``index.backend: flat``.

Exact results at any size, linear time per query: right for small libraries, and the
reference that recall of the approximate backends is measured against. Readers take a
snapshot of immutable arrays, so queries never wait for writers.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from imgdex.files import atomic_write
from imgdex.hookspecs import hookimpl
from imgdex.providers import IndexBackend, IndexLocation, Metric, VectorIndex

__all__ = ["FlatBackend", "FlatIndex"]

log = logging.getLogger(__name__)


class FlatIndex(VectorIndex):
    def __init__(self, path: Path, dimension: int, metric: Metric) -> None:
        self.path = path
        self.dimension = dimension
        self.metric = metric
        self._write = threading.Lock()
        self._gen = 0
        empty = (np.empty(0, np.int64), np.empty((0, dimension), np.float32), frozenset[int]())
        self._snap: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], frozenset[int]] = empty
        state = path / "state.json"
        if state.is_file():
            try:
                gen = int(json.loads(state.read_text())["gen"])
                with np.load(path / f"flat.{gen}.npz", allow_pickle=False) as data:
                    hidden = frozenset(int(x) for x in data["hidden"])
                    self._snap = (data["ids"], data["vectors"], hidden)
                self._gen = gen
            except Exception as exc:  # a damaged cache is rebuilt from the vectors
                log.warning("index %s: cannot load saved vectors (%s); rebuilding", path.name, exc)

    def _prepare(self, vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dimension)
        if self.metric == "cosine":
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
        return vectors

    def add(self, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        new_ids = np.asarray(ids, dtype=np.int64)
        new_vecs = self._prepare(vectors)
        with self._write:
            old_ids, old_vecs, hidden = self._snap
            keep = ~np.isin(old_ids, new_ids)
            self._snap = (
                np.concatenate([old_ids[keep], new_ids]),
                np.concatenate([old_vecs[keep], new_vecs]),
                hidden - {int(x) for x in new_ids},
            )

    def hide(self, ids: Sequence[int]) -> None:
        with self._write:
            all_ids, vecs, hidden = self._snap
            present = set(all_ids.tolist())
            self._snap = (all_ids, vecs, hidden | {i for i in ids if i in present})

    def unhide(self, ids: Sequence[int]) -> None:
        with self._write:
            all_ids, vecs, hidden = self._snap
            self._snap = (all_ids, vecs, hidden - set(ids))

    def search(
        self, vector: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        ids, vecs, hidden = self._snap
        if not len(ids):
            return np.empty(0, np.int64), np.empty(0, np.float32)
        query = self._prepare(vector)[0]
        scores = -np.sum((vecs - query) ** 2, axis=1) if self.metric == "l2" else vecs @ query
        if hidden:
            scores = np.where(np.isin(ids, list(hidden)), -np.inf, scores)
        k = min(k, len(ids) - len(hidden))
        if k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return ids[top], scores[top].astype(np.float32)

    def search_among(
        self, vector: npt.NDArray[np.float32], k: int, among: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        ids, vecs, hidden = self._snap
        keep = np.isin(ids, among)
        if hidden:
            keep &= ~np.isin(ids, list(hidden))
        ids, vecs = ids[keep], vecs[keep]
        k = min(k, len(ids))
        if k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        query = self._prepare(vector)[0]
        scores = -np.sum((vecs - query) ** 2, axis=1) if self.metric == "l2" else vecs @ query
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return ids[top], scores[top].astype(np.float32)

    def labels(self) -> set[int]:
        return set(self._snap[0].tolist())

    def hidden(self) -> set[int]:
        return set(self._snap[2])

    def save(self) -> None:
        with self._write:
            ids, vecs, hidden = self._snap
            gen = self._gen + 1
            buf = io.BytesIO()
            np.savez(buf, ids=ids, vectors=vecs, hidden=np.asarray(sorted(hidden), np.int64))
            atomic_write(self.path / f"flat.{gen}.npz", buf.getvalue())
            atomic_write(self.path / "state.json", json.dumps({"gen": gen}).encode())
            old, self._gen = self._gen, gen
        with contextlib.suppress(FileNotFoundError):
            (self.path / f"flat.{old}.npz").unlink()


class FlatBackend(IndexBackend):
    name = "flat"

    def open(self, location: IndexLocation, *, dimension: int, metric: Metric) -> VectorIndex:
        path = location.directory(self.name)
        return FlatIndex(path, dimension, metric)


@hookimpl
def register_index_backends(register: Callable[[IndexBackend], None]) -> None:
    register(FlatBackend())
