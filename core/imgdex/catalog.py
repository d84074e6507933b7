"""The SQLite catalog (WAL mode): images, descriptions, vector entries, jobs, plugin state.

The catalog is the record of what the library holds; files and vector indexes are
checked against it at start-up. Background work is rows of `jobs`, queued in the same
transaction as whatever caused it and deleted in the same transaction as its result, so
a kill at any moment neither loses a job nor finishes one twice.

Each thread gets its own connection (SQLite connections must not be shared across
threads mid-transaction); writes use ``BEGIN IMMEDIATE`` transactions, so concurrent
writers queue on SQLite's lock instead of failing.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

__all__ = [
    "Catalog",
    "DescriptionRow",
    "ImageRow",
    "IndexEntry",
    "Job",
    "JobKind",
    "VectorEntry",
    "vector_job_kind",
]

JobKind = Literal["embed_image", "embed_text", "describe"]


def vector_job_kind(what: str) -> JobKind:
    """The job that writes a vector of `what`: an embedder's `stores` modality, or a
    vector entry's method (``"image"``, or a description method)."""
    return "embed_image" if what == "image" else "embed_text"


SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    sha256       TEXT PRIMARY KEY,           -- first 32 hex chars of the SHA-256
    sha256_full  TEXT NOT NULL,              -- all 64, to detect 128-bit collisions
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    file_size    INTEGER NOT NULL,
    format       TEXT NOT NULL,
    filename     TEXT NOT NULL,              -- name of the original inside its directory
    created_at   DATETIME NOT NULL DEFAULT (datetime('now')),
    source       TEXT,
    status       TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ready', 'failed')),
    error        TEXT,
    is_deleted   INTEGER NOT NULL DEFAULT 0,
    deleted_at   DATETIME,
    original_name TEXT                       -- the name it was uploaded as (version 3)
);
CREATE TABLE IF NOT EXISTS descriptions (
    image_sha256 TEXT NOT NULL REFERENCES images(sha256) ON DELETE CASCADE,
    method       TEXT NOT NULL,
    content      TEXT NOT NULL,
    created_at   DATETIME NOT NULL DEFAULT (datetime('now')),
    updated_at   DATETIME NOT NULL DEFAULT (datetime('now')),
    PRIMARY KEY (image_sha256, method)
);
CREATE TABLE IF NOT EXISTS vector_entries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- the label in the vector index
    image_sha256  TEXT NOT NULL REFERENCES images(sha256) ON DELETE CASCADE,
    method        TEXT NOT NULL,                      -- 'image' or a description method
    model         TEXT NOT NULL,
    model_version TEXT NOT NULL,
    index_name    TEXT NOT NULL,
    created_at    DATETIME NOT NULL DEFAULT (datetime('now')),
    UNIQUE (image_sha256, method, index_name)
);
CREATE TABLE IF NOT EXISTS plugin_state (
    name       TEXT PRIMARY KEY,
    enabled    INTEGER NOT NULL,
    updated_at DATETIME NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL CHECK (kind IN ('embed_image', 'embed_text', 'describe')),
    target       TEXT NOT NULL,                      -- index name, or describer method
    image_sha256 TEXT NOT NULL REFERENCES images(sha256) ON DELETE CASCADE,
    method       TEXT NOT NULL,                      -- 'image' or a description method
    state        TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_run_at  REAL NOT NULL DEFAULT 0,            -- unix time; back-off after failures
    error        TEXT,
    created_at   DATETIME NOT NULL DEFAULT (datetime('now')),
    updated_at   DATETIME NOT NULL DEFAULT (datetime('now')),
    UNIQUE (kind, target, image_sha256, method)
);
-- Which index of a model family answers searches: 'active' (the one that does),
-- 'building' (a new model version filling up behind the active one) or 'retired'
-- (replaced, kept on disk until an admin removes it).
CREATE TABLE IF NOT EXISTS index_roles (
    name       TEXT PRIMARY KEY,
    family     TEXT NOT NULL,
    plugin     TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('active', 'building', 'retired')),
    settings   TEXT NOT NULL DEFAULT '{}',           -- the plugin section that built it
    updated_at DATETIME NOT NULL DEFAULT (datetime('now'))
);
CREATE INDEX IF NOT EXISTS idx_images_created ON images(created_at);
CREATE INDEX IF NOT EXISTS idx_images_source ON images(source);
CREATE INDEX IF NOT EXISTS idx_images_status ON images(status);
CREATE INDEX IF NOT EXISTS idx_images_deleted ON images(is_deleted);
CREATE INDEX IF NOT EXISTS idx_desc_method ON descriptions(method);
CREATE INDEX IF NOT EXISTS idx_vector_index ON vector_entries(index_name, id);
CREATE INDEX IF NOT EXISTS idx_vector_sha256 ON vector_entries(image_sha256);
CREATE INDEX IF NOT EXISTS idx_jobs_claim ON jobs(kind, target, state, next_run_at);
CREATE INDEX IF NOT EXISTS idx_jobs_image ON jobs(image_sha256);
"""

_IMAGE_COLUMNS = (
    "sha256, sha256_full, width, height, file_size, format, filename, created_at, source, "
    "status, error, is_deleted, deleted_at, original_name"
)


@dataclass(frozen=True, slots=True)
class ImageRow:
    sha256: str
    sha256_full: str
    width: int
    height: int
    file_size: int
    format: str
    filename: str
    created_at: str
    source: str | None
    status: str
    error: str | None
    is_deleted: int
    deleted_at: str | None
    original_name: str | None = None  # the uploaded file's own name, when it had one


@dataclass(frozen=True, slots=True)
class DescriptionRow:
    method: str
    content: str
    created_at: str
    updated_at: str
    indexes: tuple[str, ...]  # the indexes holding a vector of it

    @property
    def has_embedding(self) -> int:
        return 1 if self.indexes else 0


@dataclass(frozen=True, slots=True)
class VectorEntry:
    id: int
    image_sha256: str
    method: str
    index_name: str


class IndexEntry(NamedTuple):
    """A vector entry of one index, with what search needs of its image."""

    id: int
    image: str
    method: str
    width: int
    height: int
    image_deleted: bool

    @property
    def key(self) -> tuple[str, str, int, int]:
        return self.image, self.method, self.width, self.height


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    image_sha256: str
    method: str
    attempts: int

    @property
    def item(self) -> str:
        """How the job's item is named in reports: the image, or image/method."""
        return self.image_sha256 if self.method == "image" else f"{self.image_sha256}/{self.method}"


