"""An open index plus the bookkeeping the core keeps around it."""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from imgdex.index.labels import Key, LabelMap, Ranked
from imgdex.index.meta import IndexInfo
from imgdex.providers import VectorIndex

__all__ = ["ManagedIndex"]


@dataclass
class ManagedIndex:
    """An open index plus the bookkeeping the core needs around it."""

    info: IndexInfo
    path: Path
    index: VectorIndex
    dirty: bool = False
    # Held by writers and by a rebuild's final swap, so no add lands in a replaced index.
    swap_lock: threading.RLock = field(default_factory=threading.RLock)
    # What each label embeds, for search: filled by reconcile, kept in step below.
    labels: LabelMap = field(default_factory=LabelMap)

    @property
    def name(self) -> str:
        return self.info.name

    def add(
        self,
        ids: Sequence[int],
        vectors: npt.NDArray[np.float32],
        keys: Sequence[Key],
    ) -> None:
        """Add vectors under their labels; `keys` are their ``(image, method, width,
        height)``."""
        with self.swap_lock:
            self.labels.add(ids, keys)  # mapped before a search can return them
            self.index.add(np.asarray(ids, dtype=np.int64), vectors)
            self.dirty = True

    def hide(self, ids: Sequence[int]) -> None:
        if ids:
            with self.swap_lock:
                self.index.hide(list(ids))
                self.labels.set_alive(ids, False)
                self.dirty = True

    def unhide(self, ids: Sequence[int]) -> None:
        if ids:
            with self.swap_lock:
                self.labels.set_alive(ids, True)
                self.index.unhide(list(ids))
                self.dirty = True

    def rank(
        self,
        labels: npt.NDArray[np.int64],
        scores: npt.NDArray[np.float32],
        methods: Collection[str] | None = None,
        limit: int | None = None,
    ) -> Ranked | None:
        """Search results collapsed to the best hit per image, from the label map alone;
        None when the map cannot answer exactly (see `LabelMap.rank`)."""
        return self.labels.rank(labels, scores, methods, limit)

    def resolve(
        self, labels: Sequence[int]
    ) -> tuple[dict[int, tuple[str, str]], dict[str, tuple[int, int]], list[int]]:
        """``({label: (image, method)}, {image: (width, height)}, labels to ask the catalog
        about)``."""
        return self.labels.resolve(labels)

    def search(
        self,
        vector: npt.NDArray[np.float32],
        k: int,
        among: npt.NDArray[np.int64] | None = None,
        vectors: npt.NDArray[np.float32] | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The `k` nearest live labels; only labels in `among`, when given, whose
        vectors are `vectors` when the index gathered them (`VectorIndex.gather`)."""
        if among is not None and vectors is not None:
            return self.index.search_gathered(vector, k, among, vectors)
        if among is not None:
            return self.index.search_among(vector, k, among)
        return self.index.search(vector, k)

    def __len__(self) -> int:
        return len(self.index)
