"""The hnswlib index's vectors as NumPy arrays, for exact search over a few thousand
labels.

hnswlib hands stored vectors back only through ``get_items``, which copies them through
Python lists (about 50 us per 384-d vector: 50 ms for 1,000), so an exact search over
the matches of a selective filter cost more than the filtered graph walk. `IndexVectors`
scores any set of labels with one gather and one matmul (about 1 ms for 5,000 labels at
384-d) without holding the vectors a second time: the saved graph file is memory-mapped
(`map_saved`; its pages live in the page cache, shared and reclaimable, and only the rows
a search gathers are read), and only the vectors added since the last save are kept in
memory, as hnswlib stores them (cosine vectors normalised).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hnswlib
import numpy as np
import numpy.typing as npt

from imgdex.providers import Metric

__all__ = ["IndexVectors", "SavedVectors", "map_saved", "read_saved"]

log = logging.getLogger(__name__)

# hnswlib 0.8 `saveIndex`: six size_t, an int, a uint32, three size_t, a double, a size_t;
# then the level-0 block, one fixed-size record per element (links, vector, label).
_HEADER = 96

Labels = npt.NDArray[np.int64]
Matrix = npt.NDArray[np.float32]


class SavedVectors:
    """A saved graph file's labels and vectors; the vectors a read-only memory map."""

    def __init__(self, labels: Labels, vectors: Matrix) -> None:
        self.labels = labels
        self.vectors = vectors  # rows of the mapped file, in file order
        self._row = _rows_of(labels)

    def rows(self, ids: Labels) -> npt.NDArray[np.int64]:
        """The row of each label in `ids`, -1 where the file does not hold it."""
        out = np.full(len(ids), -1, np.int64)
        inside = ids < len(self._row)
        out[inside] = self._row[ids[inside]]
        return out


class IndexVectors:
    """Label -> vector, as the graph stores it: the saved file's, overridden by what was
    added since. Not thread-safe: the index's lock guards it."""

    def __init__(self, dimension: int, metric: Metric) -> None:
        self.dimension = dimension
        self.metric = metric
        self._saved: SavedVectors | None = None
        self._batches: list[tuple[Labels, Matrix]] = []  # added since the file was saved
        self._recent = _Recent(dimension)

    def add(self, ids: Labels, vectors: Matrix) -> None:
        """Vectors as added to the graph (cosine ones are normalised here, as hnswlib's
        ``normalize_vector`` does)."""
        vectors = np.asarray(vectors, np.float32).reshape(len(ids), self.dimension)
        if self.metric == "cosine":
            norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float32))
            vectors = vectors * (np.float32(1.0) / (norms + np.float32(1e-30)))[:, None]
        batch = (np.asarray(ids, np.int64).copy(), np.ascontiguousarray(vectors))
        self._batches.append(batch)
        self._recent.add(*batch)

    def in_memory(self) -> int:
        """How many vectors are held in memory (added since the last save)."""
        return sum(len(ids) for ids, _ in self._batches)

    def mark(self) -> int:
        """Where the batches stand now: pass it to `rebase` once a save taken at this
        moment is on disk."""
        return len(self._batches)

    def rebase(self, saved: SavedVectors | None, mark: int) -> None:
        """The graph saved when `mark` was taken is `saved`: the batches it holds are
        dropped from memory. With None (the file cannot be read) everything stays."""
        if saved is None:
            return
        self._saved = saved
        self._batches = self._batches[mark:]
        self._recent = _Recent(self.dimension)
        for batch in self._batches:
            self._recent.add(*batch)

    def load(self, index: hnswlib.Index, path: Path) -> None:
        """Open on the saved graph `path` (when its layout is not the one `map_saved`
        reads, the vectors are read through ``get_items`` once, slowly, and kept)."""
        self._saved, self._batches, self._recent = None, [], _Recent(self.dimension)
        saved = checked(map_saved(path, self.dimension), index)
        if saved is not None:
            self._saved = saved
            return
        log.warning("index vectors: unexpected graph file layout; reading them slowly")
        labels = np.asarray(index.get_ids_list(), np.int64)
        for i in range(0, len(labels), 4096):
            batch = _stored(index, labels[i : i + 4096])
            self._batches.append(batch)
            self._recent.add(*batch)

    def gather(self, ids: Labels) -> tuple[Labels, Matrix]:
        """``(the ids held, their vectors)``, one row each, as the graph stores them."""
        ids = ids[ids >= 0]
        recent = self._recent.rows(ids)
        fresh = recent >= 0
        parts_ids, parts = [ids[fresh]], [self._recent.vectors[recent[fresh]]]
        if self._saved is not None:
            rest = ids[~fresh]
            rows = self._saved.rows(rest)
            held = rows >= 0
            parts_ids.append(rest[held])
            parts.append(np.asarray(self._saved.vectors[rows[held]], np.float32))
        ids = np.concatenate(parts_ids)
        vectors = np.concatenate(parts) if parts else np.empty((0, self.dimension), np.float32)
        return ids, vectors

    def scores(self, query: Matrix, ids: Labels) -> tuple[Labels, Matrix]:
        """``(the ids held, their scores)`` as the graph search scores them: higher is
        nearer (1 - cosine/ip distance, minus the squared l2 distance). `ids` unique."""
        ids, vectors = self.gather(ids)
        return ids, self.score(query, vectors)

    def score(self, query: Matrix, vectors: Matrix) -> Matrix:
        """The scores of `vectors` (rows as `gather` returns them) against `query`."""
        if self.metric == "l2":
            diff = vectors - query
            scores: Matrix = -np.einsum("ij,ij->i", diff, diff, dtype=np.float32)
            return scores
        if self.metric == "cosine":
            norm = np.sqrt(np.dot(query, query))
            query = query * (np.float32(1.0) / (np.float32(norm) + np.float32(1e-30)))
        return (vectors @ query).astype(np.float32)


