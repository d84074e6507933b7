"""Unit tests for imgdex.ops.duplicate_groups and the catalog's duplicates revision: how
pairs become ranked groups, which writes move the revision (whichever process makes
them), and the cache's bound."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgdex.catalog import Catalog
from imgdex.ops.duplicate_groups import GroupCache, rank_groups

INDEX = "toy_v1"


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    cat = Catalog(tmp_path / "imgdex.db")
    with cat.transaction() as db:
        for i in range(8):
            sha = f"{i:032x}"
            cat.insert_image(
                db,
                id_=sha,
                full=sha * 2,
                width=1,
                height=1,
                file_size=1,
                fmt="PNG",
                filename=f"{i}.png",
                source=None,
                status="ready",
            )
    yield cat
    cat.close()


def sha(i: int) -> str:
    return f"{i:032x}"


def record(catalog: Catalog, a: int, b: int, score: float, index: str = INDEX) -> None:
    with catalog.transaction() as db:
        catalog.record_duplicates(db, sha(a), index, [(sha(b), score)])


def test_groups_rank_most_alike_first_and_list_images_by_their_best_score() -> None:
    ranked = rank_groups(
        [("c", "d", 0.93), ("d", "e", 0.97), ("a", "b", 0.97), ("x", "y", 0.99), ("e", "c", 0.9)]
    )
    assert [(g.id, g.score) for g in ranked] == [("x", 0.99), ("a", 0.97), ("c", 0.97)]
    assert [(i.sha256, i.score) for i in ranked[2].images] == [
        ("d", 0.97),
        ("e", 0.97),
        ("c", 0.93),
    ]
    assert rank_groups([]) == ()


def test_the_revision_moves_with_what_the_groups_are_made_of(catalog: Catalog) -> None:
    seen = [catalog.duplicates_revision()]

    def moved() -> bool:
        seen.append(catalog.duplicates_revision())
        return seen[-1] != seen[-2]

    record(catalog, 0, 1, 0.95)
    assert moved()
    record(catalog, 1, 0, 0.95)  # the same pair, the same score: nothing changed
    assert not moved()
    record(catalog, 1, 0, 0.96)
    assert moved()
    record(catalog, 0, 1, 0.91, index="other_v1")  # the same images in another index
    assert moved()
    with catalog.transaction() as db:
        catalog.set_deleted(db, sha(5), True)  # in no pair
    assert not moved()
    with catalog.transaction() as db:
        catalog.set_deleted(db, sha(1), True)
    assert moved()
    with catalog.transaction() as db:
        catalog.set_deleted(db, sha(1), True)  # already in the trash
    assert not moved()
    with catalog.transaction() as db:
        catalog.set_deleted(db, sha(1), False)
    assert moved()
    record(catalog, 2, 3, 0.99)
    with catalog.transaction() as db:
        catalog.delete_image_rows(db, sha(3))  # its pairs go by the foreign key's cascade
    assert moved()
    assert catalog.duplicate_pairs(0.0) == [(sha(0), sha(1), 0.96)]
    with catalog.transaction() as db:
        catalog.forget_duplicate_checks(db, INDEX)
    assert moved()


def test_a_write_from_another_process_invalidates_the_groups(catalog: Catalog) -> None:
    cache = GroupCache(catalog)
    record(catalog, 0, 1, 0.95)
    assert [g.id for g in cache.groups(0.9)] == [sha(0)]
    script = (
        "import sys\n"
        "from imgdex.catalog import Catalog\n"
        "cat = Catalog(__import__('pathlib').Path(sys.argv[1]))\n"
        "with cat.transaction() as db:\n"
        f"    cat.record_duplicates(db, {sha(1)!r}, {INDEX!r}, [({sha(2)!r}, 0.97)])\n"
        "cat.close()\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", script, str(catalog.path)], check=True, env=env)
    (group,) = cache.groups(0.9)
    assert [i.sha256 for i in group.images] == [sha(1), sha(2), sha(0)]


def test_the_cache_keeps_a_few_thresholds_least_recently_listed_dropped(
    catalog: Catalog,
) -> None:
    record(catalog, 0, 1, 0.95)
    record(catalog, 2, 3, 0.99)
    cache = GroupCache(catalog, size=2)
    assert len(cache.groups(0.9)) == 2
    assert len(cache.groups(0.97)) == 1
    assert len(cache.groups(0.9)) == 2  # kept
    assert (cache.hits, cache.misses) == (1, 2)
    assert len(cache.groups(0.98)) == 1  # drops 0.97, the least recently listed
    assert len(cache.groups(0.9)) == 2
    assert (cache.hits, cache.misses) == (2, 3)
    assert len(cache.groups(0.97)) == 1
    assert (cache.hits, cache.misses) == (2, 4)
