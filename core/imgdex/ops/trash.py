"""The trash (organise, issue 14): restoring a soft-deleted image, and emptying images
that have been in the trash longer than ``storage.trash_days``."""

from __future__ import annotations

import contextlib
import datetime as dt

from imgdex.blobs import BlobStore
from imgdex.catalog import Catalog
from imgdex.errors import Conflict, NotFound
from imgdex.ids import check_id
from imgdex.ops.deletion import Deletion
from imgdex.ops.images import ImageReader, row_of
from imgdex.ops.locks import ImageLocks
from imgdex.ops.vectors import VectorWriter
from imgdex.pools import Pools, Wakeup
from imgdex.registry import Registry
from imgdex.schemas import ImageOut

__all__ = ["Trash"]


class Trash:
    def __init__(
        self,
        catalog: Catalog,
        blobs: BlobStore,
        registry: Registry,
        vectors: VectorWriter,
        deletion: Deletion,
        images: ImageReader,
        pools: Pools,
        locks: ImageLocks,
        wakeup: Wakeup,
    ) -> None:
        self._catalog = catalog
        self._blobs = blobs
        self._registry = registry
        self._vectors = vectors
        self._deletion = deletion
        self._images = images
        self._pools = pools
        self._locks = locks
        self._wakeup = wakeup

    async def restore(self, id_: str) -> ImageOut:
        """Bring a soft-deleted image back with its descriptions, tags and vectors."""
        await self._pools.run_io(self._restore, check_id(id_))
        self._wakeup.ring()
        return await self._images.get_image(id_)

    def _restore(self, id_: str) -> None:
        catalog = self._catalog
        with self._locks.of(id_):
            row = row_of(catalog, id_)
            if not row.is_deleted:
                raise Conflict(f"image {id_} is not in the trash", code="not_deleted")
            if not self._blobs.has_image(id_, row.filename):
                raise NotFound(
                    f"the file of image {id_} is missing on disk; upload it again to restore",
                    code="file_missing",
                )
            with catalog.transaction() as db:
                catalog.set_deleted(db, id_, False)
            self._vectors.unhide(catalog.vector_entries_of(None, id_))
            # Models enabled while it was in the trash have not seen it.
            self._registry.queue_backfill(id_)

    def purge(self, older_than_days: float, limit: int = 1000) -> int:
        """Hard-delete images that have been in the trash longer than the given days
        (blocking: in a worker thread)."""
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=older_than_days)
        expired = self._catalog.images.expired_trash(cutoff.strftime("%Y-%m-%d %H:%M:%S"), limit)
        for id_ in expired:
            with contextlib.suppress(NotFound):
                self._deletion.delete_now(id_, hard=True)
        return len(expired)