class _Recent:
    """The in-memory part: label -> row -> vector; the last of repeated labels wins."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self.vectors = np.empty((0, dimension), np.float32)
        self._count = 0
        self._row = np.full(0, -1, np.int64)  # indexed by label

    def add(self, ids: Labels, vectors: Matrix) -> None:
        if not len(ids):
            return
        top = int(ids.max()) + 1
        if top > len(self._row):
            grown = np.full(max(top, 2 * len(self._row)), -1, np.int64)
            grown[: len(self._row)] = self._row
            self._row = grown
        _, last = np.unique(ids[::-1], return_index=True)
        keep = np.sort(len(ids) - 1 - last)
        ids, vectors = ids[keep], vectors[keep]
        rows = self._row[ids]
        new = rows < 0
        rows[new] = np.arange(self._count, self._count + int(new.sum()))
        needed = self._count + int(new.sum())
        if needed > len(self.vectors):
            grown_v = np.empty((max(needed, 2 * len(self.vectors)), self.dimension), np.float32)
            grown_v[: self._count] = self.vectors[: self._count]
            self.vectors = grown_v
        self.vectors[rows] = vectors
        self._row[ids] = rows
        self._count = needed

    def rows(self, ids: Labels) -> npt.NDArray[np.int64]:
        out = np.full(len(ids), -1, np.int64)
        inside = ids < len(self._row)
        out[inside] = self._row[ids[inside]]
        return out


def _rows_of(labels: Labels) -> npt.NDArray[np.int64]:
    row = np.full(int(labels.max()) + 1 if len(labels) else 0, -1, np.int64)
    row[labels] = np.arange(len(labels), dtype=np.int64)
    return row


def _layout(path: Path, dimension: int) -> tuple[int, int, int, int] | None:
    """``(count, record size, label offset, vector offset)`` of an hnswlib 0.8 graph
    file whose records hold `dimension` floats and a label; None otherwise."""
    try:
        header = np.fromfile(path, np.uint8, count=_HEADER)
        if len(header) < _HEADER:
            return None
        offset0, _, count, size, label_at, data_at = header[:48].view(np.uint64).tolist()
        if offset0 != 0 or data_at + 4 * dimension > label_at or label_at + 8 != size:
            return None
        if path.stat().st_size < _HEADER + count * size:
            return None
    except OSError:
        return None
    return count, size, label_at, data_at


def map_saved(path: Path, dimension: int) -> SavedVectors | None:
    """The saved graph `path`'s labels (read) and vectors (memory-mapped)."""
    layout = _layout(path, dimension)
    if layout is None:
        return None
    count, size, label_at, data_at = layout
    if count == 0:
        return SavedVectors(np.empty(0, np.int64), np.empty((0, dimension), np.float32))
    records = np.memmap(path, np.uint8, mode="r", offset=_HEADER, shape=(count, size))
    labels = np.ascontiguousarray(records[:, label_at : label_at + 8]).view(np.uint64)
    vectors = records[:, data_at : data_at + 4 * dimension].view(np.float32)
    return SavedVectors(labels.reshape(-1).astype(np.int64), vectors)


def checked(saved: SavedVectors | None, index: hnswlib.Index) -> SavedVectors | None:
    """`saved`, when a few of its rows equal what ``get_items`` answers (the layout is
    the one we read); else None."""
    if saved is None or not len(saved.labels):
        return saved
    rows = np.unique(np.linspace(0, len(saved.labels) - 1, 8).astype(np.int64))
    labels, stored = _stored(index, saved.labels[rows])
    if not len(labels):  # every sampled label hidden: nothing to compare with
        return None
    mine = np.asarray(saved.vectors[saved.rows(labels)], np.float32)
    return saved if np.array_equal(stored, mine) else None


def _stored(index: hnswlib.Index, labels: Labels) -> tuple[Labels, Matrix]:
    """``get_items`` for `labels`, without those it refuses (hidden ones)."""
    try:
        return labels, np.asarray(index.get_items(labels, return_type="numpy"), np.float32)
    except RuntimeError:  # a hidden label in the batch: one at a time
        kept, vectors = [], []
        for label in labels.tolist():
            try:
                vectors.append(np.asarray(index.get_items([label], return_type="numpy"))[0])
            except RuntimeError:
                continue
            kept.append(label)
        dim = index.dim
        matrix = np.asarray(vectors, np.float32).reshape(len(kept), dim)
        return np.asarray(kept, np.int64), matrix


def read_saved(path: Path, dimension: int) -> tuple[Labels, Matrix] | None:
    """``(labels, vectors)`` of a saved graph file, in memory; None for another layout."""
    saved = map_saved(path, dimension)
    if saved is None:
        return None
    return saved.labels, np.array(saved.vectors, np.float32)
