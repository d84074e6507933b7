"""The `jobs` table: background work (embed an image or a text, describe an image).

A job is queued in the same transaction as whatever caused it and deleted in the same
transaction as its result, so a kill at any moment neither loses a job nor finishes one
twice. Claiming is one operation (`claim_jobs`) whose statement the dialect writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from imgdex.catalog.dialect import Connection
from imgdex.catalog.engine import Store, chunks, marks
from imgdex.catalog.rows import FailedJob, Job, JobKind, vector_job_kind

__all__ = ["JobStore"]


class JobStore(Store):
    """Job rows. Methods are blocking; call them from worker threads."""

    def queue_jobs(
        self,
        db: Connection,
        kind: JobKind,
        targets: Iterable[str],
        image: str,
        method: str,
    ) -> None:
        """Queue `kind` work on ``(image, method)`` for each target, now.

        A job that exists already starts over (new content to embed, a restored image).
        Nothing is queued for an image that is gone (hard-deleted by another thread
        between the caller's read and this write).
        """
        upsert = self.dialect.upsert(
            "kind, target, image_sha256, method",
            "state = 'queued', attempts = 0, next_run_at = 0, error = NULL, "
            f"updated_at = {self.dialect.now}",
        )
        for target in targets:
            db.execute(
                "INSERT INTO jobs (kind, target, image_sha256, method) SELECT ?, ?, ?, ? "
                f"WHERE EXISTS (SELECT 1 FROM images WHERE sha256 = ?) {upsert}",
                (kind, target, image, method, image),
            )

    def queue_backfill(self, kind: JobKind, target: str, image: str | None = None) -> int:
        """Queue a job for every live item that lacks `target`'s output (a backfill).

        Idempotent and cheap to repeat: items with a job (queued, running or failed)
        are left alone. Returns how many jobs were added.
        """
        if kind == "embed_image":
            select = (
                "SELECT 'embed_image', ?, i.sha256, 'image' FROM images i "
                "WHERE i.is_deleted = 0 AND NOT EXISTS (SELECT 1 FROM vector_entries v "
                "WHERE v.image_sha256 = i.sha256 AND v.index_name = ? AND v.method = 'image')"
            )
            params: tuple[Any, ...] = (target, target)
        elif kind == "embed_text":
            select = (
                "SELECT 'embed_text', ?, d.image_sha256, d.method FROM descriptions d "
                "JOIN images i ON i.sha256 = d.image_sha256 WHERE i.is_deleted = 0 "
                "AND NOT EXISTS (SELECT 1 FROM vector_entries v WHERE v.image_sha256 = "
                "d.image_sha256 AND v.method = d.method AND v.index_name = ?)"
            )
            params = (target, target)
        else:
            select = (
                "SELECT 'describe', ?, i.sha256, ? FROM images i WHERE i.is_deleted = 0 "
                "AND NOT EXISTS (SELECT 1 FROM descriptions d "
                "WHERE d.image_sha256 = i.sha256 AND d.method = ?)"
            )
            params = (target, target, target)
        if image is not None:
            select += " AND i.sha256 = ?"
            params += (image,)
        select += " ORDER BY " + self.dialect.insertion_order("d" if kind == "embed_text" else "i")
        with self.engine.transaction() as db:
            return int(
                db.execute(
                    "INSERT INTO jobs (kind, target, image_sha256, method) "
                    f"{select} {self.dialect.insert_ignore()}",
                    params,
                ).rowcount
            )

    def claim_jobs(self, kind: JobKind, target: str, limit: int, now: float) -> list[Job]:
        """Mark up to `limit` due jobs of live images running and return them, oldest first."""
        with self.engine.transaction() as db:
            rows = db.execute(self.dialect.claim_jobs(), (kind, target, now, limit)).fetchall()
        return sorted((Job(*r) for r in rows), key=lambda j: j.id)

    def finish_vector_job(self, db: Connection, index: str, image: str, method: str) -> None:
        """Drop the job for a vector once the vector is recorded (same transaction)."""
        kind = vector_job_kind(method)
        db.execute(
            "DELETE FROM jobs WHERE kind = ? AND target = ? AND image_sha256 = ? AND method = ? "
            "AND EXISTS (SELECT 1 FROM vector_entries WHERE image_sha256 = ? AND method = ? "
            "AND index_name = ?)",
            (kind, index, image, method, image, method, index),
        )

    def finish_jobs(self, db: Connection, ids: Sequence[int]) -> None:
        """Drop jobs by id (their result is written in the same transaction)."""
        for chunk in chunks(list(ids)):
            db.execute(f"DELETE FROM jobs WHERE id IN ({marks(len(chunk))})", chunk)

    def drop_vector_jobs(self, db: Connection, index: str) -> None:
        """Drop every embedding job of an index (it was retired)."""
        db.execute("DELETE FROM jobs WHERE kind != 'describe' AND target = ?", (index,))

    def release_jobs(self, ids: Sequence[int]) -> None:
        """Put claimed jobs that are still running back in the queue, attempts untouched."""
        with self.engine.transaction() as db:
            for chunk in chunks(list(ids)):
                db.execute(
                    f"UPDATE jobs SET state = 'queued', updated_at = {self.dialect.now} "
                    f"WHERE state = 'running' AND id IN ({marks(len(chunk))})",
                    chunk,
                )

    def fail_job(self, job_id: int, error: str, *, retry_at: float | None) -> str:
        """Count a failed attempt: back in the queue until `retry_at`, or `failed` for
        good when `retry_at` is None. Returns the job's new state ('' when it is gone)."""
        state = "failed" if retry_at is None else "queued"
        with self.engine.transaction() as db:
            row = db.execute(
                "UPDATE jobs SET state = ?, attempts = attempts + 1, next_run_at = ?, "
                f"error = ?, updated_at = {self.dialect.now} WHERE id = ? AND state = 'running' "
                "RETURNING state",
                (state, retry_at or 0.0, error, job_id),
            ).fetchone()
        return str(row[0]) if row else ""

    def requeue_running(self) -> int:
        """After a restart nothing is running: what was claimed goes back in the queue."""
        with self.engine.transaction() as db:
            return int(
                db.execute("UPDATE jobs SET state = 'queued' WHERE state = 'running'").rowcount
            )

    def retry_failed(
        self, targets: Iterable[tuple[str, str]] | None = None, image: str | None = None
    ) -> int:
        """Re-queue failed jobs (all, those of the ``(kind, target)`` pairs given, or one
        image's) with fresh attempts; images failed by them become pending again."""
        where, params = "state = 'failed'", []
        if targets is not None:
            pairs = list(targets)
            if not pairs:
                return 0
            where += " AND (kind, target) IN (VALUES " + ",".join("(?, ?)" for _ in pairs) + ")"
            params = [x for pair in pairs for x in pair]
        if image is not None:
            where += " AND image_sha256 = ?"
            params.append(image)
        with self.engine.transaction() as db:
            db.execute(
                "UPDATE images SET status = 'pending', error = NULL WHERE status = 'failed' "
                "AND sha256 IN (SELECT image_sha256 FROM jobs WHERE kind = 'embed_image' "
                f"AND {where})",
                params,
            )
            return int(
                db.execute(
                    "UPDATE jobs SET state = 'queued', attempts = 0, next_run_at = 0, "
                    f"error = NULL, updated_at = {self.dialect.now} WHERE {where}",
                    params,
                ).rowcount
            )

    def next_due(self, kind: JobKind, target: str) -> float | None:
        """When the earliest queued job of a target is due (unix time), None if none."""
        row = self._read(
            "SELECT MIN(next_run_at) FROM jobs WHERE kind = ? AND target = ? AND state = 'queued'",
            (kind, target),
        )
        return None if row[0][0] is None else float(row[0][0])

    def job_counts(self) -> dict[tuple[str, str], dict[str, int]]:
        """``{(kind, target): {state: count}}`` over the jobs of live images."""
        out: dict[tuple[str, str], dict[str, int]] = {}
        for kind, target, state, n in self._read(
            "SELECT j.kind, j.target, j.state, COUNT(*) FROM jobs j JOIN images i "
            "ON i.sha256 = j.image_sha256 WHERE i.is_deleted = 0 GROUP BY j.kind, j.target, j.state"
        ):
            out.setdefault((kind, target), {})[state] = int(n)
        return out

    def failed_jobs(self, limit: int = 20) -> dict[tuple[str, str], list[FailedJob]]:
        """The latest `limit` failed jobs per ``(kind, target)``, each with its error."""
        out: dict[tuple[str, str], list[FailedJob]] = {}
        for kind, target, id_, image, method, attempts, error in self._read(
            "SELECT kind, target, id, image_sha256, method, attempts, error FROM ("
            " SELECT *, ROW_NUMBER() OVER (PARTITION BY kind, target ORDER BY id DESC) AS n "
            " FROM jobs WHERE state = 'failed') AS latest WHERE n <= ? ORDER BY id",
            (limit,),
        ):
            job = Job(id_, image, method, attempts)
            out.setdefault((kind, target), []).append(FailedJob(job, str(error or "")))
        return out

    def failed_where_held(self, kind: JobKind, target: str, other: str) -> int:
        """Failed `kind` jobs of `target` whose item has a vector in index `other`."""
        return int(
            self._read(
                "SELECT COUNT(*) FROM jobs j WHERE j.kind = ? AND j.target = ? "
                "AND j.state = 'failed' AND EXISTS (SELECT 1 FROM vector_entries v "
                "WHERE v.image_sha256 = j.image_sha256 AND v.method = j.method "
                "AND v.index_name = ?)",
                (kind, target, other),
            )[0][0]
        )

    def settle(self, targets: Sequence[str], ids: Sequence[str] | None = None) -> int:
        """Pending images with no image-embedding job left for `targets` (the indexes
        that answer searches) become ready; returns how many did."""
        unfinished = (
            "SELECT 1 FROM jobs j WHERE j.image_sha256 = images.sha256 "
            f"AND j.kind = 'embed_image' AND j.target IN ({marks(len(targets))})"
        )
        sql = (
            "UPDATE images SET status = 'ready', error = NULL WHERE status = 'pending' "
            f"AND is_deleted = 0 AND NOT EXISTS ({unfinished})"
        )
        params: list[Any] = list(targets)
        if ids is not None:
            if not ids:
                return 0
            sql += f" AND sha256 IN ({marks(len(ids))})"
            params += list(ids)
        with self.engine.transaction() as db:
            return int(db.execute(sql, params).rowcount)

    def resettle(self, targets: Sequence[str]) -> tuple[int, int]:
        """Apply the status rule to every image after the set of `targets` changed (a
        plugin enabled or disabled): an image is ready when no image-embedding job is left
        for any target. Returns ``(now ready, back to pending)``; failed images stay."""
        unfinished = (
            "SELECT 1 FROM jobs j WHERE j.image_sha256 = images.sha256 "
            f"AND j.kind = 'embed_image' AND j.target IN ({marks(len(targets))})"
        )
        with self.engine.transaction() as db:
            pending = db.execute(
                "UPDATE images SET status = 'pending' WHERE status = 'ready' "
                f"AND is_deleted = 0 AND EXISTS ({unfinished})",
                list(targets),
            ).rowcount
            ready = db.execute(
                "UPDATE images SET status = 'ready', error = NULL WHERE status = 'pending' "
                f"AND is_deleted = 0 AND NOT EXISTS ({unfinished})",
                list(targets),
            ).rowcount
        return int(ready), int(pending)
