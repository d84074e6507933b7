"""Background enrichment: fill in every vector and description that should exist.

The work is *derived* from the catalog rather than queued: an image with no vector in an
enabled image index, a description with no vector in an enabled text index, an image
with no description from an enabled describer. A crash therefore never loses work, a
newly installed or re-enabled plugin backfills the whole library by itself, and writes
are idempotent (catalog uniqueness plus guarded inserts). Items that fail on their own
(a stored file that no longer decodes) are skipped until restart and logged; a model
that is down is simply retried later (see `imgdex.models`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from imgdex.errors import ImgdexError, ServiceUnavailable
from imgdex.imaging import decode_image
from imgdex.library import IMAGE_METHOD, Library
from imgdex.models import DescriberSlot, EmbedderSlot

__all__ = ["Enricher"]

log = logging.getLogger(__name__)


class Enricher:
    def __init__(self, library: Library) -> None:
        self.library = library
        self.batch = library.config.worker.batch_size
        self.interval = library.config.worker.interval
        self._skip: dict[str, set[str]] = defaultdict(set)
        self.paused = False
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        library.on_work = self.poke

    def poke(self) -> None:
        """Wake the loop now (thread-safe)."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while True:
            self._wake.clear()
            worked = 0
            if not self.paused:
                try:
                    worked = await self.run_once()
                except Exception:
                    log.exception("enrichment round failed")
            if not worked:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval)

    async def run_once(self) -> int:
        """One round over every enabled model; returns how many items were written."""
        library = self.library
        worked = 0
        for slot in library.embedder_slots():
            if slot.available():
                fill = self._fill_images if slot.provider.stores == "image" else self._fill_texts
                worked += await library.run_model(fill, slot)
        for describer in library.describer_slots():
            if describer.available():
                worked += await library.run_model(self._describe, describer)
        await library.run_io(self._settle)
        return worked

    def _fill_images(self, slot: EmbedderSlot) -> int:
        catalog, storage = self.library.catalog, self.library.storage
        skip = self._skip[slot.name]
        rows = catalog.images_missing_vector(slot.name, self.batch, exclude=sorted(skip))
        items = []
        for row in rows:
            try:
                data = storage.original(row.sha256, row.filename).read_bytes()
                items.append((row.sha256, decode_image(data, self.library.config.images).image))
            except (OSError, ImgdexError) as exc:
                reason = exc.detail if isinstance(exc, ImgdexError) else str(exc)
                log.error("image %s cannot be read for %s: %s", row.sha256, slot.name, reason)
                skip.add(row.sha256)
                catalog.set_status(row.sha256, "failed", f"stored file unreadable: {reason}")
                self.library.failures[slot.name] += 1
        if not items:
            return 0

        def store(batch: list[tuple[str, object]]) -> None:
            vectors = slot.embed_images([image for _, image in batch])  # type: ignore[misc]
            slot_items = [
                (id_, IMAGE_METHOD, v, None) for (id_, _), v in zip(batch, vectors, strict=True)
            ]
            self.library.store_vectors(slot, slot_items)

        return self._write(slot, items, store)

    def _fill_texts(self, slot: EmbedderSlot) -> int:
        catalog = self.library.catalog
        skip = self._skip[slot.name]
        rows = catalog.descriptions_missing_vector(slot.name, self.batch, exclude=sorted(skip))
        if not rows:
            return 0
        items = [(f"{image}/{method}", (image, method, content)) for image, method, content in rows]

        def store(batch: list[tuple[str, tuple[str, str, str]]]) -> None:
            vectors = slot.embed_texts([content for _, (_, _, content) in batch], query=False)
            self.library.store_vectors(
                slot,
                [(img, m, v, c) for (_, (img, m, c)), v in zip(batch, vectors, strict=True)],
            )

        return self._write(slot, items, store)

    def _write(self, slot: EmbedderSlot, items: list, store) -> int:  # type: ignore[type-arg,no-untyped-def]
        """Store a batch; on an inference error isolate the items that fail alone."""
        try:
            store(items)
            return len(items)
        except ServiceUnavailable:
            if slot.state != "ready" or len(items) == 1:
                if len(items) == 1 and slot.state == "ready":
                    self._skip[slot.name].add(items[0][0])
                    self.library.failures[slot.name] += 1
                return 0
        written = 0
        for item in items:
            written += self._write(slot, [item], store)
        return written

    def _describe(self, slot: DescriberSlot) -> int:
        library = self.library
        skip = self._skip[slot.name]
        method = slot.provider.method
        rows = library.catalog.images_missing_description(method, self.batch, exclude=sorted(skip))
        written = 0
        for row in rows:
            try:
                data = library.storage.original(row.sha256, row.filename).read_bytes()
                image = decode_image(data, library.config.images).image
                (caption,) = slot.describe_images([image])
            except ServiceUnavailable:
                if slot.state != "ready":
                    return written  # the model is down: try again later
                skip.add(row.sha256)
                self.library.failures[slot.name] += 1
                continue
            except (OSError, ImgdexError) as exc:
                log.error("image %s cannot be described: %s", row.sha256, exc)
                skip.add(row.sha256)
                self.library.failures[slot.name] += 1
                continue
            if not caption:
                skip.add(row.sha256)
                self.library.failures[slot.name] += 1
                continue
            with library.catalog.transaction() as db:
                if db.execute("SELECT 1 FROM images WHERE sha256 = ?", (row.sha256,)).fetchone():
                    library.catalog.upsert_description(db, row.sha256, method, caption)
            library.storage.put_description(row.sha256, method, caption)
            written += 1
        return written

    def _settle(self) -> None:
        """Pending images whose image vectors all exist become ready."""
        library = self.library
        wanted = {slot.name for slot in library.embedder_slots(stores="image")}
        for id_ in library.catalog.pending_images(1000):
            if wanted <= library.catalog.image_indexes(id_):
                library.catalog.set_status(id_, "ready")
