"""The catalog: every SQL statement of imgdex, one module per area, typed rows.

The catalog is the record of what the library holds; files and vector indexes are
checked against it at start-up. Layout:

- `engine`: per-thread connections and transactions; `dialect`: the seam an engine fills
  in; `sqlite`: the SQLite dialect (the only module with SQLite-only SQL);
  `migrations`: numbered schema versions, applied when a `Catalog` opens.
- `images`, `descriptions`, `vectors`, `jobs`, `plugins`, `tags`, `albums`, `keyword`,
  `duplicates`, `users` (users, sessions, API keys, audit log), `shares` (album share
  links): one store per area (`filters` builds the WHERE clause of
  `imgdex.filters.ImageFilters`);
  `rows`: the records they return.

`Catalog` opens the database and offers every store both ways: as narrow stores
(`catalog.images`, `catalog.jobs`, ...) for code that needs one area, and, as before,
every store's methods on the catalog itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from imgdex.catalog.albums import AlbumStore
from imgdex.catalog.descriptions import DescriptionStore
from imgdex.catalog.dialect import Connection, Dialect
from imgdex.catalog.duplicates import DuplicateStore
from imgdex.catalog.engine import Engine, Store
from imgdex.catalog.images import ImageStore
from imgdex.catalog.jobs import JobStore
from imgdex.catalog.keyword import KeywordStore
from imgdex.catalog.migrations import CatalogTooNew, migrate
from imgdex.catalog.plugins import PluginStore
from imgdex.catalog.rows import (
    AlbumRow,
    DescriptionRow,
    FailedJob,
    ImageRow,
    IndexEntry,
    IndexRole,
    Job,
    JobKind,
    TagRow,
    VectorEntry,
    vector_job_kind,
)
from imgdex.catalog.shares import ShareStore
from imgdex.catalog.sqlite import SqliteDialect
from imgdex.catalog.tags import TagStore
from imgdex.catalog.users import UserStore
from imgdex.catalog.vectors import VectorStore

__all__ = [
    "AlbumRow",
    "Catalog",
    "CatalogTooNew",
    "Connection",
    "DescriptionRow",
    "FailedJob",
    "ImageRow",
    "IndexEntry",
    "IndexRole",
    "Job",
    "JobKind",
    "TagRow",
    "VectorEntry",
    "vector_job_kind",
]


# The stores share one engine and name no method twice, so the facade can inherit them
# all: old call sites keep working while new code takes only the store it needs.
class Catalog(
    ImageStore,
    DescriptionStore,
    VectorStore,
    JobStore,
    PluginStore,
    TagStore,
    AlbumStore,
    KeywordStore,
    DuplicateStore,
):
    """The catalog database. Methods are blocking; call them from worker threads."""

    def __init__(self, path: Path, dialect: Dialect | None = None) -> None:
        self.path = path
        engine = Engine(dialect or SqliteDialect(), str(path))
        Store.__init__(self, engine)
        self.images = ImageStore(engine)
        self.descriptions = DescriptionStore(engine)
        self.vectors = VectorStore(engine)
        self.jobs = JobStore(engine)
        self.plugins = PluginStore(engine)
        # Not on the facade: access records are reached only through this store.
        self.users = UserStore(engine)
        self.shares = ShareStore(engine)
        self.tags = TagStore(engine)
        self.albums = AlbumStore(engine)
        self.keyword = KeywordStore(engine)
        self.duplicates = DuplicateStore(engine)
        try:
            migrate(engine)
        except BaseException:
            engine.close()
            raise

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on any exception."""
        with self.engine.transaction() as db:
            yield db

    def journal_mode(self) -> str:
        """How the database journals writes (``wal``)."""
        return self.dialect.journal_mode(self.engine.connection())

    def close(self) -> None:
        """Close every connection; the catalog reopens them on next use."""
        self.engine.close()
