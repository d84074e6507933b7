"""Background workers: run the catalog's jobs (embed, describe) with retries and back-off.

Every piece of background work is a row of the catalog's ``jobs`` table, queued in the
same transaction as its cause (a new image, a new or changed description, a backfill
when a model is enabled) and deleted in the same transaction as its result, so a kill
at any moment loses no job and finishes none twice (vector entries are unique per
image, method and index). On start, jobs left ``running`` go back to the queue.

One asyncio orchestrator starts worker tasks per model (``worker.concurrency`` batches
per plugin, default 1); each claims a batch of due jobs, runs it in the model thread
pool, and stores the results. When a batch fails while the model is still up, its items
are retried one by one so a bad item cannot block the rest; an item that fails alone is
retried after ``worker.retry_delay`` seconds, then twice that and so on, and after
``worker.max_attempts`` tries it is ``failed`` with its error, visible at
``/api/admin/jobs``. A model that is down or disabled burns no attempts: its jobs wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imgdex.backfill import backfill_metadata
from imgdex.blobs import BlobStore
from imgdex.catalog import Catalog, Job, JobKind, vector_job_kind
from imgdex.config import WorkerConfig
from imgdex.errors import ServiceUnavailable
from imgdex.index import IndexManager
from imgdex.jobs.handlers import Gone, Handlers, Item
from imgdex.models import DescriberSlot, EmbedderSlot
from imgdex.pools import Pools, Wakeup
from imgdex.registry import Registry

RATE_WINDOW = 20  # batches kept for the rate estimate
MAINTENANCE_INTERVAL = 600.0  # seconds between idle-time upkeep runs

__all__ = ["Enricher"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unit:
    """One model's queue: the jobs of one kind for one index or describer."""

    kind: JobKind
    target: str
    slot: EmbedderSlot | DescriberSlot
    concurrency: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.target)


