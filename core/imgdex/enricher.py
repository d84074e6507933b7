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

from imgdex.backfill import backfill_metadata, metadata_progress
from imgdex.catalog import Job, JobKind, vector_job_kind
from imgdex.errors import ImgdexError, ServiceUnavailable
from imgdex.imaging import decode_image
from imgdex.library import IMAGE_METHOD, Library
from imgdex.models import DescriberSlot, EmbedderSlot
from imgdex.tags import parse_tag_list
from imgdex.upgrades import try_take_over

RATE_WINDOW = 20  # batches kept for the rate estimate
MAINTENANCE_INTERVAL = 600.0  # seconds between idle-time upkeep runs

__all__ = ["Enricher"]

log = logging.getLogger(__name__)

Item = tuple[Job, Any]


class _Gone(Exception):
    """The job's input is gone for good (its stored file cannot be read)."""


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
    def __init__(self, library: Library) -> None:
        self.library = library
        worker = library.config.worker
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
        library.on_work = self.poke

    # --- control ------------------------------------------------------------------

    def poke(self) -> None:
        """Look for work now (thread-safe)."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def stop(self) -> None:
        """Let running batches finish, start no more (thread-safe)."""
        self._stopping = True
        self.poke()

    def retry(self) -> int:
        """Give every failed job fresh attempts (failed images become pending)."""
        requeued = self.library.catalog.retry_failed()
        self.library.plan_all()
        self._blocked.clear()
        self.poke()
        return requeued

    def prepare(self) -> None:
        """Start-up: claimed jobs go back to the queue, missing work is queued (a crash
        between a cause and its job cannot happen, but libraries from before jobs
        existed, and models enabled while the server was down, need it), and images
        whose jobs are all done become ready."""
        library = self.library
        requeued = library.catalog.requeue_running()
        if requeued:
            log.info("%d jobs interrupted by the last shutdown are queued again", requeued)
        library.plan_all()
        library.catalog.settle(library.settle_targets())
        self._prepared = True

    def units(self) -> list[Unit]:
        library = self.library
        concurrency = library.config.worker.concurrency
        units = []
        for slot in library.embedder_slots():
            kind = vector_job_kind(slot.provider.stores)
            units.append(Unit(kind, slot.name, slot, concurrency.get(slot.plugin.name, 1)))
        for describer in library.describer_slots():
            method = describer.provider.method
            units.append(
                Unit("describe", method, describer, concurrency.get(describer.plugin.name, 1))
            )
        return units

    # --- the loop -------------------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        library = self.library
        try:
            await library.run_io(self.prepare)
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
        library = self.library
        now = time.time()
        busy = False
        for unit in self.units():
            running = self._tasks[unit.key]
            if running:
                busy = True
            if len(running) >= unit.concurrency or not unit.slot.available():
                continue
            due = await library.run_io(library.catalog.next_due, unit.kind, unit.target)
            if due is None:
                if not running and unit.target in library.upgrades.building():
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
            catalog, storage = library.catalog, library.storage
            self._metadata_left = bool(await library.run_io(backfill_metadata, catalog, storage))
            if self._metadata_left:
                self.poke()
        if not busy and time.monotonic() - self._maintained > MAINTENANCE_INTERVAL:
            self._maintained = time.monotonic()
            await library.run_io(self.maintain)

    def _done(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        self._tasks[key].discard(task)
        if not self._stopping:
            self.poke()

    async def _check_upgrade(self, name: str) -> None:
        if name in self._blocked:
            return
        if await self.library.run_io(try_take_over, self.library, name):
            self.poke()
        else:
            self._blocked.add(name)  # looked at again after a retry or new work

    async def _work(self, unit: Unit) -> None:
        try:
            while not (self._stopping or self.paused) and self._usable(unit):
                if not await self.library.run_model(self._batch, unit):
                    break
        except Exception:
            log.exception("%s: background batch failed", unit.slot.name)

    def _usable(self, unit: Unit) -> bool:
        library = self.library
        if not unit.slot.available() or not library.plugin_enabled(unit.slot.plugin):
            return False
        if isinstance(unit.slot, EmbedderSlot):
            return library.embedders.get(unit.target) is unit.slot  # not retired meanwhile
        return True

    async def run_once(self) -> int:
        """Run every due job now, to the end (for callers without the background loop:
        ``create_app(background=False)``); returns how many jobs were processed."""
        library = self.library
        if not self._prepared:
            await library.run_io(self.prepare)
        processed = 0
        for unit in self.units():
            while self._usable(unit) and (n := await library.run_model(self._batch, unit)):
                processed += n
        for name in library.upgrades.building():
            await library.run_io(try_take_over, library, name)
        while await library.run_io(backfill_metadata, library.catalog, library.storage):
            pass
        return processed

    def maintain(self) -> None:
        """Idle-time upkeep: staging leftovers of failed uploads, compaction, and images
        past `storage.trash_days` in the trash (deleted for good)."""
        library = self.library
        removed = library.storage.clean_tmp(older_than=3600)
        if removed:
            log.info("removed %d leftovers of interrupted uploads", removed)
        library.indexes.compact()
        days = library.config.storage.trash_days  # organise (issue 14)
        if days > 0 and (purged := library.purge_trash(days)):
            log.info("emptied %d images from the trash (older than %g days)", purged, days)

    # --- one batch (in a model thread) -----------------------------------------------

    def _batch(self, unit: Unit) -> int:
        """Claim and run one batch; returns how many jobs it claimed (0: none due)."""
        catalog = self.library.catalog
        jobs = catalog.claim_jobs(unit.kind, unit.target, self.batch, time.time())
        if not jobs:
            return 0
        self._blocked.discard(unit.target)
        try:
            if unit.kind == "embed_text":
                written = self._run(unit, jobs, self._load_text, self._store_texts)
            elif unit.kind == "embed_image":
                written = self._run(unit, jobs, self._load_image, self._store_images)
            else:
                written = self._run(unit, jobs, self._load_image, self._store_captions)
        finally:
            # Whatever was neither stored nor failed (a model that went down) waits.
            catalog.release_jobs([job.id for job in jobs])
        self._count(unit.slot.name, written)
        if unit.kind == "embed_image":
            catalog.settle(self.library.settle_targets(), [job.image_sha256 for job in jobs])
        return len(jobs)

    def _run(
        self,
        unit: Unit,
        jobs: list[Job],
        load: Callable[[Job], Any],
        store: Callable[[Unit, list[Item]], None],
    ) -> int:
        items: list[Item] = []
        for job in jobs:
            try:
                payload = load(job)
            except _Gone as exc:
                self._fail(unit, job, str(exc), final=True)
                continue
            if payload is None:  # nothing left to do (the description was deleted)
                with self.library.catalog.transaction() as db:
                    self.library.catalog.finish_jobs(db, [job.id])
                continue
            items.append((job, payload))
        return self._write(unit, items, store) if items else 0

    def _write(
        self, unit: Unit, items: list[Item], store: Callable[[Unit, list[Item]], None]
    ) -> int:
        """Store a batch; when it fails with the model still up, go item by item, and
        count a failed attempt against an item that fails alone."""
        try:
            store(unit, items)
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
        worker = self.library.config.worker
        attempts = job.attempts + 1
        retry_at = None
        if not final and attempts < worker.max_attempts:
            delay = min(worker.retry_delay * 2 ** (attempts - 1), worker.retry_delay_max)
            retry_at = time.time() + delay
        state = self.library.catalog.fail_job(job.id, error, retry_at=retry_at)
        if state != "failed":
            log.warning("%s: %s failed (attempt %d): %s", unit.slot.name, job.item, attempts, error)
            return
        log.error(
            "%s: gave up on %s after %d attempts: %s", unit.slot.name, job.item, attempts, error
        )
        if unit.kind == "embed_image" and unit.target in self.library.settle_targets():
            # The image's own step failed for good: say so on the image.
            self.library.catalog.set_status(job.image_sha256, "failed", error)

    # --- loading and storing per kind ------------------------------------------------

    def _load_image(self, job: Job) -> Any:
        library = self.library
        row = library.catalog.get_image(job.image_sha256)
        if row is None:
            return None
        try:
            data = library.storage.original(row.sha256, row.filename).read_bytes()
            return decode_image(data, library.config.images).image
        except (OSError, ImgdexError) as exc:
            reason = exc.detail if isinstance(exc, ImgdexError) else str(exc)
            raise _Gone(f"stored file unreadable: {reason}") from exc

    def _load_text(self, job: Job) -> str | None:
        return self.library.catalog.get_description(job.image_sha256, job.method)

    def _store_images(self, unit: Unit, items: list[Item]) -> None:
        assert isinstance(unit.slot, EmbedderSlot)
        vectors = unit.slot.embed_images([image for _, image in items])
        self.library.store_vectors(
            unit.slot,
            [
                (job.image_sha256, IMAGE_METHOD, v, None)
                for (job, _), v in zip(items, vectors, strict=True)
            ],
        )

    def _store_texts(self, unit: Unit, items: list[Item]) -> None:
        assert isinstance(unit.slot, EmbedderSlot)
        vectors = unit.slot.embed_texts([text for _, text in items], query=False)
        self.library.store_vectors(
            unit.slot,
            [
                (job.image_sha256, job.method, v, text)
                for (job, text), v in zip(items, vectors, strict=True)
            ],
        )

    def _store_captions(self, unit: Unit, items: list[Item]) -> None:
        assert isinstance(unit.slot, DescriberSlot)
        library = self.library
        method = unit.target
        captions = unit.slot.describe_images([image for _, image in items])
        for (job, _), caption in zip(items, captions, strict=True):
            # A describer that may find nothing to say (OCR of a photo without text) says
            # so with `empty_ok`; from others an empty answer is a fault.
            if not caption.text and not caption.tags and not unit.slot.provider.empty_ok:
                raise ServiceUnavailable(f"{unit.slot.name}: empty caption for {job.item}")
        for (job, _), caption in zip(items, captions, strict=True):
            # Tags come with the caption, in its transaction.
            tags = normalise_tags(caption.tags)
            if caption.text:
                library.storage.put_description(job.image_sha256, method, caption.text)
            with library.catalog.transaction() as db:
                if library.catalog.has_image(db, job.image_sha256):
                    if caption.text:
                        library.catalog.upsert_description(
                            db, job.image_sha256, method, caption.text
                        )
                        library.queue_description_jobs(db, job.image_sha256, method)
                    library.catalog.tags.add_tags(db, job.image_sha256, tags, method)
                library.catalog.finish_jobs(db, [job.id])
        library.on_work()  # new descriptions for the text embedders

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

    def report(self) -> dict[str, Any]:
        """What ``GET /api/admin/jobs`` shows (blocking: call it in a worker thread)."""
        library = self.library
        progress = library.progress()
        rates = self.rates()
        roles = library.roles()
        counts = library.catalog.job_counts()
        by_kind: dict[str, dict[str, int]] = {}
        for (kind, _), states in counts.items():
            for state, n in states.items():
                by_kind.setdefault(kind, {}).setdefault(state, 0)
                by_kind[kind][state] += n
        names = [slot.name for slot in library.embedder_slots()]
        describers = {d.name: d.provider.method for d in library.describer_slots()}
        failed = library.catalog.failed_jobs()

        def entry(name: str) -> dict[str, Any]:
            p = progress[name]
            rate = rates.get(name)
            left = p.queued + p.running
            return {
                "done": p.done,
                "total": p.total,
                "failed": p.failed,
                "queued": p.queued,
                "running": p.running,
                "rate_per_s": round(rate, 2) if rate else None,
                "eta_s": round(left / rate, 1) if rate and left else (0.0 if not left else None),
            }

        indexes = {}
        for name in names:
            indexes[name] = {**entry(name), "role": roles.get(name, (None, None))[0]}
            if note := roles.get(name, (None, None))[1]:
                indexes[name]["note"] = note
        errors = {}
        for (kind, target), jobs in failed.items():
            name = f"describer {target}" if kind == "describe" else target
            errors[name] = [
                {"item": f.job.item, "error": f.error, "attempts": f.job.attempts} for f in jobs
            ]
        return {
            "paused": self.paused,
            "jobs": by_kind,
            "indexes": indexes,
            "describers": {method: entry(name) for name, method in describers.items()},
            "failed": {name: p.failed for name, p in progress.items() if p.failed},
            "errors": errors,
            "metadata": metadata_progress(library.catalog),
        }


def normalise_tags(tags: tuple[str, ...]) -> list[str]:
    """A describer's tags in their normal form, bounded: whatever a model writes."""
    return parse_tag_list(",".join(t.replace(",", " ") for t in tags), limit=20)
