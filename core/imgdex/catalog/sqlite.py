"""The SQLite dialect: connection pragmas and SQLite's SQL fragments (its schema DDL is
`imgdex.catalog.sqlite_schema`).

With `sqlite_schema` the only modules of the catalog that may use SQLite-only constructs
(a test checks).
WAL mode, one connection per thread, and ``BEGIN IMMEDIATE`` write transactions so
that concurrent writers queue on SQLite's lock instead of failing.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import time
from collections.abc import Sequence
from typing import cast

from imgdex.catalog import sqlite_schema
from imgdex.catalog.dialect import Connection, Dialect, KeywordSql, Migration

__all__ = ["SqliteDialect"]

_KEYWORD_SQL = KeywordSql(
    put="INSERT INTO keyword_fts (rowid, body) VALUES (?, ?)",
    remove="DELETE FROM keyword_fts WHERE rowid = ?",
    # bm25() is lower for better matches: negated, so that higher is better everywhere.
    search=(
        "SELECT d.image_sha256, d.field, -bm25(keyword_fts) AS score FROM keyword_fts "
        "JOIN keyword_docs d ON d.id = keyword_fts.rowid "
        "JOIN images i ON i.sha256 = d.image_sha256 "
        "WHERE keyword_fts MATCH ? AND i.is_deleted = 0 "
        "ORDER BY bm25(keyword_fts), d.image_sha256, d.field LIMIT ?"
    ),
    term_docs="SELECT term, doc FROM keyword_vocab WHERE term IN ({marks})",
)


_CLAIM = (
    "UPDATE jobs SET state = 'running', updated_at = datetime('now') WHERE id IN "
    "(SELECT j.id FROM jobs j JOIN images i ON i.sha256 = j.image_sha256 "
    " WHERE j.kind = ? AND j.target = ? AND j.state = 'queued' "
    " AND j.next_run_at <= ? AND i.is_deleted = 0 ORDER BY j.id LIMIT ?) "
    # Claimers never collide: the write transaction (BEGIN IMMEDIATE) holds the
    # database's one write lock while it selects and marks.
    "RETURNING id, image_sha256, method, attempts"
)


_BUSY_SECONDS = 30.0  # how long a statement waits for another connection's lock


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode=WAL``, tried again while another connection switches the
    same new file: two openers each holding the shared lock and wanting the exclusive
    one is a deadlock, which SQLite answers at once with "database is locked" instead
    of waiting out the busy timeout (54 of 915 runs of four openers on a loaded machine
    failed so). Once the file is in WAL mode the pragma only reads."""
    deadline = time.monotonic() + _BUSY_SECONDS
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(random.uniform(0.005, 0.05))  # apart, so the openers do not meet again


class SqliteDialect(Dialect):
    """SQLite 3.35+ (``RETURNING``), in WAL mode."""

    name = "sqlite"
    error = sqlite3.Error
    begin = "BEGIN IMMEDIATE"
    now = "datetime('now')"

    def connect(self, target: str) -> Connection:
        """A connection in autocommit mode (transactions are explicit), WAL, foreign keys."""
        # The busy timeout is set before anything else: switching a new file to WAL
        # takes a lock another opener may hold (a migration), and sqlite3's default
        # 5 s then fails "database is locked" on a busy machine.
        conn = sqlite3.connect(
            target, isolation_level=None, check_same_thread=False, timeout=_BUSY_SECONDS
        )
        conn.execute(f"PRAGMA busy_timeout={int(_BUSY_SECONDS * 1000)}")
        _switch_to_wal(conn)
        # WAL + NORMAL survives any process kill; a power cut may lose the last commits,
        # which start-up reconciliation re-derives from the files on disk.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        # Reads of a large catalog through the page cache cost read() calls; mapped
        # pages are shared by every connection (docs/benchmarks.md).
        conn.execute("PRAGMA mmap_size=268435456")
        return conn

    def close(self, conn: Connection) -> None:
        """Close a connection; one already broken is let go."""
        with contextlib.suppress(sqlite3.Error):
            cast(sqlite3.Connection, conn).close()

    def journal_mode(self, conn: Connection) -> str:
        """``wal`` once `connect` has set it."""
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])

    def migrations(self) -> Sequence[Migration]:
        """The SQLite schema, version 2 (the baseline) on."""
        return sqlite_schema.migrations(self)

    def upsert(self, conflict: str, updates: str) -> str:
        """``ON CONFLICT (...) DO UPDATE SET ...``."""
        return f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}"

    def insert_ignore(self) -> str:
        """``ON CONFLICT DO NOTHING``."""
        return "ON CONFLICT DO NOTHING"

    def insertion_order(self, alias: str) -> str:
        """The rowid: SQLite assigns it in insertion order."""
        return f"{alias}.rowid"

    def list_agg(self, expr: str, separator: str) -> str:
        """SQLite's ``group_concat``."""
        return f"group_concat({expr}, '{separator}')"

    def keyword(self) -> KeywordSql:
        """FTS5 with BM25 ranking."""
        return _KEYWORD_SQL

    def claim_jobs(self) -> str:
        """One UPDATE ... RETURNING inside the caller's write transaction."""
        return _CLAIM

    def order_nulls_last(self, expr: str, descending: bool) -> str:
        """SQLite sorts NULL first: descending puts it last already (and keeps the
        index usable); ascending needs the extra key."""
        return f"{expr} DESC" if descending else f"{expr} IS NULL, {expr} ASC"

    def unindexed(self, expr: str) -> str:
        """Unary plus: SQLite's documented way to keep a term from using an index."""
        return f"+{expr}"
