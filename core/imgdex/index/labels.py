"""An index's labels mapped to what they embed, held in memory for search.

A search turns each index's nearest labels (``vector_entries`` ids) into ``(image,
method)`` pairs, and its page of results needs each image's size and whether it is still
there. Asking the catalog costs two queries per search (0.4 ms in a busy server for 50
labels and a page of 10); this map answers from NumPy arrays sorted by label: 16 bytes
of image id, the image's width and height, a method code and a flag per label, 35 bytes
per vector (3.5 MB per 100k), against hnswlib's 1.7 to 4.7 kB per vector at d = 384 to
1152.

The map is a cache of the catalog, never the record. It is filled from the catalog
when the index opens and kept in step by `ManagedIndex`, under the same lock as the
graph: an add is mapped before it is searchable, and a hidden label (a deleted image or
description) is marked dead before the deletion is acknowledged, so a search that starts
after it never returns the label. A label the map cannot answer for (not mapped, dead, or an
image id that is not 32 lowercase hex digits) is left to the catalog, so the answer is
the catalog's in every case.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Collection, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from imgdex.index.image_order import ID_BYTES as _ID_BYTES
from imgdex.index.image_order import ImageOrder, id_halves, image_bytes
from imgdex.index.label_log import LabelLog

__all__ = ["Key", "LabelMap", "Ranked"]

_LOAD_CHUNK = 1024


class _State(NamedTuple):
    """One consistent view; readers take it in one attribute read, without a lock."""

    labels: npt.NDArray[np.int64]  # sorted over [:size]
    images: npt.NDArray[np.uint8]  # (capacity, 16)
    sizes: npt.NDArray[np.uint32]  # (capacity, 2): width, height
    methods: npt.NDArray[np.uint16]
    alive: npt.NDArray[np.bool_]
    size: int

    @property
    def columns(self) -> tuple[npt.NDArray[Any], ...]:
        return self.labels, self.images, self.sizes, self.methods, self.alive


def _empty(capacity: int) -> _State:
    return _State(
        np.zeros(capacity, np.int64),
        np.zeros((capacity, _ID_BYTES), np.uint8),
        np.zeros((capacity, 2), np.uint32),
        np.zeros(capacity, np.uint16),
        np.zeros(capacity, np.bool_),
        0,
    )


Key = tuple[str, str, int, int]
"""What a label embeds: ``(image, method, width, height)``."""


class LabelMap:
    """label -> (image, method) and the image's size, for the labels an index can return."""

    def __init__(self) -> None:
        self._state = _empty(0)
        self._method_names: list[str] = []
        self._method_codes: dict[str, int] = {}
        self._lock = threading.Lock()  # writers only
        # Changes with every write: what was derived from the map at one version (the
        # labels a filter allows, `imgdex.filter_sets`) holds while it stays the same.
        self.version = 0
        self._log = LabelLog()  # the labels each recent version changed
        self._order: ImageOrder | None = None  # rows by image id (`order_by_image`)

    def __len__(self) -> int:
        state = self._state
        return int(np.count_nonzero(state.alive[: state.size]))

    @property
    def nbytes(self) -> int:
        state, order = self._state, self._order
        kept = sum(a.nbytes for a in order[2:]) if order is not None else 0
        return sum(a.nbytes for a in state.columns) + kept

    # --- writing (callers hold the index's write lock as well) ------------------------

    def load(self, rows: Iterable[tuple[int, Key, bool]], expected: int = 0) -> None:
        """Replace the whole map with ``(label, key, alive)`` rows.

        The rows are read a chunk at a time into arrays sized for `expected` rows (grown
        if more come), so that a large index never becomes a list of Python objects or
        a trail of freed temporary arrays: the allocator keeps such memory in the
        process. 100k labels loaded at once left 17 MB behind for a 3.3 MB map; in
        chunks of 1,024 into arrays of the right size, 2 MB."""
        with self._lock:
            rows = iter(rows)
            state, size = _empty(max(expected, 1024)), 0
            while chunk := list(itertools.islice(rows, _LOAD_CHUNK)):
                new = self._encode(chunk)
                k = len(new[0])
                if size + k > len(state.labels):
                    grown = max(size + k, 2 * len(state.labels))
                    state = _filled([c[:size] for c in state.columns], grown)
                for column, values in zip(state.columns, new, strict=True):
                    column[size : size + k] = values
                size += k
            labels = state.labels[:size]
            if np.any(labels[1:] <= labels[:-1]):
                # Sort, keeping the last occurrence of a label that came twice.
                order = np.argsort(labels, kind="stable")
                ordered = labels[order]
                order = order[np.append(ordered[1:] != ordered[:-1], True)]
                state = _filled([c[:size][order] for c in state.columns], len(state.labels))
                size = state.size
            self._state = state._replace(size=size)
            self.version += 1
            self._log.reset(self.version)

    def add(self, labels: Sequence[int], keys: Sequence[Key]) -> None:
        """Map new labels (alive). Labels come in increasing order as a rule (catalog ids);
        a label mapped before is overwritten."""
        if len(labels) != len(keys):
            raise ValueError("one key per label")
        if not len(labels):
            return
        with self._lock:
            new = self._encode((label, key, True) for label, key in zip(labels, keys, strict=True))
            old = self._state
            n, k, added = old.size, len(new[0]), new[0]
            in_order = bool(np.all(added[1:] > added[:-1])) and (
                n == 0 or k == 0 or added[0] > old.labels[n - 1]
            )
            if in_order and n + k <= len(old.labels):
                # Append in place beyond what readers look at, then publish the new size.
                for column, values in zip(old.columns, new, strict=True):
                    column[n : n + k] = values
                self._state = old._replace(size=n + k)
                self._extend_order(old, self._state)
                self._changed(labels)
                return
            columns = [np.concatenate([c[:n], v]) for c, v in zip(old.columns, new, strict=True)]
            if not in_order:
                # Sort, keeping the last occurrence of a label that came twice.
                order = np.argsort(columns[0], kind="stable")
                ordered = columns[0][order]
                order = order[np.append(ordered[1:] != ordered[:-1], True)]
                columns = [c[order] for c in columns]
            self._state = _filled(columns, max(len(columns[0]), 2 * len(old.labels), 1024))
            if in_order:  # the rows before stay where they were
                self._extend_order(old, self._state)
            self._changed(labels)

    def set_alive(self, labels: Sequence[int], alive: bool) -> None:
        """Mark labels searchable or not (hidden in the index); unknown labels are skipped."""
        if not len(labels):
            return
        with self._lock:
            state = self._state
            pos, found = _find(state, np.asarray(labels, dtype=np.int64))
            state.alive[pos[found]] = alive
            self._changed(labels)

    def _extend_order(self, old: _State, new: _State) -> None:
        """Under the lock: the order by image id of `old`, if made, for `new`, which has
        the same rows and more after them."""
        if (order := self._image_order(old)) is not None:
            self._order = order.extended(new.labels, new.images, new.size)

    def _changed(self, labels: Sequence[int]) -> None:
        """Under the lock: a new version, which changed `labels`."""
        self.version += 1
        self._log.record(self.version, np.asarray(labels, dtype=np.int64))

    def changes_since(self, version: int) -> tuple[npt.NDArray[np.int64], int] | None:
        """The labels changed after `version` (ascending), and the version that brings
        what was derived at `version` to; None when the map no longer knows (it was
        loaded anew, or too much changed since)."""
        with self._lock:
            changed = self._log.since(version)
            return None if changed is None else (changed, self.version)

    def _encode(self, rows: Iterable[tuple[int, Key, bool]]) -> list[npt.NDArray[Any]]:
        """The columns of `rows` (in `_State` order), leaving out unmappable image ids."""
        labels, images, sizes, methods, alive = [], [], [], [], []
        for label, (image, method, width, height), live in rows:
            raw = image_bytes(image)
            if raw is None or not (0 <= width < 2**32 and 0 <= height < 2**32):
                continue  # not mappable: the catalog answers for this label
            code = self._method_codes.get(method)
            if code is None:
                if len(self._method_names) > np.iinfo(np.uint16).max:
                    continue
                code = len(self._method_names)
                self._method_names.append(method)  # before any array can hold the code
                self._method_codes[method] = code
            labels.append(label)
            images.append(raw)
            sizes.append((width, height))
            methods.append(code)
            alive.append(live)
        return [
            np.asarray(labels, dtype=np.int64),
            np.frombuffer(b"".join(images), dtype=np.uint8).reshape(-1, _ID_BYTES),
            np.asarray(sizes, dtype=np.uint32).reshape(-1, 2),
            np.asarray(methods, dtype=np.uint16),
            np.asarray(alive, dtype=np.bool_),
        ]

    # --- reading (any thread, no lock) -----------------------------------------------

    def resolve(
        self, labels: Sequence[int] | npt.NDArray[np.int64]
    ) -> tuple[dict[int, tuple[str, str]], dict[str, tuple[int, int]], list[int]]:
        """``({label: (image, method)}, {image: (width, height)}, labels left to the
        catalog)``: dead labels are left to the catalog too."""
        state = self._state
        wanted = np.asarray(labels, dtype=np.int64)
        pos, found = _find(state, wanted)
        if state.size:
            found &= state.alive[pos]
        at = pos[found]
        hexed = state.images[at].tobytes().hex()
        names = self._method_names
        entries: dict[int, tuple[str, str]] = {}
        sizes: dict[str, tuple[int, int]] = {}
        start = 0
        for label, code, (width, height) in zip(
            wanted[found].tolist(),
            state.methods[at].tolist(),
            state.sizes[at].tolist(),
            strict=True,
        ):
            image = hexed[start : start + 2 * _ID_BYTES]
            start += 2 * _ID_BYTES
            entries[label] = (image, names[code])
            sizes[image] = (width, height)
        missing = wanted[~found].tolist() if len(entries) < len(wanted) else []
        return entries, sizes, missing

    def labels_of(
        self, images: Collection[str], methods: Collection[str] | None = None
    ) -> npt.NDArray[np.int64]:
        """The live labels of `images` (of those `methods` only, when given), ascending:
        what a filtered search may return from this index. Vectorised: a filter can
        match most of a large library."""
        state = self._state
        wanted = id_halves(images)
        if not state.size or not len(wanted):
            return np.empty(0, np.int64)
        size = state.size
        if len(wanted) * 64 < size and (order := self._image_order(state)) is not None:
            at = order.rows_of(wanted)
            return self._live_labels(state, at, methods)
        mine = state.images[:size].view(np.uint64)  # (size, 2): each id's two halves
        wanted = wanted[np.lexsort((wanted[:, 1], wanted[:, 0]))]
        hi, lo = np.ascontiguousarray(wanted[:, 0]), np.ascontiguousarray(wanted[:, 1])
        rows: npt.NDArray[np.intp] | None = None
        if len(wanted) * 64 < size:
            # Few wanted (a selective filter): a binary search per label costs 10 ms at
            # 100k labels, so first keep the labels whose id's low 20 bits are some
            # wanted id's (one table lookup each); the search then checks those few.
            table = np.zeros(1 << 20, np.bool_)
            table[hi & np.uint64(0xFFFFF)] = True
            rows = np.flatnonzero(table[mine[:, 0] & np.uint64(0xFFFFF)])
            mine = mine[rows]
        my_hi = np.ascontiguousarray(mine[:, 0])
        pos = np.minimum(hi.searchsorted(my_hi), len(hi) - 1)
        match = (hi[pos] == my_hi) & (lo[pos] == mine[:, 1])
        if len(wanted) > 1 and np.any(wanted[1:, 0] == wanted[:-1, 0]):
            # Two wanted ids share their first 64 bits (never seen in practice):
            # `searchsorted` finds only the first of them, so check those exactly.
            pairs = set(zip(wanted[:, 0].tolist(), wanted[:, 1].tolist(), strict=True))
            at = np.flatnonzero(np.isin(mine[:, 0], wanted[1:, 0][wanted[1:, 0] == wanted[:-1, 0]]))
            found = zip(mine[at, 0].tolist(), mine[at, 1].tolist(), strict=True)
            match[at] = [pair in pairs for pair in found]
        at = np.flatnonzero(match) if rows is None else rows[match]  # rows of the map
        return self._live_labels(state, at, methods)

    def _live_labels(
        self, state: _State, at: npt.NDArray[np.intp], methods: Collection[str] | None
    ) -> npt.NDArray[np.int64]:
        """The labels at rows `at` (ascending) that are alive and of `methods`."""
        at = at[state.alive[at]]
        if methods is not None:
            codes = [self._method_codes[m] for m in methods if m in self._method_codes]
            at = at[np.isin(state.methods[at], codes)]
        labels: npt.NDArray[np.int64] = state.labels[at]
        return labels

    def _image_order(self, state: _State) -> ImageOrder | None:
        """The rows' order by image id if `order_by_image` made it for `state`."""
        order = self._order
        if order is not None and order.labels is state.labels and order.size == state.size:
            return order
        return None

    def order_by_image(self) -> None:
        """Order the rows by image id (unless they are): the labels of a few images then
        cost microseconds, not a pass over every label (0.8 ms at 100k), as bringing a
        kept filter set forward asks. It costs 10 ms at 100k (`imgdex.filter_sets` calls
        it off the request path); added rows extend it, a reload or a label mapped again
        ends it."""
        state = self._state
        if state.size and self._image_order(state) is None:  # readers see old or new
            self._order = ImageOrder.of(state.labels, state.images, state.size)

    def rank(
        self,
        labels: npt.NDArray[np.int64],
        scores: npt.NDArray[np.float32],
        methods: Collection[str] | None = None,
        limit: int | None = None,
    ) -> Ranked | None:
        """One index's search results (best first) collapsed to the best hit per image
        and ordered by score, then image id, as `imgdex.ops.fusion.collapse` orders them;
        `methods` keeps only hits of those methods, `limit` builds only the first images.

        None when the map cannot answer exactly: a label is not mapped or dead, the
        scores are not in descending order, or two hits of one image tie on the best
        score (which hit explains the image is then the caller's tie-break to make).
        """
        n = len(labels)
        if not n:
            return Ranked([], {}, 0)
        state = self._state
        pos, found = _find(state, np.asarray(labels, dtype=np.int64))
        if not state.size or not found.all() or not state.alive[pos].all():
            return None
        scores = np.asarray(scores, dtype=np.float32)
        steps = scores[1:] - scores[:-1]
        if np.any(steps > 0):
            return None
        codes = state.methods[pos].tolist()
        score_list = scores.tolist()
        hexed = state.images[pos].tobytes().hex()
        width = 2 * _ID_BYTES
        allowed = None
        if methods is not None:
            allowed = {self._method_codes[m] for m in methods if m in self._method_codes}
        first: dict[str, int] = {}  # image -> its best (first) hit
        for i, code in enumerate(codes):
            if allowed is not None and code not in allowed:
                continue
            image = hexed[i * width : (i + 1) * width]
            best = first.get(image)
            if best is None:
                first[image] = i
            elif score_list[best] == score_list[i]:
                return None  # ties with the image's best hit
        order = list(first.items())
        if np.any(steps == 0):  # equal scores: those images go by image id
            order.sort(key=lambda item: (-score_list[item[1]], item[0]))
        names = self._method_names
        sizes = state.sizes[pos].tolist()
        hits = []
        found_sizes: dict[str, tuple[int, int]] = {}
        for image, i in order[:limit]:
            hits.append((image, score_list[i], names[codes[i]]))
            width_, height = sizes[i]
            found_sizes[image] = (width_, height)
        return Ranked(hits, found_sizes, len(order))


class Ranked(NamedTuple):
    """`LabelMap.rank`'s answer."""

    hits: list[tuple[str, float, str]]  # (image, score, method), best first
    sizes: dict[str, tuple[int, int]]  # of the images in `hits`
    total: int  # images among the labels (after the methods filter), in `hits` or not


def _filled(columns: Sequence[npt.NDArray[Any]], capacity: int) -> _State:
    """A state holding `columns` (in `_State` order, sorted by label) with room to grow."""
    state = _empty(capacity)
    size = len(columns[0])
    for column, values in zip(state.columns, columns, strict=True):
        column[:size] = values
    return state._replace(size=size)


def _find(
    state: _State, wanted: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
    """Positions of `wanted` in the sorted labels, and which of them are there."""
    size = state.size
    if size == 0:
        return np.zeros(len(wanted), np.intp), np.zeros(len(wanted), np.bool_)
    pos = state.labels[:size].searchsorted(wanted)
    np.minimum(pos, size - 1, out=pos)
    return pos, state.labels[pos] == wanted
