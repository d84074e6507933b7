"""Unit tests for imgdex.catalog: schema, images, descriptions, vector entries, concurrency."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgdex.catalog import Catalog, ImageRow, IndexEntry, IndexRole


def make_id(n: int | str) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()[:32]


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    cat = Catalog(tmp_path / "imgdex.db")
    yield cat
    cat.close()


def add_image(
    cat: Catalog,
    n: int | str,
    *,
    source: str | None = None,
    status: str = "pending",
    db: sqlite3.Connection | None = None,
) -> str:
    id_ = make_id(n)
    full = hashlib.sha256(str(n).encode()).hexdigest()
    kwargs = dict(
        id_=id_, full=full, width=64, height=48, file_size=1000, fmt="PNG",
        filename="image.png", source=source, status=status,
    )  # fmt: skip
    if db is not None:
        cat.insert_image(db, **kwargs)  # type: ignore[arg-type]
    else:
        with cat.transaction() as tx:
            cat.insert_image(tx, **kwargs)  # type: ignore[arg-type]
    return id_


def set_created(cat: Catalog, id_: str, when: str) -> None:
    with cat.transaction() as db:
        db.execute("UPDATE images SET created_at = ? WHERE sha256 = ?", (when, id_))


def add_description(cat: Catalog, id_: str, method: str, content: str) -> None:
    with cat.transaction() as db:
        cat.upsert_description(db, id_, method, content)


def add_entry(
    cat: Catalog, id_: str, method: str, index: str, content: str | None = None
) -> int | None:
    with cat.transaction() as db:
        return cat.add_vector_entry(db, id_, method, "model", "1", index, content)


def index_entries(cat: Catalog, index: str) -> list[IndexEntry]:
    return [entry for batch in cat.index_entry_batches(index) for entry in batch]


def index_labels(cat: Catalog, index: str) -> tuple[set[int], set[int]]:
    """``(all labels, labels of soft-deleted images)`` recorded for an index."""
    rows = index_entries(cat, index)
    return {r.id for r in rows}, {r.id for r in rows if r.image_deleted}


# --- schema ------------------------------------------------------------------------


def test_wal_mode(catalog: Catalog, tmp_path: Path) -> None:
    assert catalog.journal_mode() == "wal"
    # WAL is a property of the database file: a plain connection sees it too.
    with sqlite3.connect(tmp_path / "imgdex.db") as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_connection_pragmas(catalog: Catalog) -> None:
    conn = catalog.engine.connection()
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_schema_indexes(catalog: Catalog) -> None:
    rows = catalog.engine.read("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'")
    indexes = {name: table for name, table in rows}
    expected = {
        "idx_images_created": "images",
        "idx_images_source": "images",
        "idx_images_status": "images",
        "idx_images_trash": "images",
        "idx_images_camera": "images",
        "idx_images_place": "images",
        "idx_images_live_favorite": "images",
        "idx_desc_method": "descriptions",
        "idx_vector_index": "vector_entries",
        "idx_vector_sha256": "vector_entries",
        "idx_jobs_claim": "jobs",
        "idx_jobs_image": "jobs",
    }
    for name, table in expected.items():
        assert indexes.get(name) == table, name


def test_schema_tables_and_version(catalog: Catalog) -> None:
    tables = {
        r[0] for r in catalog.engine.read("SELECT name FROM sqlite_master WHERE type='table'")
    }
    assert {"images", "descriptions", "vector_entries", "plugin_state"} <= tables
    assert {"jobs", "index_roles", "schema_version"} <= tables
    assert {"users", "sessions", "api_keys", "audit_log", "shares"} <= tables
    assert {"keyword_docs", "keyword_fts", "duplicate_pairs", "duplicate_checks"} <= tables
    assert "cameras" in tables
    assert "meta" not in tables  # it held only the version, which schema_version records
    assert {"facts_changes", "duplicates_revision"} <= tables
    assert catalog.engine.read("SELECT version FROM schema_version ORDER BY version") == [
        (v,) for v in range(2, 12)
    ]


def test_reopen_keeps_data(tmp_path: Path) -> None:
    first = Catalog(tmp_path / "imgdex.db")
    id_ = add_image(first, 1)
    first.close()
    second = Catalog(tmp_path / "imgdex.db")
    try:
        assert second.get_image(id_) is not None
    finally:
        second.close()


# --- images ------------------------------------------------------------------------


def test_insert_and_get(catalog: Catalog) -> None:
    id_ = add_image(catalog, 1, source="camera")
    row = catalog.get_image(id_)
    assert isinstance(row, ImageRow)
    assert row.sha256 == id_
    assert row.sha256_full.startswith(id_) and len(row.sha256_full) == 64
    assert (row.width, row.height, row.file_size) == (64, 48, 1000)
    assert (row.format, row.filename, row.source) == ("PNG", "image.png", "camera")
    assert row.status == "pending"
    assert row.error is None
    assert row.is_deleted == 0 and row.deleted_at is None
    assert row.created_at  # filled by SQLite
    assert catalog.get_image(make_id("absent")) is None


def test_insert_duplicate_fails(catalog: Catalog) -> None:
    add_image(catalog, 1)
    with pytest.raises(sqlite3.IntegrityError):
        add_image(catalog, 1)


def test_status_is_checked(catalog: Catalog) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        add_image(catalog, 1, status="done")


def test_get_images_many(catalog: Catalog) -> None:
    ids = [add_image(catalog, n) for n in range(1200)]  # more than one SQL chunk
    got = catalog.get_images([*ids, make_id("absent")])
    assert set(got) == set(ids)
    assert all(got[i].sha256 == i for i in ids)
    assert catalog.get_images([]) == {}
    assert catalog.all_image_ids() == set(ids)


def test_set_status_and_deleted(catalog: Catalog) -> None:
    id_ = add_image(catalog, 1)
    catalog.set_status(id_, "failed", "cannot decode")
    row = catalog.get_image(id_)
    assert row is not None and (row.status, row.error) == ("failed", "cannot decode")
    catalog.set_status(id_, "ready")
    row = catalog.get_image(id_)
    assert row is not None and (row.status, row.error) == ("ready", None)
    with catalog.transaction() as db:
        catalog.set_deleted(db, id_, True)
    row = catalog.get_image(id_)
    assert row is not None and row.is_deleted == 1 and row.deleted_at is not None
    with catalog.transaction() as db:
        catalog.set_deleted(db, id_, False)
    row = catalog.get_image(id_)
    assert row is not None and row.is_deleted == 0 and row.deleted_at is None


def test_list_images_filters_and_total(catalog: Catalog) -> None:
    ids = []
    for n in range(10):
        status = "ready" if n % 2 else "pending"
        source = "camera" if n < 4 else "scanner"
        ids.append(add_image(catalog, n, source=source, status=status))
        set_created(catalog, ids[-1], f"2026-01-01 00:00:{n:02d}")
    with catalog.transaction() as db:
        catalog.set_deleted(db, ids[9], True)

    def page(**kw: object) -> tuple[list[str], int]:
        args: dict[str, object] = dict(
            offset=0, limit=100, status=None, source=None, include_deleted=False
        )
        args.update(kw)
        rows, total = catalog.list_images(**args)  # type: ignore[arg-type]
        return [r.sha256 for r in rows], total

    listed, total = page()
    assert total == 9
    assert listed == [ids[n] for n in range(8, -1, -1)]  # newest first
    assert page(include_deleted=True) == ([ids[n] for n in range(9, -1, -1)], 10)
    assert page(status="ready") == ([ids[7], ids[5], ids[3], ids[1]], 4)
    assert page(source="camera") == ([ids[3], ids[2], ids[1], ids[0]], 4)
    assert page(source="camera", status="pending") == ([ids[2], ids[0]], 2)
    assert page(source="nowhere") == ([], 0)
    # Paging: the total counts every match, the page holds `limit` of them.
    assert page(offset=2, limit=3) == ([ids[6], ids[5], ids[4]], 9)
    assert page(offset=100, limit=3) == ([], 9)


def test_list_images_same_second_is_stable(catalog: Catalog) -> None:
    ids = [add_image(catalog, n) for n in range(20)]
    for id_ in ids:
        set_created(catalog, id_, "2026-01-01 00:00:00")
    seen: list[str] = []
    for offset in range(0, 20, 6):
        rows, _ = catalog.list_images(
            offset=offset, limit=6, status=None, source=None, include_deleted=False
        )
        seen += [r.sha256 for r in rows]
    # Ties ordered by id, in the list's direction (so an index gives the page): paging
    # neither repeats nor skips.
    assert seen == sorted(ids, reverse=True)


def test_delete_image_rows(catalog: Catalog) -> None:
    id_ = add_image(catalog, 1)
    add_description(catalog, id_, "caption", "a cat")
    add_entry(catalog, id_, "image", "img_v1")
    with catalog.transaction() as db:
        catalog.delete_image_rows(db, id_)
    assert catalog.get_image(id_) is None
    assert catalog.get_descriptions(id_) == []
    assert catalog.vector_entries_of(None, id_) == []


# --- descriptions ------------------------------------------------------------------


def test_descriptions(catalog: Catalog) -> None:
    id_ = add_image(catalog, 1)
    add_description(catalog, id_, "caption", "a red bus")
    add_description(catalog, id_, "ocr", "STOP")
    assert catalog.get_description(id_, "caption") == "a red bus"
    assert catalog.get_description(id_, "missing") is None
    add_description(catalog, id_, "caption", "a blue bus")
    assert catalog.get_description(id_, "caption") == "a blue bus"
    add_entry(catalog, id_, "caption", "words_v1")
    add_entry(catalog, id_, "caption", "bge_v1")
    rows = {r.method: r for r in catalog.get_descriptions(id_)}
    assert set(rows) == {"caption", "ocr"}
    assert rows["caption"].content == "a blue bus"
    assert rows["caption"].indexes == ("bge_v1", "words_v1")
    assert rows["caption"].has_embedding == 1
    assert rows["ocr"].indexes == () and rows["ocr"].has_embedding == 0
    other = add_image(catalog, 2)
    add_description(catalog, other, "caption", "a tram")
    texts = catalog.description_texts(
        [(id_, "caption"), (id_, "ocr"), (other, "caption"), (other, "ocr"), (id_, "caption")]
    )
    assert texts == {
        (id_, "caption"): "a blue bus",
        (id_, "ocr"): "STOP",
        (other, "caption"): "a tram",
    }
    with catalog.transaction() as db:
        assert catalog.delete_description(db, id_, "ocr") == 1
        assert catalog.delete_description(db, id_, "ocr") == 0
    assert [r.method for r in catalog.get_descriptions(id_)] == ["caption"]


def test_description_needs_an_image(catalog: Catalog) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        add_description(catalog, make_id("absent"), "caption", "orphan")


# --- vector entries ----------------------------------------------------------------


def test_add_vector_entry_ids_and_idempotence(catalog: Catalog) -> None:
    a, b = add_image(catalog, 1), add_image(catalog, 2)
    first = add_entry(catalog, a, "image", "img_v1")
    second = add_entry(catalog, b, "image", "img_v1")
    third = add_entry(catalog, a, "image", "other_v1")
    assert isinstance(first, int) and isinstance(second, int) and isinstance(third, int)
    assert len({first, second, third}) == 3
    assert add_entry(catalog, a, "image", "img_v1") is None  # exists already
    entries = catalog.vector_entries_of(None, a)
    assert {(e.id, e.method, e.index_name) for e in entries} == {
        (first, "image", "img_v1"),
        (third, "image", "other_v1"),
    }
    assert catalog.index_counts() == {"img_v1": 2, "other_v1": 1}
    assert catalog.image_indexes(a) == {"img_v1", "other_v1"}


def test_add_vector_entry_for_missing_image(catalog: Catalog) -> None:
    assert add_entry(catalog, make_id("absent"), "image", "img_v1") is None
    assert catalog.index_counts() == {}


def test_add_vector_entry_checks_description_content(catalog: Catalog) -> None:
    id_ = add_image(catalog, 1)
    add_description(catalog, id_, "caption", "old text")
    add_description(catalog, id_, "caption", "new text")
    # The embedding of "old text" arrives late: it must not be recorded.
    assert add_entry(catalog, id_, "caption", "words_v1", content="old text") is None
    assert add_entry(catalog, id_, "missing", "words_v1", content="anything") is None
    assert catalog.index_counts() == {}
    entry = add_entry(catalog, id_, "caption", "words_v1", content="new text")
    assert isinstance(entry, int)


def test_autoincrement_never_reuses_ids(catalog: Catalog) -> None:
    id_ = add_image(catalog, 1)
    first = add_entry(catalog, id_, "image", "img_v1")
    assert first is not None
    with catalog.transaction() as db:
        catalog.delete_vector_entries(db, [first])
    second = add_entry(catalog, id_, "image", "img_v1")
    assert second is not None and second > first
    with catalog.transaction() as db:
        catalog.delete_image_rows(db, id_)
    id_ = add_image(catalog, 1)
    third = add_entry(catalog, id_, "image", "img_v1")
    assert third is not None and third > second


def test_autoincrement_survives_reopen(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "imgdex.db")
    id_ = add_image(cat, 1)
    last = add_entry(cat, id_, "image", "img_v1")
    assert last is not None
    with cat.transaction() as db:
        cat.delete_vector_entries(db, [last])
    cat.close()
    cat = Catalog(tmp_path / "imgdex.db")
    try:
        again = add_entry(cat, id_, "image", "img_v1")
        assert again is not None and again > last
    finally:
        cat.close()


def test_delete_vector_entries_in_chunks(catalog: Catalog) -> None:
    ids = [add_image(catalog, n) for n in range(1100)]
    labels = [add_entry(catalog, i, "image", "img_v1") for i in ids]
    with catalog.transaction() as db:
        catalog.delete_vector_entries(db, [x for x in labels[:1050] if x is not None])
    assert catalog.index_counts() == {"img_v1": 50}


def test_resolve_entries(catalog: Catalog) -> None:
    a, b = add_image(catalog, 1), add_image(catalog, 2)
    add_description(catalog, a, "caption", "x")
    ea = add_entry(catalog, a, "image", "img_v1")
    eb = add_entry(catalog, b, "image", "img_v1")
    ec = add_entry(catalog, a, "caption", "words_v1")
    assert ea is not None and eb is not None and ec is not None
    with catalog.transaction() as db:
        catalog.set_deleted(db, b, True)
    # Soft-deleted images still resolve: their labels are hidden in the index, and the
    # search re-reads the page's image rows.
    resolved = catalog.resolve_entries([ea, eb, ec, 999_999])
    assert resolved == {ea: (a, "image"), eb: (b, "image"), ec: (a, "caption")}
    assert catalog.resolve_entries([]) == {}


def test_index_labels(catalog: Catalog) -> None:
    a, b, c = (add_image(catalog, n) for n in range(3))
    la = add_entry(catalog, a, "image", "img_v1")
    lb = add_entry(catalog, b, "image", "img_v1")
    add_entry(catalog, c, "image", "other_v1")
    with catalog.transaction() as db:
        catalog.set_deleted(db, b, True)
    assert index_labels(catalog, "img_v1") == ({la, lb}, {lb})
    assert index_labels(catalog, "absent") == (set(), set())
    assert index_entries(catalog, "img_v1") == [
        (la, a, "image", 64, 48, False),
        (lb, b, "image", 64, 48, True),
    ]
    assert index_entries(catalog, "img_v1")[1].key == (b, "image", 64, 48)
    assert catalog.image_sizes(None, [a, b, "absent"]) == {a: (64, 48), b: (64, 48)}
    assert index_entries(catalog, "absent") == []


def test_index_entry_batches_page_by_label_and_allow_writes_between(catalog: Catalog) -> None:
    images = [add_image(catalog, n) for n in range(7)]
    labels = [add_entry(catalog, i, "image", "img_v1") for i in images]
    add_entry(catalog, images[0], "image", "other_v1")
    batches = catalog.index_entry_batches("img_v1", size=3)
    first = next(batches)
    assert [e.id for e in first] == labels[:3]
    # This thread's connection writes between two batches (no statement is left open).
    with catalog.transaction() as db:
        catalog.delete_vector_entries(db, [labels[3]])
    late = add_entry(catalog, images[1], "caption", "img_v1")
    rest = [e.id for batch in batches for e in batch]
    assert rest == [*labels[4:], late]
    assert [len(b) for b in catalog.index_entry_batches("img_v1", size=3)] == [3, 3, 1]
    assert list(catalog.index_entry_batches("absent")) == []


# --- jobs ------------------------------------------------------------------------


def job_rows(cat: Catalog) -> list[tuple[str, str, str, str, str, int]]:
    return [
        (k, t, i, m, s, a)
        for k, t, i, m, s, a in cat.engine.read(
            "SELECT kind, target, image_sha256, method, state, attempts FROM jobs ORDER BY id"
        )
    ]


def test_plan_queues_exactly_the_missing_work(catalog: Catalog) -> None:
    ids = [add_image(catalog, n) for n in range(5)]
    add_entry(catalog, ids[0], "image", "img_v1")
    add_description(catalog, ids[1], "caption", "x")
    add_entry(catalog, ids[1], "caption", "img_v1")  # a text vector is not the image's
    add_entry(catalog, ids[2], "image", "other_v1")
    with catalog.transaction() as db:
        catalog.set_deleted(db, ids[4], True)

    assert catalog.queue_backfill("embed_image", "img_v1") == 3  # deleted and done ones skipped
    assert [r[2] for r in job_rows(catalog)] == [ids[1], ids[2], ids[3]]
    assert catalog.queue_backfill("embed_image", "img_v1") == 0  # idempotent
    assert catalog.queue_backfill("embed_image", "other_v1", image=ids[0]) == 1  # one image only
    assert catalog.queue_backfill("embed_image", "other_v1", image=ids[2]) == 0


def test_plan_for_texts_and_describers(catalog: Catalog) -> None:
    a, b, c = (add_image(catalog, n) for n in range(3))
    add_description(catalog, a, "caption", "a text")
    add_description(catalog, a, "ocr", "a ocr")
    add_description(catalog, b, "caption", "b text")
    add_description(catalog, c, "caption", "c text")
    add_entry(catalog, a, "caption", "words_v1", content="a text")
    with catalog.transaction() as db:
        catalog.set_deleted(db, c, True)
    assert catalog.queue_backfill("embed_text", "words_v1") == 2
    assert {(r[2], r[3]) for r in job_rows(catalog)} == {(a, "ocr"), (b, "caption")}
    assert (
        catalog.queue_backfill("describe", "ocr") == 1
    )  # b lacks an ocr description; c is deleted
    assert ("describe", "ocr", b, "ocr", "queued", 0) in job_rows(catalog)


def test_claim_takes_due_jobs_of_live_images_oldest_first(catalog: Catalog) -> None:
    ids = [add_image(catalog, n) for n in range(4)]
    with catalog.transaction() as db:
        for id_ in ids:
            catalog.queue_jobs(db, "embed_image", ["img_v1", "other_v1"], id_, "image")
        catalog.set_deleted(db, ids[3], True)
        db.execute("UPDATE jobs SET next_run_at = 2e9 WHERE image_sha256 = ?", (ids[0],))
    jobs = catalog.claim_jobs("embed_image", "img_v1", 10, now=1e9)
    assert [j.image_sha256 for j in jobs] == [ids[1], ids[2]]  # not due, deleted: skipped
    assert catalog.claim_jobs("embed_image", "img_v1", 10, now=1e9) == []  # running now
    assert len(catalog.claim_jobs("embed_image", "other_v1", 1, now=1e9)) == 1  # limit
    counts = catalog.job_counts()
    assert counts[("embed_image", "img_v1")] == {"queued": 1, "running": 2}
    assert counts[("embed_image", "other_v1")] == {"queued": 2, "running": 1}


def test_failures_back_off_then_fail_and_retry_requeues(catalog: Catalog) -> None:
    id_ = add_image(catalog, 1)
    with catalog.transaction() as db:
        catalog.queue_jobs(db, "embed_image", ["img_v1"], id_, "image")
    (job,) = catalog.claim_jobs("embed_image", "img_v1", 10, now=1e9)
    assert catalog.fail_job(job.id, "boom", retry_at=1e9 + 30) == "queued"
    assert catalog.claim_jobs("embed_image", "img_v1", 10, now=1e9 + 29) == []
    assert catalog.next_due("embed_image", "img_v1") == 1e9 + 30
    (job,) = catalog.claim_jobs("embed_image", "img_v1", 10, now=1e9 + 30)
    assert job.attempts == 1
    assert catalog.fail_job(job.id, "boom again", retry_at=None) == "failed"
    assert catalog.fail_job(job.id, "late", retry_at=None) == ""  # not running: untouched
    catalog.set_status(id_, "failed", "boom again")
    failed = catalog.failed_jobs()[("embed_image", "img_v1")]
    assert [(f.job.image_sha256, f.job.attempts, f.error) for f in failed] == [
        (id_, 2, "boom again")
    ]
    assert catalog.next_due("embed_image", "img_v1") is None

    assert catalog.retry_failed() == 1
    assert job_rows(catalog) == [("embed_image", "img_v1", id_, "image", "queued", 0)]
    row = catalog.get_image(id_)
    assert row is not None and (row.status, row.error) == ("pending", None)


def test_release_and_requeue_running_keep_attempts(catalog: Catalog) -> None:
    a, b = add_image(catalog, 1), add_image(catalog, 2)
    with catalog.transaction() as db:
        catalog.queue_jobs(db, "embed_image", ["img_v1"], a, "image")
        catalog.queue_jobs(db, "embed_image", ["img_v1"], b, "image")
    first, _ = catalog.claim_jobs("embed_image", "img_v1", 10, now=1e9)
    catalog.release_jobs([first.id])
    assert catalog.requeue_running() == 1
    assert [r[4:] for r in job_rows(catalog)] == [("queued", 0), ("queued", 0)]


def test_a_vector_job_finishes_only_with_its_vector(catalog: Catalog) -> None:
    id_ = add_image(catalog, 1)
    add_description(catalog, id_, "caption", "new text")
    with catalog.transaction() as db:
        catalog.queue_jobs(db, "embed_text", ["words_v1"], id_, "caption")
    # A late write of stale content is refused, and its job stays.
    assert add_entry(catalog, id_, "caption", "words_v1", content="old text") is None
    with catalog.transaction() as db:
        catalog.finish_vector_job(db, "words_v1", id_, "caption")
    assert len(job_rows(catalog)) == 1
    assert add_entry(catalog, id_, "caption", "words_v1", content="new text") is not None
    with catalog.transaction() as db:
        catalog.finish_vector_job(db, "words_v1", id_, "caption")
    assert job_rows(catalog) == []


def test_requeueing_an_existing_job_starts_it_over(catalog: Catalog) -> None:
    id_ = add_image(catalog, 1)
    with catalog.transaction() as db:
        catalog.queue_jobs(db, "embed_text", ["words_v1"], id_, "caption")
    (job,) = catalog.claim_jobs("embed_text", "words_v1", 1, now=1e9)
    catalog.fail_job(job.id, "boom", retry_at=None)
    with catalog.transaction() as db:
        catalog.queue_jobs(db, "embed_text", ["words_v1"], id_, "caption")
    assert job_rows(catalog) == [("embed_text", "words_v1", id_, "caption", "queued", 0)]


def test_settle_and_deletes_take_jobs_along(catalog: Catalog) -> None:
    a, b = add_image(catalog, 1), add_image(catalog, 2)
    add_description(catalog, a, "caption", "x")
    with catalog.transaction() as db:
        catalog.queue_jobs(db, "embed_image", ["img_v1"], a, "image")
        catalog.queue_jobs(db, "embed_image", ["building_v2"], b, "image")
        catalog.queue_jobs(db, "embed_text", ["words_v1"], a, "caption")
    assert catalog.settle(["img_v1"]) == 1  # b: only a building index still to do
    assert catalog.get_image(b).status == "ready"  # type: ignore[union-attr]
    assert catalog.get_image(a).status == "pending"  # type: ignore[union-attr]
    assert catalog.settle(["img_v1"], ids=[]) == 0
    with catalog.transaction() as db:
        catalog.delete_description(db, a, "caption")
    assert {r[0] for r in job_rows(catalog)} == {"embed_image"}
    with catalog.transaction() as db:
        catalog.delete_image_rows(db, a)
    assert [r[2] for r in job_rows(catalog)] == [b]


def test_failed_where_held_and_index_roles(catalog: Catalog) -> None:
    a, b = add_image(catalog, 1), add_image(catalog, 2)
    add_entry(catalog, a, "image", "img_v1")
    with catalog.transaction() as db:
        catalog.queue_jobs(db, "embed_image", ["img_v2"], a, "image")
        catalog.queue_jobs(db, "embed_image", ["img_v2"], b, "image")
    for job in catalog.claim_jobs("embed_image", "img_v2", 10, now=1e9):
        catalog.fail_job(job.id, "boom", retry_at=None)
    assert catalog.failed_where_held("embed_image", "img_v2", "img_v1") == 1  # a only

    with catalog.transaction() as db:
        catalog.set_index_role(
            db, "img_v1", "active", family="img", plugin="toy", settings={"version": "1"}
        )
        catalog.set_index_role(db, "img_v1", "retired")  # the rest is kept
    assert catalog.index_roles() == {
        "img_v1": IndexRole("img_v1", "img", "toy", "retired", {"version": "1"})
    }
    with catalog.transaction() as db:
        assert catalog.forget_index(db, "img_v1") == 1
        catalog.forget_index(db, "img_v2")
    assert catalog.index_roles() == {} and job_rows(catalog) == []


def test_counts_skip_soft_deleted(catalog: Catalog) -> None:
    a, b = add_image(catalog, 1), add_image(catalog, 2)
    add_description(catalog, a, "caption", "x")
    add_description(catalog, b, "caption", "y")
    add_entry(catalog, a, "image", "img_v1")
    add_entry(catalog, b, "image", "img_v1")
    with catalog.transaction() as db:
        catalog.set_deleted(db, b, True)
    assert catalog.index_counts() == {"img_v1": 2}
    assert catalog.soft_deleted_counts() == {"img_v1": 1}
    assert catalog.description_count("caption") == 1


# --- transactions and concurrency --------------------------------------------------


def test_transaction_rolls_back_on_exception(catalog: Catalog) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), catalog.transaction() as db:
        add_image(catalog, 1, db=db)
        raise Boom
    assert catalog.all_image_ids() == set()
    # The connection is usable afterwards (no transaction left open).
    id_ = add_image(catalog, 2)
    assert catalog.all_image_ids() == {id_}


def test_transaction_rolls_back_on_sql_error(catalog: Catalog) -> None:
    add_image(catalog, 1)
    with pytest.raises(sqlite3.IntegrityError), catalog.transaction() as db:
        add_image(catalog, 2, db=db)
        add_image(catalog, 1, db=db)  # duplicate: the whole transaction goes
    assert catalog.all_image_ids() == {make_id(1)}


def test_uncommitted_writes_are_invisible_to_other_threads(catalog: Catalog) -> None:
    seen: list[set[str]] = []
    with catalog.transaction() as db:
        add_image(catalog, 1, db=db)
        reader = threading.Thread(target=lambda: seen.append(catalog.all_image_ids()))
        reader.start()
        reader.join(10)
    assert seen == [set()]
    assert catalog.all_image_ids() == {make_id(1)}


def test_concurrent_writers(catalog: Catalog) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(t: int) -> None:
        try:
            start.wait()
            for n in range(50):
                with catalog.transaction() as db:
                    id_ = add_image(catalog, f"{t}-{n}", db=db)
                    catalog.add_vector_entry(db, id_, "image", "m", "1", "img_v1")
        except BaseException as exc:  # reported below, with the thread's error
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(catalog.all_image_ids()) == 400
    assert catalog.index_counts() == {"img_v1": 400}
    labels, _ = index_labels(catalog, "img_v1")
    assert len(labels) == 400


def test_plugin_state(catalog: Catalog) -> None:
    assert catalog.plugin_states() == {}
    catalog.set_plugin_state("bge", False)
    catalog.set_plugin_state("siglip2", True)
    catalog.set_plugin_state("bge", True)
    assert catalog.plugin_states() == {"bge": True, "siglip2": True}


def test_stats(catalog: Catalog) -> None:
    a = add_image(catalog, 1, status="ready")
    add_image(catalog, 2)
    c = add_image(catalog, 3)
    add_description(catalog, a, "caption", "x")
    with catalog.transaction() as db:
        catalog.set_deleted(db, c, True)
    stats = catalog.stats()
    assert stats["image_count"] == 2
    assert stats["by_status"] == {"ready": 1, "pending": 1}
    assert stats["deleted_count"] == 1
    assert stats["total_file_size"] == 2000
    assert stats["descriptions_by_method"] == {"caption": 1}


def test_no_vector_entry_for_a_soft_deleted_image(catalog: Catalog) -> None:
    a = add_image(catalog, 7)
    with catalog.transaction() as db:
        catalog.set_deleted(db, a, True)
    assert add_entry(catalog, a, "image", "img_v1") is None


def test_has_image_sees_deleted_rows_and_the_open_transaction(catalog: Catalog) -> None:
    a = add_image(catalog, 1)
    with catalog.transaction() as db:
        catalog.set_deleted(db, a, True)
        assert catalog.has_image(db, a)  # soft-deleted: the row is still there
        b = add_image(catalog, 2, db=db)
        assert catalog.has_image(db, b)  # written earlier in the same transaction
        assert not catalog.has_image(db, make_id("absent"))
        catalog.delete_image_rows(db, a)
        assert not catalog.has_image(db, a)


def test_drop_vector_jobs_leaves_describers_and_other_indexes(catalog: Catalog) -> None:
    a = add_image(catalog, 1)
    with catalog.transaction() as db:
        catalog.queue_jobs(db, "embed_image", ["img_v1", "img_v2"], a, "image")
        catalog.queue_jobs(db, "embed_text", ["img_v1"], a, "caption")
        catalog.queue_jobs(db, "describe", ["img_v1"], a, "img_v1")  # a describer's target
        catalog.drop_vector_jobs(db, "img_v1")
    assert {(r[0], r[1]) for r in job_rows(catalog)} == {
        ("embed_image", "img_v2"),
        ("describe", "img_v1"),
    }


def test_narrow_stores_share_the_catalogs_database(catalog: Catalog) -> None:
    with catalog.transaction() as db:
        id_ = add_image(catalog, 1, db=db)
        catalog.jobs.queue_jobs(db, "embed_image", ["img_v1"], id_, "image")
    row = catalog.images.get_image(id_)
    assert row is not None and row.sha256 == id_
    (job,) = catalog.jobs.claim_jobs("embed_image", "img_v1", 10, now=1e9)
    assert job.image_sha256 == id_
    assert catalog.job_counts() == {("embed_image", "img_v1"): {"running": 1}}
    # Each store answers for its own area only.
    assert not hasattr(catalog.jobs, "get_image")
    assert not hasattr(catalog.images, "claim_jobs")


def test_queue_jobs_for_a_hard_deleted_image_queues_nothing(catalog: Catalog) -> None:
    """A rebuild forgetting lost vectors raced a hard delete: the insert of the job for
    the vanished image failed the foreign key and the rebuild answered 500."""
    gone, kept = make_id("gone"), add_image(catalog, "kept")
    with catalog.transaction() as db:
        catalog.queue_jobs(db, "embed_image", ["idx"], gone, "image")
        catalog.queue_jobs(db, "embed_image", ["idx"], kept, "image")
    rows = catalog.engine.read("SELECT image_sha256 FROM jobs")
    assert rows == [(kept,)]


def test_a_catalog_from_before_original_names_gains_the_column(tmp_path: Path) -> None:
    old = Catalog(tmp_path / "imgdex.db")
    id_ = add_image(old, "old")
    with old.transaction() as db:  # as versions before 4 were
        db.execute("ALTER TABLE images DROP COLUMN original_name")
        db.execute("DELETE FROM schema_version WHERE version = 4")
    old.close()
    reopened = Catalog(tmp_path / "imgdex.db")
    try:
        row = reopened.get_image(id_)
        assert row is not None and row.original_name is None and row.filename == "image.png"
    finally:
        reopened.close()
