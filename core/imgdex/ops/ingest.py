"""Ingest: store an image once per content (decode, thumbnail, files, catalog row and
its jobs in one transaction), then embed it in every enabled image index at once.

Order of writes, so that a kill at any point loses nothing acknowledged and leaves
nothing half-visible: the files are whole in the blob store before the catalog row that
points at them is committed (see docs/architecture.md, "Writes and crashes").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imgdex.blobs import BlobStore
from imgdex.catalog import Catalog, ImageRow
from imgdex.config import ImagesConfig
from imgdex.errors import BadRequest, Conflict
from imgdex.ids import image_id, sha256_hex
from imgdex.imaging import DecodedImage, decode_image, make_thumbnail
from imgdex.models import EmbedderSlot
from imgdex.ops.fanout import fan_out
from imgdex.ops.images import row_of
from imgdex.ops.locks import ImageLocks
from imgdex.ops.vectors import VectorWriter
from imgdex.photos import facts_of
from imgdex.pools import Pools, Wakeup
from imgdex.registry import IMAGE_METHOD, Registry
from imgdex.schemas import EmbeddingError, EmbeddingInfo, UploadResponse
from imgdex.staging import Spooling, StagedFile

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["Ingest", "original_name"]

log = logging.getLogger(__name__)


def original_name(name: str | None) -> str | None:
    """A client's file name made safe to keep and to send back: no directories (a
    browser may send ``C:\\fakepath\\x.jpg``), no control characters, 255 at most."""
    if not name:
        return None
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    clean = "".join(c for c in base if c.isprintable()).strip()[:255]
    return clean if clean not in ("", ".", "..") else None


@dataclass(frozen=True)
class _Stored:
    row: ImageRow
    decoded: DecodedImage | None  # None for a duplicate (nothing new to embed)
    duplicate: bool
    restored: bool


class Ingest:
    def __init__(
        self,
        images: ImagesConfig,
        catalog: Catalog,
        blobs: BlobStore,
        registry: Registry,
        vectors: VectorWriter,
        pools: Pools,
        locks: ImageLocks,
        wakeup: Wakeup,
        spooling: Spooling,
    ) -> None:
        self.spooling = spooling  # how upload bodies are read (large ones staged)
        self._images = images
        self._catalog = catalog
        self._blobs = blobs
        self._registry = registry
        self._vectors = vectors
        self._pools = pools
        self._locks = locks
        self._wakeup = wakeup

    async def ingest(
        self,
        data: bytes | bytearray | StagedFile,
        source: str | None = None,
        name: str | None = None,
        creator: str | None = None,
    ) -> UploadResponse:
        """Store an image (once per content) and embed it with every image embedder;
        `name` is the file's own name, kept for downloads (the first one uploaded wins),
        and `creator` the user who uploaded it (the first uploader is kept).

        A `bytearray` (an upload read into a buffer) is copied to `bytes` in the worker
        thread, not on the event loop; a `StagedFile` (a large upload, already hashed) is
        decoded from disk and renamed into the store."""
        stored = await self._pools.run_io(self._store_image, data, source, original_name(name))
        row = stored.row
        if creator is not None:
            await self._pools.run_io(self._catalog.users.set_image_creator, row.sha256, creator)
        embeddings: list[EmbeddingInfo] = []
        errors: list[EmbeddingError] = []
        if stored.decoded is not None:
            image = stored.decoded.image
            slots = self._registry.embedder_slots(stores="image")
            embeddings, errors = await fan_out(
                self._pools,
                slots,
                lambda slot: self._embed(slot, row.sha256, image),
                self._wakeup.ring,
            )
            row = await self._pools.run_io(self._settle, row.sha256)
            if self._registry.describer_slots():
                self._wakeup.ring()  # a new image for the captioners
        message = "uploaded"
        if stored.restored:
            message = "restored (the image had been deleted)"
        elif stored.duplicate:
            message = "already stored (duplicate)"
        return UploadResponse(
            message=message,
            sha256=row.sha256,
            width=row.width,
            height=row.height,
            file_size=row.file_size,
            format=row.format,
            status=row.status,
            duplicate=stored.duplicate,
            restored=stored.restored,
            embeddings=embeddings,
            errors=errors,
        )

    def _embed(self, slot: EmbedderSlot, id_: str, image: Image) -> None:
        vector = slot.embed_images([image])[0]
        self._vectors.store(slot, [(id_, IMAGE_METHOD, vector, None)])

    def _settle(self, id_: str) -> ImageRow:
        """Make a new image ready if its image vectors are all there; its row after."""
        self._catalog.settle(self._registry.settle_targets(), [id_])
        return row_of(self._catalog, id_)

    def _thumbnail(self, decoded: DecodedImage) -> bytes:
        return make_thumbnail(decoded, self._images.thumbnail_size, self._images.thumbnail_quality)

    def _store_image(
        self, body: bytes | bytearray | StagedFile, source: str | None, name: str | None = None
    ) -> _Stored:
        data: bytes | Path
        if isinstance(body, StagedFile):
            data, full, size = body.path, body.sha256, body.size
        else:
            data = bytes(body)
            full, size = sha256_hex(data), len(data)
        if not size:
            raise BadRequest("the uploaded file is empty", code="empty_file")
        id_ = image_id(full)
        catalog = self._catalog
        with self._locks.of(id_):
            row = catalog.get_image(id_)
            if row is not None:
                return self._existing(row, full, data)
            decoded = decode_image(data, self._images)
            thumbnail = self._thumbnail(decoded)
            filename = f"image.{decoded.extension}"
            facts = facts_of(data)  # organise (issue 14): EXIF/XMP, never fails an upload
            self._blobs.put_image(id_, filename, data, thumbnail)
            with catalog.transaction() as db:
                catalog.insert_image(
                    db,
                    id_=id_,
                    full=full,
                    width=decoded.width,
                    height=decoded.height,
                    file_size=size,
                    fmt=decoded.format,
                    filename=filename,
                    source=source,
                    status="pending",
                    original_name=name,
                )
                catalog.images.set_facts(db, id_, facts)  # organise (issue 14)
                self._registry.queue_image_jobs(db, id_)
            return _Stored(
                row=row_of(catalog, id_), decoded=decoded, duplicate=False, restored=False
            )

    def _existing(self, row: ImageRow, full: str, data: bytes | Path) -> _Stored:
        if row.sha256_full != full:
            log.error(
                "SHA-256 collision on id %s: stored %s, uploaded %s; upload rejected",
                row.sha256,
                row.sha256_full,
                full,
            )
            raise Conflict(
                f"image id {row.sha256} is taken by a different file (SHA-256 prefix "
                "collision); the upload was rejected and logged",
                code="hash_collision",
            )
        catalog = self._catalog
        restored = False
        if not self._blobs.has_image(row.sha256, row.filename):
            # Files lost (disk trouble, manual deletion): the same bytes repair them.
            decoded = decode_image(data, self._images)
            self._blobs.put_image(row.sha256, row.filename, data, self._thumbnail(decoded))
            if row.status == "failed":
                # Its jobs failed on the lost file: they get fresh attempts.
                catalog.retry_failed(image=row.sha256)
                catalog.set_status(row.sha256, "pending")
                self._wakeup.ring()
        if row.is_deleted:
            with catalog.transaction() as db:
                catalog.set_deleted(db, row.sha256, False)
            self._vectors.unhide(catalog.vector_entries_of(None, row.sha256))
            restored = True
            # Models enabled while it was deleted have not seen it.
            self._registry.queue_backfill(row.sha256)
            self._wakeup.ring()
        return _Stored(
            row=row_of(catalog, row.sha256), decoded=None, duplicate=True, restored=restored
        )