class Enricher:
    def __init__(
        self,
        worker: WorkerConfig,
        registry: Registry,
        catalog: Catalog,
        blobs: BlobStore,
        indexes: IndexManager,
        pools: Pools,
        wakeup: Wakeup,
        handlers: Handlers,
        trash_days: float = 0.0,
        purge_trash: Callable[[float], int] | None = None,
    ) -> None:
        self.worker = worker
        # organise (issue 14): upkeep empties images in the trash longer than this.
        self.trash_days = trash_days
        self._purge_trash = purge_trash
        self.registry = registry
        self.catalog = catalog
        self.blobs = blobs
        self.indexes = indexes
        self.pools = pools
        self.handlers = handlers
        self.batch = worker.batch_size
        self.interval = worker.interval
        # (monotonic time, items written) per slot name, for rates and ETAs.
        self._history: dict[str, deque[tuple[float, int]]] = defaultdict(
            lambda: deque(maxlen=RATE_WINDOW)
        )
        self._tasks: dict[tuple[str, str], set[asyncio.Task[None]]] = defaultdict(set)
        self._blocked: set[str] = set()  # building indexes checked and not complete
        self._prepared = False
        self.paused = False
        self._maintained = time.monotonic()
        self._metadata_left = True  # images stored before metadata was read (backfill)
        self._stopping = False
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        wakeup.listen(self.poke)

    # --- control ------------------------------------------------------------------

    def poke(self) -> None:
        """Look for work now (thread-safe)."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def stop(self) -> None:
        """Let running batches finish, start no more (thread-safe)."""
        self._stopping = True
        self.poke()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self.poke()

    def retry(self) -> int:
        """Give every failed job fresh attempts (failed images become pending)."""
        requeued = self.catalog.retry_failed()
        self.registry.queue_backfill()
        self._blocked.clear()
        self.poke()
        return requeued

    def prepare(self) -> None:
        """Start-up: claimed jobs go back to the queue, missing work is queued (a crash
        between a cause and its job cannot happen, but libraries from before jobs
        existed, and models enabled while the server was down, need it), and images
        whose jobs are all done become ready."""
        requeued = self.catalog.requeue_running()
        if requeued:
            log.info("%d jobs interrupted by the last shutdown are queued again", requeued)
        self.registry.queue_backfill()
        self.catalog.settle(self.registry.settle_targets())
        self._prepared = True

    def units(self) -> list[Unit]:
        concurrency = self.worker.concurrency
        units = []
        for slot in self.registry.embedder_slots():
            kind = vector_job_kind(slot.provider.stores)
            units.append(Unit(kind, slot.name, slot, concurrency.get(slot.plugin.name, 1)))
        for describer in self.registry.describer_slots():
            method = describer.provider.method
            units.append(
                Unit("describe", method, describer, concurrency.get(describer.plugin.name, 1))
            )
        return units

    # --- the loop -------------------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        try:
            await self.pools.run_io(self.prepare)
        except Exception:
            log.exception("preparing background jobs failed")
        while not self._stopping:
            self._wake.clear()
            if not self.paused:
                try:
                    await self._tick()
                except Exception:
                    log.exception("background job round failed")
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
                # cancellation that races with the event being set.
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
        tasks = [t for ts in self._tasks.values() for t in ts]
        if tasks:
            await asyncio.wait(tasks, timeout=30)

    async def _tick(self) -> None:
        """Start workers where jobs are due; check upgrades and upkeep when idle."""
        now = time.time()
        busy = False
        for unit in self.units():
            running = self._tasks[unit.key]
            if running:
                busy = True
            if len(running) >= unit.concurrency or not unit.slot.available():
                continue
            due = await self.pools.run_io(self.catalog.next_due, unit.kind, unit.target)
            if due is None:
                if not running and unit.target in self.registry.upgrades.building():
                    await self._check_upgrade(unit.target)
                continue
            if due > now:
                continue
            busy = True
            for _ in range(unit.concurrency - len(running)):
                task = asyncio.create_task(self._work(unit), name=f"imgdex-job-{unit.target}")
                running.add(task)
                task.add_done_callback(functools.partial(self._done, unit.key))
        if not busy and self._metadata_left:  # organise (issue 14): one-shot backfill
            catalog, blobs = self.catalog, self.blobs
            self._metadata_left = bool(await self.pools.run_io(backfill_metadata, catalog, blobs))
            if self._metadata_left:
                self.poke()
        if not busy and time.monotonic() - self._maintained > MAINTENANCE_INTERVAL:
            self._maintained = time.monotonic()
            await self.pools.run_io(self.maintain)

    def _done(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        self._tasks[key].discard(task)
        if not self._stopping:
            self.poke()

    async def _check_upgrade(self, name: str) -> None:
        if name in self._blocked:
            return
        if await self.pools.run_io(self.registry.try_take_over, name):
            self.poke()
        else:
            self._blocked.add(name)  # looked at again after a retry or new work

    async def _work(self, unit: Unit) -> None:
        try:
            while not (self._stopping or self.paused) and self._usable(unit):
                if not await self.pools.run_model(self._batch, unit):
                    break
        except Exception:
            log.exception("%s: background batch failed", unit.slot.name)

    def _usable(self, unit: Unit) -> bool:
        if not unit.slot.available() or not self.registry.plugin_enabled(unit.slot.plugin):
            return False
        if isinstance(unit.slot, EmbedderSlot):
            return self.registry.embedders.get(unit.target) is unit.slot  # not retired meanwhile
        return True

    async def run_once(self) -> int:
        """Run every due job now, to the end (for callers without the background loop:
        ``create_app(background=False)``); returns how many jobs were processed."""
        if not self._prepared:
            await self.pools.run_io(self.prepare)
        processed = 0
        for unit in self.units():
            while self._usable(unit) and (n := await self.pools.run_model(self._batch, unit)):
                processed += n
        for name in self.registry.upgrades.building():
            await self.pools.run_io(self.registry.try_take_over, name)
        while await self.pools.run_io(backfill_metadata, self.catalog, self.blobs):
            pass
        return processed

    def maintain(self) -> None:
        """Idle-time upkeep: staging leftovers of failed uploads, compaction, and images
        past `storage.trash_days` in the trash (deleted for good)."""
        removed = self.blobs.clean_tmp(older_than=3600)
        if removed:
            log.info("removed %d leftovers of interrupted uploads", removed)
        self.indexes.compact()
        days = self.trash_days  # organise (issue 14)
        if days > 0 and self._purge_trash and (purged := self._purge_trash(days)):
            log.info("emptied %d images from the trash (older than %g days)", purged, days)

    # --- one batch (in a model thread) -----------------------------------------------

    def _batch(self, unit: Unit) -> int:
        """Claim and run one batch; returns how many jobs it claimed (0: none due)."""
        catalog = self.catalog
        jobs = catalog.claim_jobs(unit.kind, unit.target, self.batch, time.time())
        if not jobs:
            return 0
        self._blocked.discard(unit.target)
        try:
            if unit.kind == "embed_text":
                written = self._run(unit, jobs, self.handlers.load_text, self.handlers.store_texts)
            elif unit.kind == "embed_image":
                written = self._run(
                    unit, jobs, self.handlers.load_image, self.handlers.store_images
                )
            else:
                written = self._run(
                    unit, jobs, self.handlers.load_image, self.handlers.store_captions
                )
        finally:
            # Whatever was neither stored nor failed (a model that went down) waits.
            catalog.release_jobs([job.id for job in jobs])
        self._count(unit.slot.name, written)
        if unit.kind == "embed_image":
            catalog.settle(self.registry.settle_targets(), [job.image_sha256 for job in jobs])
        return len(jobs)

    def _run(
        self,
        unit: Unit,
        jobs: list[Job],
        load: Callable[[Job], Any],
        store: Callable[[EmbedderSlot | DescriberSlot, list[Item]], None],
    ) -> int:
        items: list[Item] = []
        for job in jobs:
            try:
                payload = load(job)
            except Gone as exc:
                self._fail(unit, job, str(exc), final=True)
                continue
            if payload is None:  # nothing left to do (the description was deleted)
                with self.catalog.transaction() as db:
                    self.catalog.finish_jobs(db, [job.id])
                continue
            items.append((job, payload))
        return self._write(unit, items, store) if items else 0

    def _write(
        self,
        unit: Unit,
        items: list[Item],
        store: Callable[[EmbedderSlot | DescriberSlot, list[Item]], None],
    ) -> int:
        """Store a batch; when it fails with the model still up, go item by item, and
        count a failed attempt against an item that fails alone."""
        try:
            store(unit.slot, items)
            return len(items)
        except ServiceUnavailable as exc:
            if unit.slot.state != "ready":
                return 0  # the model is down: its jobs wait for it, attempts untouched
            if len(items) == 1:
                self._fail(unit, items[0][0], exc.detail)
                return 0
        written = 0
        for item in items:
            written += self._write(unit, [item], store)
            if unit.slot.state != "ready":
                break
        return written

    def _fail(self, unit: Unit, job: Job, error: str, *, final: bool = False) -> None:
        worker = self.worker
        attempts = job.attempts + 1
        retry_at = None
        if not final and attempts < worker.max_attempts:
            delay = min(worker.retry_delay * 2 ** (attempts - 1), worker.retry_delay_max)
            retry_at = time.time() + delay
        state = self.catalog.fail_job(job.id, error, retry_at=retry_at)
        if state != "failed":
            log.warning("%s: %s failed (attempt %d): %s", unit.slot.name, job.item, attempts, error)
            return
        log.error(
            "%s: gave up on %s after %d attempts: %s", unit.slot.name, job.item, attempts, error
        )
        if unit.kind == "embed_image" and unit.target in self.registry.settle_targets():
            # The image's own step failed for good: say so on the image.
            self.catalog.set_status(job.image_sha256, "failed", error)

    # --- reports ----------------------------------------------------------------------

    def _count(self, name: str, written: int) -> None:
        history = self._history[name]
        history.append((time.monotonic(), written))

    def rates(self) -> dict[str, float]:
        """Items written per second over the last batches, per slot that wrote lately."""
        out = {}
        now = time.monotonic()
        for name, history in list(self._history.items()):
            if len(history) >= 2 and now - history[-1][0] < 60:
                (t0, _), (t1, _) = history[0], history[-1]
                written = sum(n for _, n in list(history)[1:])
                if t1 > t0 and written:
                    out[name] = written / (t1 - t0)
        return out
