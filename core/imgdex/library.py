"""The library: storing images, descriptions and vectors, and deleting them.

`Library` owns the data directory (storage, catalog, vector indexes) and the model
slots. Its public coroutines are what the API calls; the blocking work behind them runs
in two thread pools (``io`` for hashing, decoding, SQLite and index writes; ``models`` for
inference), never on the event loop. Fan-out across models happens here, concurrently.

Order of writes, so that a kill at any point loses nothing acknowledged and leaves
nothing half-visible: files are complete on disk (temp + rename) before the catalog row
that points at them is committed; a vector's ``.npy`` is written before its catalog
entry, which is committed before the vector enters the index (a cache, rebuilt from the
``.npy`` files when behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt

from imgdex import datalock
from imgdex.budget import UploadBudget
from imgdex.catalog import Catalog, Connection, ImageRow, VectorEntry, vector_job_kind
from imgdex.catalog.images import Deleted
from imgdex.config import Config
from imgdex.errors import BadRequest, Conflict, ImgdexError, NotFound, reason_of
from imgdex.filters import ImageFilters
from imgdex.imaging import DecodedImage, decode_image, make_thumbnail
from imgdex.index import IndexManager
from imgdex.index.labels import Key
from imgdex.memory import tune_allocator
from imgdex.models import DescriberSlot, EmbedderSlot
from imgdex.photos import facts_of, image_out
from imgdex.plugins import PluginHost, PluginRecord
from imgdex.schemas import (
    DeleteResponse,
    DescriptionOut,
    DescriptionResponse,
    EmbeddingError,
    EmbeddingInfo,
    ImageListResponse,
    ImageOut,
    UploadResponse,
)
from imgdex.services import ServiceManager
from imgdex.staging import Spooling, StagedFile
from imgdex.status import (
    IndexStatus,
    PluginInfo,
    Progress,
    Retry,
    hide_model_path,
    index_status,
    model_name,
    orphan_status,
    plugin_infos,
)
from imgdex.storage import Storage, check_id, check_name, image_id, make_private, sha256_hex
from imgdex.upgrades import UpgradeState, plan_upgrades

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["Library", "OpenedFile"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

IMAGE_METHOD = "image"


_READ_WHOLE = 1 << 20  # files up to this size are read in one go (thumbnails, most photos)


@dataclass(frozen=True)
class OpenedFile:
    """A stored file opened for a reply: its bytes (`data`) when small, else the open
    `file`, which whoever sends it closes."""

    row: ImageRow
    size: int
    data: bytes | None = None
    file: BinaryIO | None = None

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


@dataclass(frozen=True)
class _Stored:
    row: ImageRow
    decoded: DecodedImage | None  # None for a duplicate (nothing new to embed)
    duplicate: bool
    restored: bool


class Library:
    def __init__(self, config: Config, host: PluginHost) -> None:
        tune_allocator()  # before this library's thread pools create malloc arenas
        self.config = config
        self.host = host
        # One writer per data directory, for as long as this library is open.
        self._data_lock = datalock.acquire(config.data_path)
        try:
            self._open(config, host)
        except BaseException:
            self._data_lock.release()
            raise

    def _open(self, config: Config, host: PluginHost) -> None:
        data = config.data_path
        make_private(data, config.storage)
        self.storage = Storage(data / "storage")
        self.catalog = Catalog(data / "imgdex.db")
        backend = host.backend(config.index.backend)
        backend.configure(config.index)
        self.indexes = IndexManager(data / "vector_index", backend, self.catalog, self.storage)
        retry = config.worker.retry_load_after
        # Model services (imgdex.services): an index whose plugin is named under `services:`
        # is routed across those providers; every other index keeps its in-process slot.
        self.services = ServiceManager(config, self.indexes, lambda: self.on_work())
        self.embedders: dict[str, EmbedderSlot] = {}
        for record, embedder in host.embedders():
            if (other := self.embedders.get(embedder.index_name)) is not None:
                record.error = (
                    f"index {embedder.index_name} is already provided by plugin "
                    f"{other.plugin.name}; this one is ignored"
                )
                log.error("plugin %s: %s", record.name, record.error)
                continue
            self.embedders[embedder.index_name] = self.services.embedder_slot(
                record, embedder, retry, self.indexes.open_for
            )
        self.describers: dict[str, DescriberSlot] = {}
        for record, describer in host.describers():
            if describer.method in self.describers or describer.method == IMAGE_METHOD:
                record.error = f"describer method {describer.method!r} is taken; ignored"
                continue
            self.describers[describer.method] = DescriberSlot(record, describer, retry)
        self._plugin_states = self.catalog.plugin_states()
        # Model upgrades: an old index answers for its family while a new one builds.
        self.upgrades = UpgradeState()
        plan_upgrades(self)
        # Hashing, decoding, SQLite and file writes: more threads than about twice the
        # cores only contend for the GIL (docs/benchmarks.md, concurrency item 7).
        io_threads = max(4, 2 * (os.cpu_count() or 2))
        self._io = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="imgdex-io")
        # Request-path calls plus the background workers' batches (worker.concurrency).
        concurrency = config.worker.concurrency
        workers = len(self.embedders) + len(self.describers)
        workers += sum(concurrency.get(record.name, 1) for record in host.records.values())
        self._models = ThreadPoolExecutor(
            max_workers=max(4, workers), thread_name_prefix="imgdex-model"
        )
        self._image_locks = [threading.Lock() for _ in range(64)]
        server = config.server
        self.uploads = UploadBudget(server.uploads_in_flight_bytes, server.upload_wait)
        # How upload bodies are read: large ones staged next to the library's files.
        self.spooling = Spooling(self.storage.tmp, server.upload_spool_bytes, self.uploads)
        # Set by the background workers: called when there are new jobs for them.
        self.on_work: Callable[[], None] = lambda: None

    # --- threads ------------------------------------------------------------------

    async def run_io(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, functools.partial(fn, *args, **kwargs))

    async def run_model(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._models, functools.partial(fn, *args, **kwargs))

    def run_in_background(self, fn: Callable[..., object], *args: object) -> None:
        """Run blocking upkeep in the io pool without waiting for it; errors are logged."""

        def guarded() -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("background task %s failed", getattr(fn, "__name__", fn))

        self._io.submit(guarded)

    def close(self) -> None:
        self._io.shutdown(wait=True, cancel_futures=True)
        self._models.shutdown(wait=True, cancel_futures=True)
        self.services.close()
        slots: list[EmbedderSlot | DescriberSlot] = [
            *self.embedders.values(),
            *self.describers.values(),
        ]
        for slot in slots:
            self.release(slot)
        self.indexes.close()
        self.catalog.close()
        self._data_lock.release()

    @staticmethod
    def release(slot: EmbedderSlot | DescriberSlot) -> None:
        """Let a provider that holds clients or sessions (an API captioner) close them."""
        close = getattr(slot.provider, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                log.exception("closing %s failed", slot.name)

    def _lock_for(self, id_: str) -> threading.Lock:
        return self._image_locks[int(id_[:4], 16) % len(self._image_locks)]

    # --- plugin state -------------------------------------------------------------

    def plugin_enabled(self, record: PluginRecord) -> bool:
        if record.state != "loaded":
            return False
        return self._plugin_states.get(record.name, record.configured_enabled)

    def set_plugin_enabled(self, name: str, enabled: bool) -> PluginRecord:
        record = self.host.records.get(name)
        if record is None:
            raise NotFound(f"plugin {name!r} is not installed", code="unknown_plugin")
        if record.state != "loaded":
            raise Conflict(f"plugin {name!r} failed to load: {record.error}", code="plugin_failed")
        self.catalog.set_plugin_state(name, enabled)
        self._plugin_states[name] = enabled
        if enabled:
            self.plan_all()  # backfill whatever it missed while disabled
            self.on_work()
        # The set of image indexes an image must be in to be ready has changed.
        self.catalog.resettle(self.settle_targets())
        return record

    def embedder_slots(
        self, *, stores: str | None = None, query: str | None = None
    ) -> list[EmbedderSlot]:
        """Enabled embedders, optionally those that store or can query a modality.

        All of them receive writes. With `query`, only those that answer searches: while
        a new model version builds its index, the old index answers for its family (or
        the new one, partial, when the old model cannot be loaded).
        """
        slots = [
            slot
            for name, slot in sorted(self.embedders.items())
            if self.plugin_enabled(slot.plugin)
            and (stores is None or slot.provider.stores == stores)
            and (query is None or query in slot.provider.query_modalities)
        ]
        if query is None:
            return slots
        answering = []
        for slot in slots:
            if (old := self.upgrades.predecessor(slot.name)) is not None:
                stand_in = self.embedders.get(old)
                if stand_in is not None and stand_in.available():
                    continue
            elif self.upgrades.successor(slot.name) is not None and not slot.available():
                continue
            answering.append(slot)
        return answering

    def settle_targets(self) -> list[str]:
        """The image indexes whose vectors make an image `ready` (those that answer)."""
        return [
            slot.name
            for slot in self.embedder_slots(stores="image")
            if self.upgrades.predecessor(slot.name) is None
        ]

    def describer_slots(self) -> list[DescriberSlot]:
        return [s for _, s in sorted(self.describers.items()) if self.plugin_enabled(s.plugin)]

    def plan_all(self, image: str | None = None) -> int:
        """Queue jobs for everything an enabled model should have done and has not (a
        backfill; with `image`, for that image only). Idempotent."""
        added = 0
        for slot in self.embedder_slots():
            added += self.catalog.plan(vector_job_kind(slot.provider.stores), slot.name, image)
        for describer in self.describer_slots():
            added += self.catalog.plan("describe", describer.provider.method, image)
        if added:
            log.info("queued %d background jobs", added)
        return added

    # --- vectors ------------------------------------------------------------------

    def store_vectors(
        self,
        slot: EmbedderSlot,
        items: Sequence[tuple[str, str, npt.NDArray[np.float32], str | None]],
    ) -> list[int]:
        """Persist ``(image, method, vector, content)`` items of one index; returns new ids.

        `content` is the embedded description text (None for image vectors): an entry
        whose description changed meanwhile is not written.
        """
        managed = slot.ready_index()
        embedder = slot.provider
        # An item whose image was hard-deleted meanwhile has no directory left: skip it.
        items = [
            item
            for item in items
            if self.storage.put_vector(item[0], managed.name, item[1], item[2])
        ]
        ids: list[int] = []
        vectors: list[npt.NDArray[np.float32]] = []
        keys: list[Key] = []
        with self.catalog.transaction() as db:
            sizes = self.catalog.image_sizes(db, (item[0] for item in items))
            for image, method, vector, content in items:
                id_ = self.catalog.add_vector_entry(
                    db, image, method, embedder.model, embedder.version, managed.name, content
                )
                if id_ is not None:
                    ids.append(id_)
                    vectors.append(vector)
                    keys.append((image, method, *sizes[image]))
                self.catalog.finish_vector_job(db, managed.name, image, method)
        if ids:
            managed.add(ids, np.stack(vectors), keys)
        return ids

    def hide_entries(self, entries: Iterable[VectorEntry]) -> None:
        by_index: dict[str, list[int]] = defaultdict(list)
        for entry in entries:
            by_index[entry.index_name].append(entry.id)
        for name, ids in by_index.items():
            # An index that is not open catches up when it is opened (reconcile).
            if (managed := self.indexes.get(name)) is not None:
                managed.hide(ids)

    def unhide_entries(self, entries: Iterable[VectorEntry]) -> None:
        by_index: dict[str, list[int]] = defaultdict(list)
        for entry in entries:
            by_index[entry.index_name].append(entry.id)
        for name, ids in by_index.items():
            if (managed := self.indexes.get(name)) is not None:
                managed.unhide(ids)

    def _embed_image(self, slot: EmbedderSlot, id_: str, image: Image) -> None:
        vector = slot.embed_images([image])[0]
        self.store_vectors(slot, [(id_, IMAGE_METHOD, vector, None)])

    def _embed_description(self, slot: EmbedderSlot, id_: str, method: str, content: str) -> None:
        vector = slot.embed_texts([content], query=False)[0]
        self.store_vectors(slot, [(id_, method, vector, content)])

    async def _fan_out(
        self, slots: list[EmbedderSlot], fn: Callable[[EmbedderSlot], None]
    ) -> tuple[list[EmbeddingInfo], list[EmbeddingError]]:
        def call(slot: EmbedderSlot) -> None:
            # Never wait for a model that is loading: what it misses is filled in by the
            # enricher once it is ready (the image stays `pending` until then).
            slot.check_not_loading()
            fn(slot)

        outcomes = await asyncio.gather(
            *(self.run_model(call, slot) for slot in slots), return_exceptions=True
        )
        done, failed = [], []
        for slot, outcome in zip(slots, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, ImgdexError):
                    log.error("%s: %s", slot.name, outcome, exc_info=outcome)
                message = outcome.detail if isinstance(outcome, ImgdexError) else str(outcome)
                message = reason_of(message, slot.name)  # `index` names it already
                failed.append(
                    EmbeddingError(
                        index=slot.name,
                        model=model_name(slot.provider.model),
                        error=hide_model_path(message, slot.provider.model) or message,
                    )
                )
            else:
                done.append(
                    EmbeddingInfo(
                        model=model_name(slot.provider.model),
                        index=slot.name,
                        dimension=slot.dimension or 0,
                    )
                )
        if failed:
            self.on_work()  # the enricher retries what failed
        return done, failed

    # --- images -------------------------------------------------------------------

    async def ingest(
        self,
        data: bytes | bytearray | StagedFile,
        source: str | None = None,
        name: str | None = None,
    ) -> UploadResponse:
        """Store an image (once per content) and embed it with every image embedder;
        `name` is the file's own name, kept for downloads (the first one uploaded wins).

        A `bytearray` (an upload read into a buffer) is copied to `bytes` in the worker
        thread, not on the event loop; a `StagedFile` (a large upload, already hashed) is
        decoded from disk and renamed into the library."""
        stored = await self.run_io(self._store_image, data, source, original_name(name))
        row = stored.row
        embeddings: list[EmbeddingInfo] = []
        errors: list[EmbeddingError] = []
        if stored.decoded is not None:
            image = stored.decoded.image
            slots = self.embedder_slots(stores="image")
            embeddings, errors = await self._fan_out(
                slots, lambda slot: self._embed_image(slot, row.sha256, image)
            )
            row = await self.run_io(self._settle, row.sha256)
            if self.describer_slots():
                self.on_work()  # a new image for the captioners
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

    def queue_image_jobs(self, db: Connection, id_: str) -> None:
        """Queue a new image's work for every enabled model (in the caller's transaction)."""
        targets = [slot.name for slot in self.embedder_slots(stores="image")]
        self.catalog.queue_jobs(db, "embed_image", targets, id_, IMAGE_METHOD)
        for describer in self.describer_slots():
            method = describer.provider.method
            self.catalog.queue_jobs(db, "describe", [method], id_, method)

    def _settle(self, id_: str) -> ImageRow:
        """Make a new image ready if its image vectors are all there; its row after."""
        self.catalog.settle(self.settle_targets(), [id_])
        return self._get_row(id_)

    def _get_row(self, id_: str) -> ImageRow:
        row = self.catalog.get_image(check_id(id_))
        if row is None:
            raise NotFound(f"image {id_} not found", code="image_not_found")
        return row

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
        with self._lock_for(id_):
            row = self.catalog.get_image(id_)
            if row is not None:
                return self._existing(row, full, data)
            decoded = decode_image(data, self.config.images)
            thumbnail = make_thumbnail(
                decoded, self.config.images.thumbnail_size, self.config.images.thumbnail_quality
            )
            filename = f"image.{decoded.extension}"
            facts = facts_of(data)  # organise (issue 14): EXIF/XMP, never fails an upload
            self.storage.put_image(id_, filename, data, thumbnail)
            with self.catalog.transaction() as db:
                self.catalog.insert_image(
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
                self.catalog.images.set_facts(db, id_, facts)  # organise (issue 14)
                self.queue_image_jobs(db, id_)
            row = self.catalog.get_image(id_)
            assert row is not None
            return _Stored(row=row, decoded=decoded, duplicate=False, restored=False)

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
        restored = False
        original = self.storage.original(row.sha256, row.filename)
        if not original.is_file() or not self.storage.thumbnail(row.sha256).is_file():
            # Files lost (disk trouble, manual deletion): the same bytes repair them.
            decoded = decode_image(data, self.config.images)
            thumb = make_thumbnail(
                decoded, self.config.images.thumbnail_size, self.config.images.thumbnail_quality
            )
            self.storage.put_image(row.sha256, row.filename, data, thumb)
            if row.status == "failed":
                # Its jobs failed on the lost file: they get fresh attempts.
                self.catalog.retry_failed(image=row.sha256)
                self.catalog.set_status(row.sha256, "pending")
                self.on_work()
        if row.is_deleted:
            with self.catalog.transaction() as db:
                self.catalog.set_deleted(db, row.sha256, False)
            self.unhide_entries(self.catalog.vector_entries_of(None, row.sha256))
            restored = True
            # Models enabled while it was deleted have not seen it.
            self.plan_all(row.sha256)
            self.on_work()
        fresh = self.catalog.get_image(row.sha256)
        assert fresh is not None
        return _Stored(row=fresh, decoded=None, duplicate=True, restored=restored)

    async def get_image(self, id_: str) -> ImageOut:
        return await self.run_io(self._image_out, check_id(id_))

    def _image_out(self, id_: str) -> ImageOut:
        row = self._get_row(id_)
        return image_out(
            row,
            [_description_out(d) for d in self.catalog.get_descriptions(id_)],
            sorted(self.catalog.image_indexes(id_)),
            [t.tag for t in self.catalog.tags.tags_of(id_)],
        )

    # --- organise (issue 14): list with filters and sorting, restore from the trash ---

    async def list_images(
        self,
        *,
        offset: int,
        limit: int,
        status: str | None = None,
        source: str | None = None,
        include_deleted: bool = False,
        deleted: Deleted | None = None,
        filters: ImageFilters | None = None,
        sort: str = "created_at",
        order: Literal["asc", "desc"] = "desc",
    ) -> ImageListResponse:
        def read() -> ImageListResponse:
            rows, total = self.catalog.images.list_images(
                offset=offset,
                limit=limit,
                status=status,
                source=source,
                include_deleted=include_deleted,
                deleted=deleted,
                filters=filters,
                sort=sort,
                order=order,
            )
            tags = self.catalog.tags.tags_of_many(r.sha256 for r in rows)
            images = [image_out(r, tags=tags.get(r.sha256, ())) for r in rows]
            return ImageListResponse(images=images, total=total, offset=offset, limit=limit)

        return await self.run_io(read)

    async def restore(self, id_: str) -> ImageOut:
        """Bring a soft-deleted image back with its descriptions, tags and vectors."""
        return await self.run_io(self._restore, check_id(id_))

    def _restore(self, id_: str) -> ImageOut:
        with self._lock_for(id_):
            row = self._get_row(id_)
            if not row.is_deleted:
                raise Conflict(f"image {id_} is not in the trash", code="not_deleted")
            if not self.storage.original(id_, row.filename).is_file():
                raise NotFound(
                    f"the file of image {id_} is missing on disk; upload it again to restore",
                    code="file_missing",
                )
            with self.catalog.transaction() as db:
                self.catalog.set_deleted(db, id_, False)
            self.unhide_entries(self.catalog.vector_entries_of(None, id_))
            # Models enabled while it was in the trash have not seen it.
            self.plan_all(id_)
        self.on_work()
        return self._image_out(id_)

    def purge_trash(self, older_than_days: float, limit: int = 1000) -> int:
        """Hard-delete images that have been in the trash longer than the given days."""
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=older_than_days)
        expired = self.catalog.images.expired_trash(cutoff.strftime("%Y-%m-%d %H:%M:%S"), limit)
        for id_ in expired:
            with contextlib.suppress(NotFound):
                self._delete(id_, hard=True)
        return len(expired)

    # --- end organise -------------------------------------------------------------

    async def open_file(self, id_: str, kind: str) -> OpenedFile:
        """Open an image's original (``file``) or ``thumbnail`` for reading.

        The file is opened before anything is sent, and the reply reads from that open
        descriptor: a hard delete or re-upload that moves the directory away meanwhile
        cannot break a read in flight, and a file already gone is a 404."""
        return await self.run_io(self._open_file, check_id(id_), kind)

    def _open_file(self, id_: str, kind: str) -> OpenedFile:
        row = self._get_row(id_)
        if row.is_deleted:
            raise NotFound(f"image {id_} is deleted", code="image_deleted")
        path = (
            self.storage.original(id_, row.filename)
            if kind == "file"
            else self.storage.thumbnail(id_)
        )
        try:
            file = open(path, "rb")  # noqa: SIM115 - the reply closes it when sent
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(
                f"the {kind} of image {id_} is missing on disk", code="file_missing"
            ) from None
        size = os.fstat(file.fileno()).st_size
        if size > _READ_WHOLE:
            return OpenedFile(row=row, size=size, file=file)
        with file:
            data = file.read()
        return OpenedFile(row=row, size=len(data), data=data)

    async def delete(self, id_: str, *, hard: bool) -> DeleteResponse:
        await self.run_io(self._delete, check_id(id_), hard)
        message = "deleted permanently" if hard else "deleted (restorable by uploading again)"
        return DeleteResponse(message=message, sha256=id_, hard=hard)

    def _delete(self, id_: str, hard: bool) -> None:
        with self._lock_for(id_):
            row = self._get_row(id_)
            entries = self.catalog.vector_entries_of(None, id_)
            if hard:
                # Files go to the trash first: if we are killed before the rows are gone,
                # start-up finishes the deletion instead of resurrecting the image.
                self.storage.trash_image(id_)
                with self.catalog.transaction() as db:
                    self.catalog.delete_image_rows(db, id_)
                self.hide_entries(entries)
                self.storage.empty_trash(id_)
            elif not row.is_deleted:
                with self.catalog.transaction() as db:
                    self.catalog.set_deleted(db, id_, True)
                self.hide_entries(entries)

    # --- reports --------------------------------------------------------------------

    def model_states(self) -> dict[str, tuple[str, str | None]]:
        slots: list[EmbedderSlot | DescriberSlot] = [
            *self.embedders.values(),
            *self.describers.values(),
        ]
        return {slot.name: (slot.state, slot.error) for slot in slots}

    def model_retries(self) -> dict[str, Retry]:
        """When each failed model's next load attempt is due."""
        slots: list[EmbedderSlot | DescriberSlot] = [
            *self.embedders.values(),
            *self.describers.values(),
        ]
        return {
            s.name: (at, round(s.retry_in or 0.0, 1)) for s in slots if (at := s.next_attempt_at)
        }

    def progress(self) -> dict[str, Progress]:
        """Per enabled index and describer: items done, waiting and failed for good."""
        counts = self.catalog.index_counts()
        hidden = self.catalog.soft_deleted_counts()
        jobs = self.catalog.job_counts()
        out = {}
        for slot in self.embedder_slots():
            kind = vector_job_kind(slot.provider.stores)
            done = counts.get(slot.name, 0) - hidden.get(slot.name, 0)
            out[slot.name] = _progress(done, jobs.get((kind, slot.name), {}))
        for describer in self.describer_slots():
            method = describer.provider.method
            done = self.catalog.description_count(method)
            out[describer.name] = _progress(done, jobs.get(("describe", method), {}))
        return out

    def plugin_report(self) -> list[PluginInfo]:
        return plugin_infos(
            list(self.host.records.values()),
            enabled={r.name: self.plugin_enabled(r) for r in self.host.records.values()},
            counts=self.catalog.index_counts(),
            on_disk=self.indexes.on_disk(),
            model_states=self.model_states(),
            progress=self.progress(),
            roles=self.roles(),
            retries=self.model_retries(),
        )

    def index_report(self) -> list[IndexStatus]:
        counts = self.catalog.index_counts()
        on_disk = self.indexes.on_disk()
        states = self.model_states()
        progress = self.progress()
        roles = self.roles()
        retries = self.model_retries()
        embedders = self.embedders
        out = [
            index_status(
                slot.provider,
                plugin=slot.plugin.name,
                enabled=self.plugin_enabled(slot.plugin),
                count=counts.get(name, 0),
                meta=on_disk.get(name),
                state=states[name],
                progress=progress.get(name),
                role=roles.get(name, (None, None)),
                retry=retries.get(name),
            )
            for name, slot in sorted(embedders.items())
        ]
        out += [
            orphan_status(meta, counts.get(name, 0), roles.get(name, (None, None)))
            for name, meta in on_disk.items()
            if name not in embedders
        ]
        return out

    def roles(self) -> dict[str, tuple[str | None, str | None]]:
        """``{index: (role, note)}``: what each index does in a model upgrade."""
        out: dict[str, tuple[str | None, str | None]] = {}
        recorded = self.catalog.index_roles()
        active = {(r.family, r.plugin): name for name, r in recorded.items() if r.role == "active"}
        for name, r in recorded.items():
            role = r.role
            note = None
            if role == "building":
                old = self.upgrades.predecessor(name)
                note = self.upgrades.problems.get(name) or (
                    f"new model version filling up; {old} answers searches until it is complete"
                    if old
                    else None
                )
            elif role == "retired":
                now = active.get((r.family, r.plugin))
                note = f"replaced by {now}" if now else "replaced"
                note += f"; remove it with DELETE /api/admin/indexes/{name}"
            elif (new := self.upgrades.successor(name)) is not None:
                note = f"answers searches until {new} is complete"
            out[name] = (role, note)
        return out

    # --- descriptions ---------------------------------------------------------------

    async def add_description(self, id_: str, method: str, content: str) -> DescriptionResponse:
        """Store (or replace) a description and embed it with every text embedder."""
        check_id(id_)
        check_name(method, "description method")
        if method == IMAGE_METHOD:
            raise BadRequest(
                "the method name 'image' is reserved for image vectors", code="reserved_method"
            )
        content = content.strip()
        if not content:
            raise BadRequest("the description content is empty", code="empty_description")
        have, replaced = await self.run_io(self._put_description, id_, method, content)
        slots = [s for s in self.embedder_slots(stores="text") if s.name not in have]
        done, failed = await self._fan_out(
            slots, lambda slot: self._embed_description(slot, id_, method, content)
        )
        kept = [
            EmbeddingInfo(
                model=model_name(s.provider.model), index=s.name, dimension=s.dimension or 0
            )
            for s in self.embedder_slots(stores="text")
            if s.name in have
        ]
        embeddings = sorted(kept + done, key=lambda e: e.index)
        return DescriptionResponse(
            message="description added",
            sha256=id_,
            method=method,
            embeddings=embeddings,
            embedding_count=len(embeddings),
            errors=failed,
            replaced=replaced,
        )

    def _put_description(self, id_: str, method: str, content: str) -> tuple[set[str], bool]:
        """Write the description; returns the indexes that already hold its vector and
        whether a description of this method was there before."""
        with self._lock_for(id_):
            row = self._get_row(id_)
            if row.is_deleted:
                raise Conflict(
                    f"image {id_} is deleted; upload it again to restore it", code="image_deleted"
                )
            old = self.catalog.vector_entries_of(None, id_, method)
            before = self.catalog.get_description(id_, method)
            if before == content:
                return {e.index_name for e in old}, True
            self.storage.put_description(id_, method, content)
            with self.catalog.transaction() as db:
                self.catalog.upsert_description(db, id_, method, content)
                self.catalog.delete_vector_entries(db, [e.id for e in old])
                self.queue_description_jobs(db, id_, method)
            self.hide_entries(old)
            return set(), before is not None

    def queue_description_jobs(self, db: Connection, id_: str, method: str) -> None:
        """Queue a new or changed description for every enabled text embedder."""
        targets = [slot.name for slot in self.embedder_slots(stores="text")]
        self.catalog.queue_jobs(db, "embed_text", targets, id_, method)

    async def get_descriptions(self, id_: str) -> list[DescriptionOut]:
        def read() -> list[DescriptionOut]:
            self._get_row(id_)
            return [_description_out(d) for d in self.catalog.get_descriptions(id_)]

        return await self.run_io(read)

    async def delete_description(self, id_: str, method: str) -> None:
        check_id(id_)
        check_name(method, "description method")

        def delete() -> None:
            with self._lock_for(id_):
                self._get_row(id_)
                old = self.catalog.vector_entries_of(None, id_, method)
                with self.catalog.transaction() as db:
                    if not self.catalog.delete_description(db, id_, method):
                        raise NotFound(
                            f"image {id_} has no description {method!r}",
                            code="description_not_found",
                        )
                    self.catalog.delete_vector_entries(db, [e.id for e in old])
                self.hide_entries(old)
                self.storage.remove_description(id_, method)

        await self.run_io(delete)


def original_name(name: str | None) -> str | None:
    """A client's file name made safe to keep and to send back: no directories (a
    browser may send ``C:\\fakepath\\x.jpg``), no control characters, 255 at most."""
    if not name:
        return None
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    clean = "".join(c for c in base if c.isprintable()).strip()[:255]
    return clean if clean not in ("", ".", "..") else None


def _progress(done: int, jobs: dict[str, int]) -> Progress:
    queued, running, failed = (jobs.get(k, 0) for k in ("queued", "running", "failed"))
    return Progress(
        done=done,
        total=done + queued + running + failed,
        failed=failed,
        queued=queued,
        running=running,
    )


def _description_out(d: Any) -> DescriptionOut:
    return DescriptionOut(
        method=d.method,
        content=d.content,
        has_embedding=d.has_embedding,
        indexes=list(d.indexes),
        created_at=d.created_at,
        updated_at=d.updated_at,
    )
