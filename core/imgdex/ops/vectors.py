"""Vector writes: a vector's file, then its catalog entry (finishing its job), then the
in-memory index; and hiding or showing entries in the open indexes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from imgdex.blobs import BlobStore
from imgdex.catalog import Catalog, VectorEntry
from imgdex.index import IndexManager, ManagedIndex
from imgdex.index.labels import Key
from imgdex.models import EmbedderSlot

__all__ = ["VectorItem", "VectorWriter"]

# (image, method, vector, embedded description text or None for an image vector)
VectorItem = tuple[str, str, npt.NDArray[np.float32], str | None]


class VectorWriter:
    def __init__(self, catalog: Catalog, blobs: BlobStore, indexes: IndexManager) -> None:
        self._catalog = catalog
        self._blobs = blobs
        self._indexes = indexes

    def store(self, slot: EmbedderSlot, items: Sequence[VectorItem]) -> list[int]:
        """Persist the items of one index; returns the new entry ids.

        An entry whose description changed meanwhile is not written (`content` is the
        text that was embedded)."""
        managed = slot.ready_index()
        embedder = slot.provider
        # An item whose image was hard-deleted meanwhile has nowhere to go: skip it.
        items = [
            item
            for item in items
            if self._blobs.put_vector(item[0], managed.name, item[1], item[2])
        ]
        ids: list[int] = []
        vectors: list[npt.NDArray[np.float32]] = []
        keys: list[Key] = []
        catalog = self._catalog
        with catalog.transaction() as db:
            sizes = catalog.image_sizes(db, (item[0] for item in items))
            for image, method, vector, content in items:
                id_ = catalog.add_vector_entry(
                    db, image, method, embedder.model, embedder.version, managed.name, content
                )
                if id_ is not None:
                    ids.append(id_)
                    vectors.append(vector)
                    keys.append((image, method, *sizes[image]))
                catalog.finish_vector_job(db, managed.name, image, method)
        if ids:
            managed.add(ids, np.stack(vectors), keys)
        return ids

    def hide(self, entries: Iterable[VectorEntry]) -> None:
        for managed, ids in self._by_index(entries):
            managed.hide(ids)

    def unhide(self, entries: Iterable[VectorEntry]) -> None:
        for managed, ids in self._by_index(entries):
            managed.unhide(ids)

    def _by_index(self, entries: Iterable[VectorEntry]) -> Iterable[tuple[ManagedIndex, list[int]]]:
        by_index: dict[str, list[int]] = defaultdict(list)
        for entry in entries:
            by_index[entry.index_name].append(entry.id)
        for name, ids in by_index.items():
            # An index that is not open catches up when it is opened (reconcile).
            if (managed := self._indexes.get(name)) is not None:
                yield managed, ids
