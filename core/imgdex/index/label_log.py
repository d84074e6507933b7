"""Which labels a label map's recent versions changed.

What is derived from a label map at one version (the labels a filter allows, kept by
`imgdex.filter_sets`) can be brought forward to a later version through the labels
changed since: mapped (new vectors, or a label mapped again), marked dead or alive
again. Vectors are added all the time while a library is being described (each caption
embedded is a label), and without this every such add would retire every kept set.
The log holds the last few thousand labels changed; a reload of the whole map (or a
version too old) answers None: derive anew.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.typing as npt

__all__ = ["LabelLog"]

_KEPT = 4096  # labels; the oldest versions go first


class LabelLog:
    """``version -> labels`` of a label map's last changes. Not thread-safe: the map
    calls it under its writers' lock."""

    def __init__(self, kept: int = _KEPT) -> None:
        self._kept = kept
        self._entries: deque[tuple[int, npt.NDArray[np.int64]]] = deque()
        self._held = 0
        self._since = 0  # the oldest version from which every change is in the log

    def record(self, version: int, labels: npt.NDArray[np.int64]) -> None:
        """`labels` changed in making `version` (one more than the last recorded)."""
        self._entries.append((version, labels))
        self._held += len(labels)
        while self._held > self._kept and self._entries:
            gone, dropped = self._entries.popleft()
            self._held -= len(dropped)
            self._since = gone

    def reset(self, version: int) -> None:
        """Everything changed in making `version` (the whole map loaded)."""
        self._entries.clear()
        self._held = 0
        self._since = version

    def since(self, version: int) -> npt.NDArray[np.int64] | None:
        """The labels changed after `version` (unique, ascending), or None when the log
        no longer reaches back to it."""
        if version < self._since:
            return None
        changed = [labels for at, labels in self._entries if at > version]
        if not changed:
            return np.empty(0, np.int64)
        return np.unique(np.concatenate(changed))
