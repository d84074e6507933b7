"""The dialect seam: what the catalog's SQL needs from a database engine.

The area stores write portable SQL with ``?`` placeholders and take every engine-specific
fragment (the current time, upserts, transaction start, job claiming, the schema's DDL)
from a `Dialect`. SQLite is the one implementation today (`imgdex.catalog.sqlite`); a
PostgreSQL dialect is an added module whose `connect` hands out connections that take
``?`` placeholders (a thin wrapper over the driver's own style).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Connection", "Cursor", "Dialect", "KeywordSql", "Migration"]


class Cursor(Protocol):
    """The result of one statement (a DB-API cursor)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection inside an open transaction (a DB-API connection with `execute`)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered schema change: statements run in one transaction, then recorded."""

    version: int
    name: str
    statements: tuple[str, ...]
    #: Runs after the statements, in the same transaction: a backfill that needs Python
    #: (the keyword index's text preparation), written in portable SQL.
    after: Callable[[Connection], None] | None = None


@dataclass(frozen=True, slots=True)
class KeywordSql:
    """The keyword (full-text) index's engine-specific statements.

    ``keyword_docs (id, image_sha256, field)`` is portable; the text lives in the engine's
    full-text table, one row per doc id."""

    #: Parameters: doc id, prepared text.
    put: str
    #: Parameters: doc id.
    remove: str
    #: Parameters: match expression, limit. Rows: image, field, score (higher is better),
    #: best first, live images only.
    search: str
    #: Parameters: the terms (an IN list of `n` placeholders, see `marks`). Rows: term,
    #: how many documents hold it.
    term_docs: str


class Dialect(abc.ABC):
    """Engine-specific SQL and connection set-up; one subclass per database engine."""

    name: str
    #: The engine's base exception class (what `close` tolerates).
    error: type[Exception]
    #: Starts a write transaction that takes the write lock at once.
    begin: str
    #: An SQL expression for the current time, for timestamp columns.
    now: str

    @abc.abstractmethod
    def connect(self, target: str) -> Connection:
        """Open a connection in autocommit mode, configured for the catalog; it takes
        ``?`` placeholders."""

    @abc.abstractmethod
    def close(self, conn: Connection) -> None:
        """Close a connection."""

    @abc.abstractmethod
    def journal_mode(self, conn: Connection) -> str:
        """How the engine journals writes, for the system report (``wal`` for SQLite)."""

    @abc.abstractmethod
    def migrations(self) -> Sequence[Migration]:
        """The schema as numbered migrations, oldest first."""

    @abc.abstractmethod
    def upsert(self, conflict: str, updates: str) -> str:
        """The clause after an INSERT that updates the row when `conflict` columns clash;
        `updates` may read the proposed row as ``excluded.<column>``."""

    @abc.abstractmethod
    def insert_ignore(self) -> str:
        """The clause after an INSERT that skips rows clashing with a unique key."""

    @abc.abstractmethod
    def insertion_order(self, alias: str) -> str:
        """An expression ordering the rows of table alias `alias` oldest first."""

    @abc.abstractmethod
    def list_agg(self, expr: str, separator: str) -> str:
        """An aggregate joining `expr` over a group with `separator` (a literal)."""

    @abc.abstractmethod
    def keyword(self) -> KeywordSql:
        """The keyword index's statements (full-text search with BM25 ranking)."""

    @abc.abstractmethod
    def claim_jobs(self) -> str:
        """The statement that marks due queued jobs of live images running and returns
        ``(id, image_sha256, method, attempts)``; parameters: kind, target, now, limit.
        Concurrent claimers must never get the same job."""

    @abc.abstractmethod
    def unindexed(self, expr: str) -> str:
        """`expr` (a column) written so that the planner does not use an index for it:
        the image list uses it to choose between walking the sort order and fetching the
        matches first (an engine that plans from statistics may return `expr`)."""

    @abc.abstractmethod
    def order_nulls_last(self, expr: str, descending: bool) -> str:
        """An ORDER BY term sorting `expr` with NULLs after every value, either way."""
