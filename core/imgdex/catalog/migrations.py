"""Schema versions: the dialect's numbered migrations, applied at start-up.

``schema_version`` holds one row per applied migration. The migrations a catalog lacks
run in one write transaction together with their rows, so two processes opening the
catalog at once apply each once, and a kill mid-way leaves the previous version intact.
One transaction, not one per migration: openers racing for a dozen write locks each
starved one another on a loaded machine (a waiter polls the lock, and others took it in
between) until one of them gave up after the 30 s busy timeout, "database is locked".
"""

from __future__ import annotations

from imgdex.catalog.engine import Engine

__all__ = ["CatalogTooNew", "current_version", "migrate"]

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
)


class CatalogTooNew(RuntimeError):
    """The catalog was migrated by a newer imgdex than this one."""


def current_version(engine: Engine) -> int:
    """The highest applied migration (0 for a catalog without any)."""
    rows = engine.read("SELECT MAX(version) FROM schema_version")
    return int(rows[0][0] or 0)


def migrate(engine: Engine) -> list[int]:
    """Apply the migrations the catalog lacks, oldest first; returns their versions.

    Each version is looked up on its own, so numbering may have gaps: a catalog at 7
    still gets a 5 or 6 added later (migrations must not depend on running in order
    with versions that did not exist when they were written)."""
    dialect = engine.dialect
    migrations = sorted(dialect.migrations(), key=lambda m: m.version)
    latest = migrations[-1].version if migrations else 0
    applied: list[int] = []
    with engine.transaction() as db:
        db.execute(_VERSION_TABLE)
        if (found := current_version(engine)) > latest:
            raise CatalogTooNew(
                f"the catalog is at schema version {found}, this imgdex knows up to {latest}: "
                "upgrade imgdex"
            )
        for migration in migrations:
            done = db.execute(
                "SELECT 1 FROM schema_version WHERE version = ?", (migration.version,)
            ).fetchone()
            if done:
                continue
            for statement in migration.statements:
                db.execute(statement)
            if migration.after is not None:
                migration.after(db)
            db.execute(
                "INSERT INTO schema_version (version, name, applied_at) "
                f"VALUES (?, ?, {dialect.now})",
                (migration.version, migration.name),
            )
            applied.append(migration.version)
    return applied
