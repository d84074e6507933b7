"""Per-image locks: writes to one image (store, describe, delete) never interleave."""

from __future__ import annotations

import threading

__all__ = ["ImageLocks"]


class ImageLocks:
    """A fixed set of locks striped by image id (bounded memory, rare false sharing)."""

    def __init__(self, stripes: int = 64) -> None:
        self._locks = [threading.Lock() for _ in range(stripes)]

    def of(self, id_: str) -> threading.Lock:
        return self._locks[int(id_[:4], 16) % len(self._locks)]
