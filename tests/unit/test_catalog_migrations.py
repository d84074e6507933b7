"""Unit tests for imgdex.catalog.migrations: fresh catalogs, catalogs made before numbered
migrations, re-opening, and catalogs from a newer imgdex."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from imgdex.catalog import Catalog, CatalogTooNew, IndexRole
from imgdex.catalog.dialect import Migration
from imgdex.catalog.engine import Engine
from imgdex.catalog.migrations import current_version, migrate
from imgdex.catalog.sqlite import SqliteDialect
from imgdex.filters import ImageFilters, Near

# The schema as imgdex wrote it before numbered migrations (catalog.py, SCHEMA_VERSION = 2),
# copied verbatim: catalogs in the field were made by exactly this.
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    sha256       TEXT PRIMARY KEY,
    sha256_full  TEXT NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    file_size    INTEGER NOT NULL,
    format       TEXT NOT NULL,
    filename     TEXT NOT NULL,
    created_at   DATETIME NOT NULL DEFAULT (datetime('now')),
    source       TEXT,
    status       TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ready', 'failed')),
    error        TEXT,
    is_deleted   INTEGER NOT NULL DEFAULT 0,
    deleted_at   DATETIME
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
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    image_sha256  TEXT NOT NULL REFERENCES images(sha256) ON DELETE CASCADE,
    method        TEXT NOT NULL,
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
    target       TEXT NOT NULL,
    image_sha256 TEXT NOT NULL REFERENCES images(sha256) ON DELETE CASCADE,
    method       TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_run_at  REAL NOT NULL DEFAULT 0,
    error        TEXT,
    created_at   DATETIME NOT NULL DEFAULT (datetime('now')),
    updated_at   DATETIME NOT NULL DEFAULT (datetime('now')),
    UNIQUE (kind, target, image_sha256, method)
);
CREATE TABLE IF NOT EXISTS index_roles (
    name       TEXT PRIMARY KEY,
    family     TEXT NOT NULL,
    plugin     TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('active', 'building', 'retired')),
    settings   TEXT NOT NULL DEFAULT '{}',
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
INSERT INTO meta (key, value) VALUES ('schema_version', '2')
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
"""

IMAGE = "a" * 32
LATEST = max(m.version for m in SqliteDialect().migrations())