class Catalog:
    """All SQL lives here. Methods are blocking; call them from worker threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        conn = self._conn()
        conn.executescript(_SCHEMA)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(images)")}
        if "original_name" not in columns:  # a catalog from before version 3
            conn.execute("ALTER TABLE images ADD COLUMN original_name TEXT")
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL survives any process kill; a power cut may lose the last commits,
            # which start-up reconciliation re-derives from the files on disk.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            # Reads of a large catalog through the page cache cost read() calls; mapped
            # pages are shared by every connection (docs/benchmarks.md, search item 4).
            conn.execute("PRAGMA mmap_size=268435456")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed on success, rolled back on any exception."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn().execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
        self._local = threading.local()

    def journal_mode(self) -> str:
        return str(self._read("PRAGMA journal_mode")[0][0])

    # --- images -----------------------------------------------------------------

    def get_image(self, id_: str) -> ImageRow | None:
        rows = self._read(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE sha256 = ?", (id_,))
        return ImageRow(*rows[0]) if rows else None

    def get_images(self, ids: Iterable[str]) -> dict[str, ImageRow]:
        ids = list(ids)
        out: dict[str, ImageRow] = {}
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            for row in self._read(
                f"SELECT {_IMAGE_COLUMNS} FROM images WHERE sha256 IN ({marks})", chunk
            ):
                out[row[0]] = ImageRow(*row)
        return out

    def image_sizes(
        self, db: sqlite3.Connection | None, ids: Iterable[str]
    ) -> dict[str, tuple[int, int]]:
        """``{image: (width, height)}`` of the images among `ids` that exist."""
        conn = db or self._conn()
        out: dict[str, tuple[int, int]] = {}
        for chunk in _chunks(list(set(ids)), 500):
            marks = ",".join("?" * len(chunk))
            for id_, width, height in conn.execute(
                f"SELECT sha256, width, height FROM images WHERE sha256 IN ({marks})", chunk
            ):
                out[id_] = (int(width), int(height))
        return out

    def insert_image(
        self,
        db: sqlite3.Connection,
        *,
        id_: str,
        full: str,
        width: int,
        height: int,
        file_size: int,
        fmt: str,
        filename: str,
        source: str | None,
        status: str,
        original_name: str | None = None,
    ) -> None:
        db.execute(
            "INSERT INTO images (sha256, sha256_full, width, height, file_size, format, "
            "filename, source, status, original_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (id_, full, width, height, file_size, fmt, filename, source, status, original_name),
        )

    def set_status(self, id_: str, status: str, error: str | None = None) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE images SET status = ?, error = ? WHERE sha256 = ?", (status, error, id_)
            )

    def set_deleted(self, db: sqlite3.Connection, id_: str, deleted: bool) -> None:
        db.execute(
            "UPDATE images SET is_deleted = ?, deleted_at = "
            "CASE WHEN ? THEN datetime('now') ELSE NULL END WHERE sha256 = ?",
            (int(deleted), int(deleted), id_),
        )

    def delete_image_rows(self, db: sqlite3.Connection, id_: str) -> None:
        db.execute("DELETE FROM jobs WHERE image_sha256 = ?", (id_,))
        db.execute("DELETE FROM vector_entries WHERE image_sha256 = ?", (id_,))
        db.execute("DELETE FROM descriptions WHERE image_sha256 = ?", (id_,))
        db.execute("DELETE FROM images WHERE sha256 = ?", (id_,))

    def list_images(
        self,
        *,
        offset: int,
        limit: int,
        status: str | None,
        source: str | None,
        include_deleted: bool,
    ) -> tuple[list[ImageRow], int]:
        where, params = ["1=1"], []
        if not include_deleted:
            where.append("is_deleted = 0")
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if source is not None:
            where.append("source = ?")
            params.append(source)
        clause = " AND ".join(where)
        total = self._read(f"SELECT COUNT(*) FROM images WHERE {clause}", params)[0][0]
        rows = self._read(
            f"SELECT {_IMAGE_COLUMNS} FROM images WHERE {clause} "
            "ORDER BY created_at DESC, sha256 LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [ImageRow(*r) for r in rows], int(total)

    def all_image_ids(self) -> set[str]:
        return {r[0] for r in self._read("SELECT sha256 FROM images")}

    # --- descriptions -----------------------------------------------------------

    def get_descriptions(self, id_: str) -> list[DescriptionRow]:
        rows = self._read(
            "SELECT d.method, d.content, d.created_at, d.updated_at, "
            "(SELECT group_concat(v.index_name, ',') FROM vector_entries v "
            " WHERE v.image_sha256 = d.image_sha256 AND v.method = d.method) "
            "FROM descriptions d WHERE d.image_sha256 = ? ORDER BY d.created_at, d.method",
            (id_,),
        )
        return [
            DescriptionRow(m, c, ca, ua, tuple(sorted(ix.split(","))) if ix else ())
            for m, c, ca, ua, ix in rows
        ]

    def get_description(self, id_: str, method: str) -> str | None:
        rows = self._read(
            "SELECT content FROM descriptions WHERE image_sha256 = ? AND method = ?",
            (id_, method),
        )
        return str(rows[0][0]) if rows else None

    def description_texts(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        keys = list(set(keys))
        out: dict[tuple[str, str], str] = {}
        for chunk in _chunks(keys, 400):
            marks = ",".join("(?, ?)" for _ in chunk)
            flat = [x for key in chunk for x in key]
            for image, method, content in self._read(
                "SELECT image_sha256, method, content FROM descriptions "
                f"WHERE (image_sha256, method) IN (VALUES {marks})",
                flat,
            ):
                out[(image, method)] = content
        return out

    def description_count(self, method: str) -> int:
        """Descriptions written under `method` for live images."""
        return int(
            self._read(
                "SELECT COUNT(*) FROM descriptions d JOIN images i ON i.sha256 = d.image_sha256 "
                "WHERE d.method = ? AND i.is_deleted = 0",
                (method,),
            )[0][0]
        )

    def upsert_description(
        self, db: sqlite3.Connection, id_: str, method: str, content: str
    ) -> None:
        db.execute(
            "INSERT INTO descriptions (image_sha256, method, content) VALUES (?, ?, ?) "
            "ON CONFLICT (image_sha256, method) DO UPDATE SET content = excluded.content, "
            "updated_at = datetime('now')",
            (id_, method, content),
        )

    def delete_description(self, db: sqlite3.Connection, id_: str, method: str) -> int:
        db.execute(
            "DELETE FROM jobs WHERE kind = 'embed_text' AND image_sha256 = ? AND method = ?",
            (id_, method),
        )
        return db.execute(
            "DELETE FROM descriptions WHERE image_sha256 = ? AND method = ?", (id_, method)
        ).rowcount

    # --- vector entries ---------------------------------------------------------

    def add_vector_entry(
        self,
        db: sqlite3.Connection,
        image: str,
        method: str,
        model: str,
        version: str,
        index: str,
        content: str | None = None,
    ) -> int | None:
        """Insert an entry and return its id; None when it exists already, when the
        image is gone, or (for descriptions, `content` given) when the description no
        longer has the text that was embedded: a late write never resurrects stale data.
        """
        guard = "EXISTS (SELECT 1 FROM images WHERE sha256 = ? AND is_deleted = 0)"
        params: list[Any] = [image, method, model, version, index, image]
        if content is not None:
            guard += (
                " AND EXISTS (SELECT 1 FROM descriptions WHERE image_sha256 = ? "
                "AND method = ? AND content = ?)"
            )
            params += [image, method, content]
        row = db.execute(
            "INSERT INTO vector_entries (image_sha256, method, model, model_version, index_name) "
            f"SELECT ?, ?, ?, ?, ? WHERE {guard} ON CONFLICT DO NOTHING RETURNING id",
            params,
        ).fetchone()
        return int(row[0]) if row else None

    def vector_entries_of(
        self, db: sqlite3.Connection | None, image: str, method: str | None = None
    ) -> list[VectorEntry]:
        conn = db or self._conn()
        sql = (
            "SELECT id, image_sha256, method, index_name FROM vector_entries WHERE image_sha256 = ?"
        )
        params: list[Any] = [image]
        if method is not None:
            sql += " AND method = ?"
            params.append(method)
        return [VectorEntry(*r) for r in conn.execute(sql, params).fetchall()]

    def delete_vector_entries(self, db: sqlite3.Connection, ids: Sequence[int]) -> None:
        for chunk in _chunks(list(ids), 500):
            db.execute(
                f"DELETE FROM vector_entries WHERE id IN ({','.join('?' * len(chunk))})", chunk
            )

    def resolve_entries(self, ids: Sequence[int]) -> dict[int, tuple[str, str]]:
        """Map vector ids to ``(image, method)`` for search results.

        No join with `images`: soft-deleted images' vectors are hidden in the index, and
        the page of results re-reads its image rows anyway (the race guard).
        """
        out: dict[int, tuple[str, str]] = {}
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            for id_, image, method in self._read(
                f"SELECT id, image_sha256, method FROM vector_entries WHERE id IN ({marks})",
                chunk,
            ):
                out[id_] = (image, method)
        return out

    def index_labels(self, index: str) -> tuple[set[int], set[int]]:
        """``(all labels, labels of soft-deleted images)`` recorded for an index."""
        rows = self.index_entries(index)
        return {r.id for r in rows}, {r.id for r in rows if r.image_deleted}

    def index_entries(self, index: str) -> list[IndexEntry]:
        """Every entry of an index, by label, with its image's size and deletion flag."""
        return [entry for batch in self.index_entry_batches(index) for entry in batch]

    def index_entry_batches(self, index: str, size: int = 2000) -> Iterator[list[IndexEntry]]:
        """`index_entries` a batch at a time, so that a large index is never held as
        millions of Python objects at once (memory the process would keep after freeing
        them). Each batch is its own query, from the last label on (no statement stays
        open between batches, so the caller may write meanwhile); entries added during
        the iteration with higher labels are included."""
        after = -1
        while rows := self._read(
            "SELECT v.id, v.image_sha256, v.method, i.width, i.height, i.is_deleted "
            "FROM vector_entries v JOIN images i ON i.sha256 = v.image_sha256 "
            "WHERE v.index_name = ? AND v.id > ? ORDER BY v.id LIMIT ?",
            (index, after, size),
        ):
            yield [
                IndexEntry(int(id_), image, method, int(width), int(height), bool(deleted))
                for id_, image, method, width, height, deleted in rows
            ]
            after = int(rows[-1][0])

    def entries_by_id(self, ids: Iterable[int]) -> list[VectorEntry]:
        out: list[VectorEntry] = []
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            out += [
                VectorEntry(*r)
                for r in self._read(
                    "SELECT id, image_sha256, method, index_name FROM vector_entries "
                    f"WHERE id IN ({marks})",
                    chunk,
                )
            ]
        return out

    def index_counts(self) -> dict[str, int]:
        return {
            name: int(n)
            for name, n in self._read(
                "SELECT index_name, COUNT(*) FROM vector_entries GROUP BY index_name"
            )
        }

    def soft_deleted_counts(self) -> dict[str, int]:
        """Vectors per index that belong to soft-deleted images (hidden, not searchable)."""
        return {
            name: int(n)
            for name, n in self._read(
                "SELECT v.index_name, COUNT(*) FROM images i JOIN vector_entries v "
                "ON v.image_sha256 = i.sha256 WHERE i.is_deleted = 1 GROUP BY v.index_name"
            )
        }

    # --- jobs -------------------------------------------------------------------

    def queue_jobs(
        self,
        db: sqlite3.Connection,
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
        for target in targets:
            db.execute(
                "INSERT INTO jobs (kind, target, image_sha256, method) SELECT ?, ?, ?, ? "
                "WHERE EXISTS (SELECT 1 FROM images WHERE sha256 = ?) "
                "ON CONFLICT (kind, target, image_sha256, method) DO UPDATE SET "
                "state = 'queued', attempts = 0, next_run_at = 0, error = NULL, "
                "updated_at = datetime('now')",
                (kind, target, image, method, image),
            )

    def plan(self, kind: JobKind, target: str, image: str | None = None) -> int:
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
        select += " ORDER BY d.rowid" if kind == "embed_text" else " ORDER BY i.rowid"
        with self.transaction() as db:
            return int(
                db.execute(
                    "INSERT INTO jobs (kind, target, image_sha256, method) "
                    f"{select} ON CONFLICT DO NOTHING",
                    params,
                ).rowcount
            )

    def claim_jobs(self, kind: JobKind, target: str, limit: int, now: float) -> list[Job]:
        """Mark up to `limit` due jobs of live images running and return them, oldest first."""
        with self.transaction() as db:
            rows = db.execute(
                "UPDATE jobs SET state = 'running', updated_at = datetime('now') WHERE id IN "
                "(SELECT j.id FROM jobs j JOIN images i ON i.sha256 = j.image_sha256 "
                " WHERE j.kind = ? AND j.target = ? AND j.state = 'queued' "
                " AND j.next_run_at <= ? AND i.is_deleted = 0 ORDER BY j.id LIMIT ?) "
                "RETURNING id, image_sha256, method, attempts",
                (kind, target, now, limit),
            ).fetchall()
        return sorted((Job(*r) for r in rows), key=lambda j: j.id)

    def finish_vector_job(
        self, db: sqlite3.Connection, index: str, image: str, method: str
    ) -> None:
        """Drop the job for a vector once the vector is recorded (same transaction)."""
        kind = vector_job_kind(method)
        db.execute(
            "DELETE FROM jobs WHERE kind = ? AND target = ? AND image_sha256 = ? AND method = ? "
            "AND EXISTS (SELECT 1 FROM vector_entries WHERE image_sha256 = ? AND method = ? "
            "AND index_name = ?)",
            (kind, index, image, method, image, method, index),
        )

    def finish_jobs(self, db: sqlite3.Connection, ids: Sequence[int]) -> None:
        for chunk in _chunks(list(ids), 500):
            db.execute(f"DELETE FROM jobs WHERE id IN ({','.join('?' * len(chunk))})", chunk)

    def release_jobs(self, ids: Sequence[int]) -> None:
        """Put claimed jobs that are still running back in the queue, attempts untouched."""
        with self.transaction() as db:
            for chunk in _chunks(list(ids), 500):
                db.execute(
                    "UPDATE jobs SET state = 'queued', updated_at = datetime('now') "
                    f"WHERE state = 'running' AND id IN ({','.join('?' * len(chunk))})",
                    chunk,
                )

    def fail_job(self, job_id: int, error: str, *, retry_at: float | None) -> str:
        """Count a failed attempt: back in the queue until `retry_at`, or `failed` for
        good when `retry_at` is None. Returns the job's new state ('' when it is gone)."""
        state = "failed" if retry_at is None else "queued"
        with self.transaction() as db:
            row = db.execute(
                "UPDATE jobs SET state = ?, attempts = attempts + 1, next_run_at = ?, "
                "error = ?, updated_at = datetime('now') WHERE id = ? AND state = 'running' "
                "RETURNING state",
                (state, retry_at or 0.0, error, job_id),
            ).fetchone()
        return str(row[0]) if row else ""

    def requeue_running(self) -> int:
        """After a restart nothing is running: what was claimed goes back in the queue."""
        with self.transaction() as db:
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
        with self.transaction() as db:
            db.execute(
                "UPDATE images SET status = 'pending', error = NULL WHERE status = 'failed' "
                "AND sha256 IN (SELECT image_sha256 FROM jobs WHERE kind = 'embed_image' "
                f"AND {where})",
                params,
            )
            return int(
                db.execute(
                    "UPDATE jobs SET state = 'queued', attempts = 0, next_run_at = 0, "
                    f"error = NULL, updated_at = datetime('now') WHERE {where}",
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

    def failed_jobs(self, limit: int = 20) -> dict[tuple[str, str], list[tuple[Job, str]]]:
        """The latest `limit` failed jobs per ``(kind, target)``, each with its error."""
        out: dict[tuple[str, str], list[tuple[Job, str]]] = {}
        for kind, target, id_, image, method, attempts, error in self._read(
            "SELECT kind, target, id, image_sha256, method, attempts, error FROM ("
            " SELECT *, ROW_NUMBER() OVER (PARTITION BY kind, target ORDER BY id DESC) AS n "
            " FROM jobs WHERE state = 'failed') WHERE n <= ? ORDER BY id",
            (limit,),
        ):
            job = Job(id_, image, method, attempts)
            out.setdefault((kind, target), []).append((job, str(error or "")))
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
            f"AND j.kind = 'embed_image' AND j.target IN ({','.join('?' * len(targets))})"
        )
        sql = (
            "UPDATE images SET status = 'ready', error = NULL WHERE status = 'pending' "
            f"AND is_deleted = 0 AND NOT EXISTS ({unfinished})"
        )
        params: list[Any] = list(targets)
        if ids is not None:
            if not ids:
                return 0
            sql += f" AND sha256 IN ({','.join('?' * len(ids))})"
            params += list(ids)
        with self.transaction() as db:
            return int(db.execute(sql, params).rowcount)

    def image_indexes(self, id_: str) -> set[str]:
        rows = self._read(
            "SELECT index_name FROM vector_entries WHERE image_sha256 = ? AND method = 'image'",
            (id_,),
        )
        return {r[0] for r in rows}

    # --- plugin state -----------------------------------------------------------

    def plugin_states(self) -> dict[str, bool]:
        return {n: bool(e) for n, e in self._read("SELECT name, enabled FROM plugin_state")}

    def set_plugin_state(self, name: str, enabled: bool) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO plugin_state (name, enabled) VALUES (?, ?) ON CONFLICT (name) "
                "DO UPDATE SET enabled = excluded.enabled, updated_at = datetime('now')",
                (name, int(enabled)),
            )

    # --- index roles (model upgrades) -------------------------------------------

    def index_roles(self) -> dict[str, tuple[str, str, str, dict[str, Any]]]:
        """``{index: (family, plugin, role, plugin settings)}``."""
        return {
            name: (family, plugin, role, json.loads(settings))
            for name, family, plugin, role, settings in self._read(
                "SELECT name, family, plugin, role, settings FROM index_roles"
            )
        }

    def set_index_role(
        self,
        db: sqlite3.Connection,
        name: str,
        role: str,
        *,
        family: str | None = None,
        plugin: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        """Record an index's role; family, plugin and settings are kept when not given."""
        db.execute(
            "INSERT INTO index_roles (name, family, plugin, role, settings) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET role = excluded.role, "
            "family = CASE WHEN ? IS NULL THEN family ELSE excluded.family END, "
            "plugin = CASE WHEN ? IS NULL THEN plugin ELSE excluded.plugin END, "
            "settings = CASE WHEN ? IS NULL THEN settings ELSE excluded.settings END, "
            "updated_at = datetime('now')",
            (
                name,
                family or "",
                plugin or "",
                role,
                json.dumps(settings or {}, sort_keys=True, default=str),
                family,
                plugin,
                None if settings is None else 1,
            ),
        )

    def forget_index(self, db: sqlite3.Connection, name: str) -> int:
        """Remove an index's vector entries, jobs and role; returns the entries removed."""
        db.execute("DELETE FROM jobs WHERE kind != 'describe' AND target = ?", (name,))
        db.execute("DELETE FROM index_roles WHERE name = ?", (name,))
        return int(db.execute("DELETE FROM vector_entries WHERE index_name = ?", (name,)).rowcount)

    # --- stats ------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        by_status = dict(
            self._read("SELECT status, COUNT(*) FROM images WHERE is_deleted = 0 GROUP BY status")
        )
        deleted = self._read("SELECT COUNT(*) FROM images WHERE is_deleted = 1")[0][0]
        size = self._read("SELECT COALESCE(SUM(file_size), 0) FROM images WHERE is_deleted = 0")
        methods = dict(self._read("SELECT method, COUNT(*) FROM descriptions GROUP BY method"))
        return {
            "image_count": int(sum(by_status.values())),
            "by_status": {k: int(v) for k, v in by_status.items()},
            "deleted_count": int(deleted),
            "total_file_size": int(size[0][0]),
            "description_count": int(sum(methods.values())),
            "descriptions_by_method": {k: int(v) for k, v in methods.items()},
        }


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
