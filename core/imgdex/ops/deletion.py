"""Deleting images: soft (hidden, restorable by uploading again) or hard (files and rows
gone for good). Who may hard-delete is the API's decision, not this module's."""

from __future__ import annotations

from imgdex.blobs import BlobStore
from imgdex.catalog import Catalog
from imgdex.ids import check_id
from imgdex.ops.images import row_of
from imgdex.ops.locks import ImageLocks
from imgdex.ops.vectors import VectorWriter
from imgdex.pools import Pools
from imgdex.schemas import DeleteResponse

__all__ = ["Deletion"]


class Deletion:
    def __init__(
        self,
        catalog: Catalog,
        blobs: BlobStore,
        vectors: VectorWriter,
        pools: Pools,
        locks: ImageLocks,
    ) -> None:
        self._catalog = catalog
        self._blobs = blobs
        self._vectors = vectors
        self._pools = pools
        self._locks = locks

    async def delete(self, id_: str, *, hard: bool) -> DeleteResponse:
        await self._pools.run_io(self.delete_now, check_id(id_), hard)
        message = "deleted permanently" if hard else "deleted (restorable by uploading again)"
        return DeleteResponse(message=message, sha256=id_, hard=hard)

    def delete_now(self, id_: str, hard: bool) -> None:
        """The blocking delete (in a worker thread)."""
        catalog = self._catalog
        with self._locks.of(id_):
            row = row_of(catalog, id_)
            entries = catalog.vector_entries_of(None, id_)
            if hard:
                # Files go to the trash first: if we are killed before the rows are gone,
                # start-up finishes the deletion instead of resurrecting the image.
                self._blobs.trash_image(id_)
                with catalog.transaction() as db:
                    catalog.delete_image_rows(db, id_)
                self._vectors.hide(entries)
                self._blobs.empty_trash(id_)
            elif not row.is_deleted:
                with catalog.transaction() as db:
                    catalog.set_deleted(db, id_, True)
                self._vectors.hide(entries)
