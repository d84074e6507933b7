"""Index upkeep an admin asks for: compact (rebuild) an index, remove an unused one."""

from __future__ import annotations

import msgspec

from imgdex.blobs import BlobStore
from imgdex.errors import NotFound
from imgdex.ids import check_name
from imgdex.index import IndexManager
from imgdex.pools import Pools
from imgdex.registry import Registry

__all__ = ["IndexAdmin", "Rebuilt", "Removed"]


class Rebuilt(msgspec.Struct, kw_only=True, frozen=True):
    index: str
    before: int  # entries in the graph before (deleted ones included)
    after: int


class Removed(msgspec.Struct, kw_only=True, frozen=True):
    index: str
    removed_vectors: int


class IndexAdmin:
    def __init__(
        self, registry: Registry, indexes: IndexManager, blobs: BlobStore, pools: Pools
    ) -> None:
        self._registry = registry
        self._indexes = indexes
        self._blobs = blobs
        self._pools = pools

    async def rebuild(self, name: str) -> Rebuilt:
        """Rebuild from the stored vectors and swap in atomically; searches keep working."""
        check_name(name, "index name")
        slot = self._registry.embedders.get(name)
        if slot is None:
            raise NotFound(f"unknown index {name!r}", code="unknown_index")
        await self._pools.run_model(slot.ensure_loaded)
        result = await self._pools.run_io(self._indexes.rebuild, name)
        return Rebuilt(index=name, **result)

    async def remove(self, name: str) -> Removed:
        """Remove an index that no enabled plugin uses; its vector files go in the
        background."""
        check_name(name, "index name")  # it becomes a path: never '..' or a separator
        removed = await self._pools.run_io(self._registry.forget_index, name)
        self._pools.run_in_background(self._blobs.remove_index_vectors, name)
        return Removed(index=name, removed_vectors=removed)
