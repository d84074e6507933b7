"""Near-duplicate groups: the connected components of the recorded pairs at least a
threshold alike, ranked, and kept per threshold while the pairs stay the same.

Grouping reads every pair above the threshold and unions them, which costs as much as
the library has pairs; a listing only pages through the result. `GroupCache` keeps the
ranked groups of a few thresholds under the catalog's duplicates revision (a counter the
catalog's own triggers bump on any write that changes the pairs or which images with
pairs are live, whichever process writes) and recomputes only when it moved.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from msgspec import Struct

from imgdex.catalog.duplicates import DuplicateStore

__all__ = ["DEFAULT_THRESHOLDS", "DuplicateImage", "Group", "GroupCache", "rank_groups"]

# Thresholds kept at once: the default one and a few a person tries.
DEFAULT_THRESHOLDS = 4


class DuplicateImage(Struct, kw_only=True, frozen=True):
    sha256: str
    score: float  # its best similarity with another image of the group


@dataclass(frozen=True, slots=True)
class Group:
    """One group: its smallest image id, its best score, and all its images, most alike
    first (then by id)."""

    id: str
    score: float
    images: tuple[DuplicateImage, ...]


def rank_groups(pairs: Iterable[tuple[str, str, float]]) -> tuple[Group, ...]:
    """The groups the pairs ``(a, b, score)`` link, most alike first, then by id (a stable
    order for paging)."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    best: dict[str, float] = {}
    for a, b, score in pairs:
        parent[root(a)] = root(b)
        best[a] = max(best.get(a, 0.0), score)
        best[b] = max(best.get(b, 0.0), score)
    members: dict[str, list[str]] = {}
    for image in best:
        members.setdefault(root(image), []).append(image)
    groups = []
    for images in members.values():
        images.sort(key=lambda i: (-best[i], i))
        groups.append(
            Group(
                id=min(images),
                score=best[images[0]],
                images=tuple(DuplicateImage(sha256=i, score=round(best[i], 6)) for i in images),
            )
        )
    groups.sort(key=lambda g: (-g.score, g.id))
    return tuple(groups)


@dataclass(frozen=True, slots=True)
class _Entry:
    revision: int
    groups: tuple[Group, ...]


class GroupCache:
    """The ranked groups per threshold, for the catalog's current duplicates revision; at
    most `size` thresholds (least recently listed dropped first). Blocking; thread-safe."""

    def __init__(self, catalog: DuplicateStore, size: int = DEFAULT_THRESHOLDS) -> None:
        self._catalog = catalog
        self._size = size
        self._entries: OrderedDict[float, _Entry] = OrderedDict()
        self._lock = threading.Lock()  # guards `_entries` and the counters
        # One computation at a time: a burst of listings after a change waits for the
        # first one's groups instead of every io thread grouping the same pairs.
        self._computing = threading.Lock()
        self.hits = 0
        self.misses = 0

    def groups(self, threshold: float) -> tuple[Group, ...]:
        """The groups of live images linked by pairs at least `threshold` alike."""
        if (found := self._cached(threshold, self._catalog.duplicates_revision())) is not None:
            return found
        with self._computing:
            # Read before the pairs: a write landing in between makes the entry look
            # older than it is (recomputed next time), never newer (stale).
            revision = self._catalog.duplicates_revision()
            if (found := self._cached(threshold, revision)) is not None:
                return found
            groups = rank_groups(self._catalog.duplicate_pairs(threshold))
            with self._lock:
                self.misses += 1
                self._entries[threshold] = _Entry(revision, groups)
                self._entries.move_to_end(threshold)
                while len(self._entries) > self._size:
                    self._entries.popitem(last=False)
            return groups

    def _cached(self, threshold: float, revision: int) -> tuple[Group, ...] | None:
        with self._lock:
            entry = self._entries.get(threshold)
            if entry is None or entry.revision != revision:
                return None
            self._entries.move_to_end(threshold)
            self.hits += 1
            return entry.groups
