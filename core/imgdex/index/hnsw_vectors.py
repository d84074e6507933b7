"""The hnswlib index's vectors as one NumPy matrix, for exact search over a few thousand
labels.

hnswlib hands stored vectors back only through ``get_items``, which copies them through
Python lists (about 50 us per 384-d vector: 50 ms for 1,000), so an exact search over
the matches of a selective filter cost more than the filtered graph walk. This keeps a
float32 copy, row per label, stored exactly as hnswlib stores them (cosine vectors
normalised), so one gather and one matmul score any set of labels: about 1 ms for 5,000
labels at 384-d. The price is the vectors' memory a second time (no graph links:
about 40% of the index's); a saved graph gives its vectors back without ``get_items``
(`read_saved`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hnswlib
import numpy as np
import numpy.typing as npt

from imgdex.providers import Metric

__all__ = ["VectorCopy", "read_saved"]

log = logging.getLogger(__name__)

# hnswlib 0.8 `saveIndex`: six size_t, an int, a uint32, three size_t, a double, a size_t;
# then the level-0 block, one fixed-size record per element (links, vector, label).
_HEADER = 96


class VectorCopy:
    """Label -> row -> vector. Not thread-safe: the index's lock guards it."""

    def __init__(self, dimension: int, metric: Metric) -> None:
        self.dimension = dimension
        self.metric = metric
        self._vectors = np.empty((0, dimension), np.float32)
        self._count = 0
        self._row = np.full(0, -1, np.int64)  # indexed by label

    def add(
        self, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32], stored: bool = False
    ) -> None:
        """Vectors as added to the graph, or (`stored`) as the graph stores them."""
        vectors = np.asarray(vectors, np.float32).reshape(len(ids), self.dimension)
        if self.metric == "cosine" and not stored:  # as hnswlib's normalize_vector
            norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float32))
            vectors = vectors * (np.float32(1.0) / (norms + np.float32(1e-30)))[:, None]
        ids = np.asarray(ids, np.int64)
        top = int(ids.max()) + 1
        if top > len(self._row):
            grown = np.full(max(top, 2 * len(self._row)), -1, np.int64)
            grown[: len(self._row)] = self._row
            self._row = grown
        # The last of repeated labels wins, as in hnswlib.
        _, last = np.unique(ids[::-1], return_index=True)
        keep = np.sort(len(ids) - 1 - last)
        ids, vectors = ids[keep], vectors[keep]
        rows = self._row[ids]
        new = rows < 0
        rows[new] = np.arange(self._count, self._count + int(new.sum()))
        needed = self._count + int(new.sum())
        if needed > len(self._vectors):
            grown_v = np.empty((max(needed, 2 * len(self._vectors)), self.dimension), np.float32)
            grown_v[: self._count] = self._vectors[: self._count]
            self._vectors = grown_v
        self._vectors[rows] = vectors
        self._row[ids] = rows
        self._count = needed

    def scores(
        self, query: npt.NDArray[np.float32], ids: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """``(the ids held, their scores)`` as the graph search scores them: higher is
        nearer (1 - cosine/ip distance, minus the squared l2 distance)."""
        ids = ids[(ids >= 0) & (ids < len(self._row))]
        rows = self._row[ids]
        held = rows >= 0
        ids, rows = ids[held], rows[held]
        vectors = self._vectors[rows]
        if self.metric == "l2":
            diff = vectors - query
            return ids, -np.einsum("ij,ij->i", diff, diff, dtype=np.float32)
        if self.metric == "cosine":
            norm = np.sqrt(np.dot(query, query, out=None))
            query = query * (np.float32(1.0) / (np.float32(norm) + np.float32(1e-30)))
        return ids, (vectors @ query).astype(np.float32)

    def load(self, index: hnswlib.Index, saved: Path | None) -> None:
        """Fill from the saved graph file `saved` (or, when it cannot be read, through
        ``get_items``: slow, once)."""
        got = read_saved(saved, self.dimension) if saved is not None else None
        if got is not None and len(got[0]):
            labels, vectors = got
            rows = np.unique(np.linspace(0, len(labels) - 1, 5).astype(np.int64))
            stored = np.asarray(index.get_items(labels[rows], return_type="numpy"), np.float32)
            if not np.array_equal(stored, vectors[rows]):  # not the format we read
                log.warning("index vectors: unexpected graph file layout; reading them slowly")
                got = None
        if got is None:
            labels = np.asarray(index.get_ids_list(), np.int64)
            parts = [
                np.asarray(index.get_items(labels[i : i + 4096], return_type="numpy"), np.float32)
                for i in range(0, len(labels), 4096)
            ]
            vectors = np.concatenate(parts) if parts else np.empty((0, self.dimension), np.float32)
        self._vectors = np.empty((0, self.dimension), np.float32)
        self._count = 0
        self._row = np.full(0, -1, np.int64)
        if len(labels):
            self.add(labels, vectors, stored=True)


def read_saved(
    path: Path, dimension: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]] | None:
    """``(labels, vectors)`` straight from an hnswlib 0.8 graph file; None when its
    header does not describe records holding `dimension` floats and a label."""
    try:
        header = np.fromfile(path, np.uint8, count=_HEADER)
        if len(header) < _HEADER:
            return None
        offset0, _, count, size, label_at, data_at = header[:48].view(np.uint64).tolist()
        if offset0 != 0 or data_at + 4 * dimension > label_at or label_at + 8 != size:
            return None
        raw = np.fromfile(path, np.uint8, count=count * size, offset=_HEADER)
        if len(raw) != count * size:
            return None
    except OSError:
        return None
    records = raw.reshape(count, size)
    vectors = np.ascontiguousarray(records[:, data_at : data_at + 4 * dimension])
    labels = np.ascontiguousarray(records[:, label_at : label_at + 8])
    return labels.view(np.uint64).reshape(-1).astype(np.int64), vectors.view(np.float32)