def raw(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def versions(path: Path) -> list[tuple[object, ...]]:
    return raw(path, "SELECT version, name, applied_at FROM schema_version ORDER BY version")


def old_catalog(path: Path) -> None:
    """A catalog as the code before numbered migrations left it, with data in every table."""
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.executescript(f"""
        INSERT INTO images (sha256, sha256_full, width, height, file_size, format, filename,
            source, status) VALUES ('{IMAGE}', '{IMAGE * 2}', 64, 48, 1000, 'PNG', 'a.png',
            'camera', 'pending');
        INSERT INTO descriptions (image_sha256, method, content) VALUES ('{IMAGE}', 'caption', 'x');
        INSERT INTO vector_entries (image_sha256, method, model, model_version, index_name)
            VALUES ('{IMAGE}', 'image', 'm', '1', 'old_v1');
        INSERT INTO vector_entries (image_sha256, method, model, model_version, index_name)
            VALUES ('{IMAGE}', 'caption', 'm', '1', 'words_v1');
        DELETE FROM vector_entries WHERE index_name = 'words_v1';
        INSERT INTO jobs (kind, target, image_sha256, method)
            VALUES ('embed_image', 'img_v2', '{IMAGE}', 'image');
        INSERT INTO plugin_state (name, enabled) VALUES ('toy', 0);
        INSERT INTO index_roles (name, family, plugin, role, settings)
            VALUES ('old_v1', 'img', 'toy', 'active', '{{"version": "1"}}');
    """)
    db.close()


def test_a_fresh_catalog_records_every_migration(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "imgdex.db")
    cat.close()
    rows = versions(tmp_path / "imgdex.db")
    assert [(v, n) for v, n, _ in rows] == [
        (2, "baseline"),
        (3, "version moves to schema_version"),
        (4, "images remember their uploaded name"),
        (5, "users, sessions, api keys, audit log"),
        (6, "photo metadata, ratings, tags and albums"),
        (7, "keyword index and near-duplicates"),
        (8, "indexed camera and place filters"),
        (9, "duplicate pairs indexed by score"),
        (10, "a log of what filters match"),
        (11, "a revision of the duplicate pairs"),
    ]
    assert all(applied for _, _, applied in rows)
    assert rows[-1][0] == LATEST


def test_an_old_catalog_is_migrated_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "imgdex.db"
    old_catalog(path)
    cat = Catalog(path)
    try:
        assert [v for v, _, _ in versions(path)] == list(range(2, LATEST + 1))
        tables = {r[0] for r in raw(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "meta" not in tables
        row = cat.get_image(IMAGE)
        assert row is not None and (row.source, row.status) == ("camera", "pending")
        assert cat.get_description(IMAGE, "caption") == "x"
        # Migration 7 indexed the descriptions already there for keyword search.
        assert [(i, f) for i, f, _ in cat.keyword_search("x", 5)] == [(IMAGE, "d:caption")]
        assert cat.plugin_states() == {"toy": False}
        assert cat.index_roles() == {
            "old_v1": IndexRole("old_v1", "img", "toy", "active", {"version": "1"})
        }
        # Migration 10's facts revision counts from there.
        revision = cat.images.facts_revision()
        with cat.transaction() as db:
            cat.images.update_image(db, IMAGE, rating=2)
        assert cat.images.facts_revision() == revision + 1
        (job,) = cat.claim_jobs("embed_image", "img_v2", 10, now=1e9)
        assert job.image_sha256 == IMAGE
        # Labels are never reused across the migration: the old sequence carries on.
        with cat.transaction() as db:
            label = cat.add_vector_entry(db, IMAGE, "caption", "m", "1", "words_v1")
        assert label == 3
    finally:
        cat.close()


def test_reopening_applies_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "imgdex.db"
    old_catalog(path)
    Catalog(path).close()
    first = versions(path)
    cat = Catalog(path)
    try:
        assert versions(path) == first
        assert migrate(cat.engine) == []
        assert current_version(cat.engine) == LATEST
        assert cat.get_image(IMAGE) is not None
    finally:
        cat.close()


@pytest.mark.parametrize("round_", range(12))
def test_concurrent_openers_migrate_once(tmp_path: Path, round_: int) -> None:
    # Rounds, as the openers meet in a new file's switch to WAL only now and then (one
    # round in 17 failed "database is locked" on a loaded machine before it was retried).
    path = tmp_path / "imgdex.db"
    start = threading.Barrier(4)
    applied: list[list[int]] = []
    errors: list[BaseException] = []

    def opener() -> None:
        engine = Engine(SqliteDialect(), str(path))
        try:
            start.wait()
            applied.append(migrate(engine))
        except BaseException as exc:  # reported below, with the thread's error
            errors.append(exc)
        finally:
            engine.close()

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(v for versions_ in applied for v in versions_) == list(range(2, LATEST + 1))
    assert [v for v, _, _ in versions(path)] == list(range(2, LATEST + 1))


def test_a_catalog_from_a_newer_imgdex_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "imgdex.db"
    Catalog(path).close()
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (?, 'future', 'now')",
            (LATEST + 1,),
        )
    before = versions(path)
    with pytest.raises(CatalogTooNew, match=f"schema version {LATEST + 1}"):
        Catalog(path)
    assert versions(path) == before


def test_a_migration_filling_a_gap_is_applied_later(tmp_path: Path) -> None:
    # Work merged in another order: a catalog at 7 that never saw 5 gets it later.

    path = tmp_path / "imgdex.db"

    class Without5(SqliteDialect):
        def migrations(self) -> tuple[Migration, ...]:
            return tuple(m for m in super().migrations() if m.version != 5)

    engine = Engine(Without5(), str(path))
    try:
        migrate(engine)
    finally:
        engine.close()
    assert [v for v, _, _ in versions(path)] == [v for v in range(2, LATEST + 1) if v != 5]
    engine = Engine(SqliteDialect(), str(path))
    try:
        assert migrate(engine) == [5]
        assert current_version(engine) == LATEST
    finally:
        engine.close()
    assert [v for v, _, _ in versions(path)] == list(range(2, LATEST + 1))
    tables = {r[0] for r in raw(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"users", "albums"} <= tables


def test_migration_8_backfills_cameras_and_places(tmp_path: Path) -> None:
    # A catalog at 7 whose images had their metadata read: the camera and place filters
    # find them through the columns migration 8 derives.
    path = tmp_path / "imgdex.db"

    class Before8(SqliteDialect):
        def migrations(self) -> tuple[Migration, ...]:
            return tuple(m for m in super().migrations() if m.version < 8)

    engine = Engine(Before8(), str(path))
    try:
        migrate(engine)
    finally:
        engine.close()
    with sqlite3.connect(path) as db:
        for n, make, model, lat, lon in [
            ("1", "Canon", "EOS R5", 48.8566, 2.3522),
            ("2", "NIKON CORPORATION", "Z 6", None, None),
            ("3", None, None, 51.5074, -0.1278),
            ("4", "Ägfa", None, None, None),
        ]:
            db.execute(
                "INSERT INTO images (sha256, sha256_full, width, height, file_size, format, "
                "filename, camera_make, camera_model, gps_lat, gps_lon, meta_read) "
                "VALUES (?, ?, 1, 1, 1, 'JPEG', 'x.jpg', ?, ?, ?, ?, 1)",
                (n * 32, n * 64, make, model, lat, lon),
            )
    cat = Catalog(path)
    try:
        ids = cat.images.filter_ids
        assert ids(ImageFilters(camera="eos")) == {"1" * 32}
        assert ids(ImageFilters(camera="nikon")) == {"2" * 32}
        assert ids(ImageFilters(camera="äGFA")) == {"4" * 32}
        paris = Near(lat=48.85, lon=2.35, km=10)
        assert ids(ImageFilters(near=paris)) == {"1" * 32}
        assert ids(ImageFilters(near=Near(lat=50, lon=1, km=400))) == {"1" * 32, "3" * 32}
    finally:
        cat.close()
