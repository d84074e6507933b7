"""Connections and transactions: one connection per thread, explicit write transactions.

Connections must not be shared across threads mid-transaction, so each thread gets its
own, opened through the dialect; `transaction` commits on success and rolls back on any
exception. Every store of the catalog reaches the database through one `Engine`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from imgdex.catalog.dialect import Connection, Dialect

__all__ = ["Engine", "Store", "chunks", "marks"]


class Engine:
    """Per-thread connections to one database, through a dialect. Blocking."""

    def __init__(self, dialect: Dialect, target: str) -> None:
        self.dialect = dialect
        self.target = target
        self._local = threading.local()
        self._all: list[Connection] = []
        self._lock = threading.Lock()

    def connection(self) -> Connection:
        """This thread's connection, opened on first use."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.dialect.connect(self.target)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on any exception."""
        conn = self.connection()
        conn.execute(self.dialect.begin)
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of one query, on this thread's connection (inside the transaction
        this thread has open, if any)."""
        return self.connection().execute(sql, params).fetchall()

    def close(self) -> None:
        """Close every thread's connection; a later call opens new ones."""
        with self._lock:
            for conn in self._all:
                self.dialect.close(conn)
            self._all.clear()
        self._local = threading.local()


class Store:
    """Base of the per-area stores: SQL over one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.engine.read(sql, params)


def chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    """`items` in slices of at most `size` (engines cap the parameters of a statement)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def marks(n: int) -> str:
    """``?, ?, ...``: `n` placeholders for an IN list."""
    return ",".join("?" * n)
