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
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

from imgdex.catalog import ImageRow
from imgdex.errors import ImgdexError, ServiceUnavailable
from imgdex.imaging import decode_image
from imgdex.library import IMAGE_METHOD, Library
from imgdex.models import DescriberSlot, EmbedderSlot, ModelSlot

Store = Callable[[list[tuple[str, Any]]], None]
MAX_ATTEMPTS = 3
RATE_WINDOW = 20  # rounds kept for the rate estimate
MAINTENANCE_INTERVAL = 600.0  # seconds between idle-time upkeep runs
MAX_IDLE = 300.0  # longest wait between rounds when there is nothing to do

__all__ = ["Enricher"]

log = logging.getLogger(__name__)


class Enricher:
    def __init__(self, library: Library) -> None:
        self.library = library
        self.batch = library.config.worker.batch_size
        self.interval = library.config.worker.interval
        self._skip: dict[str, set[str]] = defaultdict(set)
        self._attempts: dict[tuple[str, str], int] = defaultdict(int)
        # What was given up on, per index or describer: (item, last error), newest last.
        self.errors: dict[str, list[tuple[str, str]]] = defaultdict(list)
        # (monotonic time, items written) per slot, for rates and ETAs.
        self._history: dict[str, deque[tuple[float, int]]] = defaultdict(
            lambda: deque(maxlen=RATE_WINDOW)
        )
        self.paused = False
        self._maintained = time.monotonic()
        self._stopping = False
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        library.on_work = self.poke

    def retry(self) -> int:
        """Forget what was given up on (and failed images), so it is all tried again."""
        given_up = sum(len(items) for items in self._skip.values())
        self._skip.clear()
        self._attempts.clear()
        self.errors.clear()
        self.library.failures.clear()
        catalog = self.library.catalog
        with catalog.transaction() as db:
            db.execute("UPDATE images SET status = 'pending', error = NULL WHERE status = 'failed'")
        self.poke()
        return given_up

    def rates(self) -> dict[str, float]:
        """Items written per second over the last rounds, per slot that wrote any."""
        out = {}
        for name, history in self._history.items():
            if len(history) >= 2:
                (t0, _), (t1, _) = history[0], history[-1]
                written = sum(n for _, n in list(history)[1:])
                if t1 > t0:
                    out[name] = written / (t1 - t0)
        return out

    def poke(self) -> None:
        """Wake the loop now (thread-safe)."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def stop(self) -> None:
        """Ask the loop to finish after the current batch (thread-safe)."""
        self._stopping = True
        self.poke()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        idle = self.interval
        while not self._stopping:
            self._wake.clear()
            worked = 0
            if not self.paused:
                try:
                    worked = await self.run_once()
                except Exception:
                    log.exception("enrichment round failed")
            if worked or self._stopping:
                idle = self.interval
                continue
            # Nothing to do: look again less and less often (a round scans the catalog),
            # but at once when something pokes us (uploads that failed to embed, new
            # descriptions, a plugin enabled, a retry).
            poked = False
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
                # cancellation that races with the event being set.
                async with asyncio.timeout(idle):
                    await self._wake.wait()
                    poked = True
            idle = self.interval if poked else min(idle * 2, MAX_IDLE)

    async def run_once(self) -> int:
        """One round over every enabled model; returns how many items were written."""
        library = self.library
        worked = 0
        for slot in library.embedder_slots():
            if slot.available():
                fill = self._fill_images if slot.provider.stores == "image" else self._fill_texts
                worked += self._count(slot.name, await library.run_model(fill, slot))
        for describer in library.describer_slots():
            if describer.available():
                worked += self._count(
                    describer.name, await library.run_model(self._describe, describer)
                )
        await library.run_io(self._settle)
        if not worked and time.monotonic() - self._maintained > MAINTENANCE_INTERVAL:
            self._maintained = time.monotonic()
            await library.run_io(self.maintain)
        return worked

    def maintain(self) -> None:
        """Idle-time upkeep: staging leftovers of failed uploads, compaction."""
        library = self.library
        removed = library.storage.clean_tmp(older_than=3600)
        if removed:
            log.info("removed %d leftovers of interrupted uploads", removed)
        library.indexes.compact()

    def _count(self, name: str, written: int) -> int:
        history = self._history[name]
        if written or history:
            history.append((time.monotonic(), written))
        if not written:
            history.clear()  # idle: the next burst starts a fresh rate window
        return written

    def _decode(self, slot: ModelSlot[Any], rows: list[ImageRow]) -> list[tuple[str, Any]]:
        """Read and decode stored originals; an unreadable one fails its image for good."""
        catalog, storage = self.library.catalog, self.library.storage
        items = []
        for row in rows:
            try:
                data = storage.original(row.sha256, row.filename).read_bytes()
                items.append((row.sha256, decode_image(data, self.library.config.images).image))
            except (OSError, ImgdexError) as exc:
                reason = exc.detail if isinstance(exc, ImgdexError) else str(exc)
                log.error("image %s cannot be read for %s: %s", row.sha256, slot.name, reason)
                self._skip[slot.name].add(row.sha256)
                catalog.set_status(row.sha256, "failed", f"stored file unreadable: {reason}")
                self.library.failures[slot.name] += 1
                self.errors[slot.name].append((row.sha256, reason))
        return items

    def _fill_images(self, slot: EmbedderSlot) -> int:
        rows = self.library.catalog.images_missing_vector(
            slot.name, self.batch, exclude=sorted(self._skip[slot.name])
        )
        items = self._decode(slot, rows)

        def store(batch: list[tuple[str, Any]]) -> None:
            vectors = slot.embed_images([image for _, image in batch])
            self.library.store_vectors(
                slot,
                [(id_, IMAGE_METHOD, v, None) for (id_, _), v in zip(batch, vectors, strict=True)],
            )

        return self._write(slot, items, store) if items else 0

    def _fill_texts(self, slot: EmbedderSlot) -> int:
        catalog = self.library.catalog
        skip = self._skip[slot.name]
        rows = catalog.descriptions_missing_vector(slot.name, self.batch, exclude=sorted(skip))
        if not rows:
            return 0
        items: list[tuple[str, Any]] = [
            (f"{image}/{method}", (image, method, content)) for image, method, content in rows
        ]

        def store(batch: list[tuple[str, Any]]) -> None:
            vectors = slot.embed_texts([content for _, (_, _, content) in batch], query=False)
            self.library.store_vectors(
                slot,
                [(img, m, v, c) for (_, (img, m, c)), v in zip(batch, vectors, strict=True)],
            )

        return self._write(slot, items, store)

    def _write(self, slot: ModelSlot[Any], items: list[tuple[str, Any]], store: Store) -> int:
        """Store a batch; when it fails with the model still up, retry item by item so
        one bad item cannot block the rest. An item failing alone `MAX_ATTEMPTS` times
        is skipped (until restart) and counted as failed."""
        try:
            store(items)
            return len(items)
        except ServiceUnavailable as exc:
            if slot.state != "ready":
                return 0  # the model is down: everything waits for it to come back
            if len(items) == 1:
                key = items[0][0]
                self._attempts[(slot.name, key)] += 1
                if self._attempts[(slot.name, key)] >= MAX_ATTEMPTS:
                    log.error("%s: giving up on %s: %s", slot.name, key, exc.detail)
                    self._skip[slot.name].add(key)
                    self.library.failures[slot.name] += 1
                    self.errors[slot.name].append((key, exc.detail))
                    if isinstance(slot, EmbedderSlot) and slot.provider.stores == "image":
                        # The image's own step failed for good: say so on the image.
                        self.library.catalog.set_status(key, "failed", exc.detail)
                return 0
        written = 0
        for item in items:
            written += self._write(slot, [item], store)
            if slot.state != "ready":
                break
        return written

    def _describe(self, slot: DescriberSlot) -> int:
        library = self.library
        method = slot.provider.method
        rows = library.catalog.images_missing_description(
            method, self.batch, exclude=sorted(self._skip[slot.name])
        )
        items = self._decode(slot, rows)

        def store(batch: list[tuple[str, Any]]) -> None:
            captions = slot.describe_images([image for _, image in batch])
            for (id_, _), caption in zip(batch, captions, strict=True):
                if not caption:
                    raise ServiceUnavailable(f"{slot.name}: empty caption for {id_}")
            for (id_, _), caption in zip(batch, captions, strict=True):
                library.storage.put_description(id_, method, caption)
                with library.catalog.transaction() as db:
                    if db.execute("SELECT 1 FROM images WHERE sha256 = ?", (id_,)).fetchone():
                        library.catalog.upsert_description(db, id_, method, caption)

        return self._write(slot, items, store) if items else 0

    def _settle(self) -> None:
        """Pending images whose image vectors all exist become ready."""
        library = self.library
        wanted = {slot.name for slot in library.embedder_slots(stores="image")}
        for id_ in library.catalog.pending_images(1000):
            if wanted <= library.catalog.image_indexes(id_):
                library.catalog.set_status(id_, "ready")
