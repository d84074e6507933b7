"""The in-memory label map that answers a search's label -> (image, method) look-ups."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from imgdex.index import labels as labels_module
from imgdex.index.labels import Key, LabelMap, Ranked
from imgdex.ops.fusion import Hit, collapse


def image(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()[:32]


def key(n: int, method: str = "image", id_: str | None = None) -> Key:
    """A key whose size is derived from `n`, so that sizes are checked too."""
    return (image(n) if id_ is None else id_, method, 100 + n, 2 * n + 1)


def resolve(labels: LabelMap, wanted: list[int]) -> tuple[dict[int, Key], list[int]]:
    """The map's answers as keys, checking that each image's size goes with it."""
    entries, sizes, missing = labels.resolve(wanted)
    assert set(sizes) == {image for image, _ in entries.values()}
    return {n: (i, m, *sizes[i]) for n, (i, m) in entries.items()}, missing


def test_empty_map_leaves_everything_to_the_catalog() -> None:
    labels = LabelMap()
    assert labels.resolve([]) == ({}, {}, [])
    assert labels.resolve([3, 1]) == ({}, {}, [3, 1])
    labels.set_alive([1], False)  # unknown labels are skipped
    assert len(labels) == 0


def test_add_and_resolve_in_any_order() -> None:
    labels = LabelMap()
    labels.add([1, 2, 5], [key(1), key(2, "caption"), key(5)])
    assert resolve(labels, [5, 4, 1, 2, 9]) == (
        {5: key(5), 1: key(1), 2: key(2, "caption")},
        [4, 9],
    )
    assert len(labels) == 3


def test_out_of_order_and_repeated_labels() -> None:
    labels = LabelMap()
    labels.add([10, 20], [key(10, "a"), key(20, "b")])
    labels.add([15, 10], [key(15, "c"), key(99, "d")])  # 10 again: the last one wins
    assert resolve(labels, [10, 15, 20]) == (
        {10: key(99, "d"), 15: key(15, "c"), 20: key(20, "b")},
        [],
    )
    assert len(labels) == 3
    labels.add([30], [key(30, "a")])
    assert resolve(labels, [30, 10]) == ({30: key(30, "a"), 10: key(99, "d")}, [])


def test_hidden_labels_are_left_to_the_catalog_until_unhidden() -> None:
    labels = LabelMap()
    labels.add([1, 2, 3], [key(n) for n in (1, 2, 3)])
    labels.set_alive([2, 7], False)
    assert resolve(labels, [1, 2, 3]) == ({1: key(1), 3: key(3)}, [2])
    assert len(labels) == 2
    labels.set_alive([2], True)
    assert resolve(labels, [2]) == ({2: key(2)}, [])


@pytest.mark.parametrize(
    "odd", ["short", "A" * 32, "g" * 32, image(1).upper(), image(1) + "00", ""]
)
def test_ids_that_are_not_32_lowercase_hex_digits_are_not_mapped(odd: str) -> None:
    labels = LabelMap()
    labels.add([1, 2], [key(1, id_=odd), key(2)])
    assert resolve(labels, [1, 2]) == ({2: key(2)}, [1])


def test_sizes_that_do_not_fit_are_not_mapped() -> None:
    labels = LabelMap()
    labels.add([1, 2, 3], [(image(1), "image", 2**32, 1), (image(2), "image", 1, -1), key(3)])
    assert resolve(labels, [1, 2, 3]) == ({3: key(3)}, [1, 2])


def test_image_ids_with_zero_bytes_survive() -> None:
    # NumPy's fixed-width bytes would strip trailing zero bytes: the map stores raw rows.
    ids = ["00" * 16, "ab" + "00" * 15, "00" * 15 + "ff"]
    labels = LabelMap()
    keys = {n: key(n, id_=i) for n, i in zip((1, 2, 3), ids, strict=True)}
    labels.add(list(keys), list(keys.values()))
    assert resolve(labels, [1, 2, 3])[0] == keys


def test_one_image_under_several_labels() -> None:
    labels = LabelMap()
    labels.add([1, 2], [key(7, "image"), key(7, "caption")])
    entries, sizes, missing = labels.resolve([1, 2])
    assert entries == {1: (image(7), "image"), 2: (image(7), "caption")}
    assert sizes == {image(7): (107, 15)} and missing == []


def test_load_replaces_the_map() -> None:
    labels = LabelMap()
    labels.add([1, 2], [key(1), key(2)])
    labels.load([(9, key(9, "caption"), True), (4, key(4), False)])
    assert resolve(labels, [1, 4, 9]) == ({9: key(9, "caption")}, [1, 4])
    labels.add([12], [key(12)])  # grows from a loaded map
    assert resolve(labels, [12, 9]) == ({12: key(12), 9: key(9, "caption")}, [])


def test_load_reads_rows_a_chunk_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A generator is consumed in chunks; labels out of order and chunks of several
    methods and deletion flags come out as if loaded at once."""
    monkeypatch.setattr(labels_module, "_LOAD_CHUNK", 4)
    order = [17, 3, 11, 5, 2, 13, 7, 19, 23, 29, 31]  # 11 rows: chunks of 4, 4, 3
    taken: list[int] = []

    def rows() -> Iterator[tuple[int, Key, bool]]:
        for n in order:
            taken.append(n)
            yield n, key(n, "caption" if n % 3 else "image"), n != 13

    labels = LabelMap()
    labels.load(rows())
    assert taken == order and len(labels) == 10
    alive = {n: key(n, "caption" if n % 3 else "image") for n in order if n != 13}
    assert resolve(labels, sorted(order)) == (alive, [13])
    labels.load(iter(()))  # nothing: an empty map
    assert len(labels) == 0 and resolve(labels, [3]) == ({}, [3])
    # More rows than expected: the arrays grow; a label given twice keeps its last key.
    many = [(n, key(n), True) for n in range(1, 2501)] + [(7, key(8, "caption"), True)]
    labels.load(many, expected=10)
    assert len(labels) == 2500
    assert resolve(labels, [1, 7, 2500, 2501]) == (
        {1: key(1), 7: key(8, "caption"), 2500: key(2500)},
        [2501],
    )
    labels.add([2600], [key(2600)])  # and grows on from there
    assert resolve(labels, [2600, 2]) == ({2600: key(2600), 2: key(2)}, [])


def test_add_checks_one_key_per_label() -> None:
    with pytest.raises(ValueError, match="one key per label"):
        LabelMap().add([1, 2], [key(1)])


def test_many_methods_and_growth() -> None:
    labels = LabelMap()
    for start in range(0, 5000, 250):
        batch = list(range(start, start + 250))
        labels.add(batch, [key(n, f"m{n % 37}") for n in batch])
    found, missing = resolve(labels, list(range(0, 5000, 7)))
    assert missing == []
    assert found == {n: key(n, f"m{n % 37}") for n in range(0, 5000, 7)}
    assert labels.nbytes <= 35 * 8192  # 35 bytes a label; capacity doubles from 1,024


def test_readers_never_see_a_wrong_answer_while_labels_are_added() -> None:
    labels = LabelMap()
    labels.add([0], [key(0)])
    done = threading.Event()
    errors: list[str] = []

    def read() -> None:
        while not done.is_set():
            found, _ = resolve(labels, list(range(0, 20_000, 13)))
            bad = [n for n, k in found.items() if k != key(n)]
            if bad:
                errors.append(f"wrong answers for {bad[:5]}")
                return

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        for start in range(1, 20_000, 97):
            batch = list(range(start, min(start + 97, 20_000)))
            labels.add(batch, [key(n) for n in batch])
            if start % 5 == 0:
                labels.set_alive(batch[:3], False)
                labels.set_alive(batch[:3], True)
    finally:
        done.set()
        for t in readers:
            t.join()
    assert errors == []
    assert resolve(labels, list(range(20_000)))[1] == []


def reference(
    labels: LabelMap, found: list[int], scores: list[float], methods: set[str] | None
) -> list[Hit]:
    """The general path: resolve each label, filter, collapse (imgdex.ops.fusion)."""
    entries, _, missing = labels.resolve(found)
    assert missing == []
    hits = [
        Hit(entries[label][0], score, "ix", entries[label][1])
        for label, score in zip(found, scores, strict=True)
        if methods is None or entries[label][1] in methods
    ]
    return collapse(hits)


def test_rank_is_resolve_and_collapse_in_numpy() -> None:
    rng = np.random.default_rng(7)
    labels = LabelMap()
    n = 400
    methods = ["image", "caption", "human", "vlm1"]
    # Few images, several labels each; scores on a coarse grid so that ties occur.
    keys = [key(int(rng.integers(0, 60)), methods[int(rng.integers(0, 4))]) for _ in range(n)]
    labels.add(list(range(1, n + 1)), keys)
    exact = declined = 0
    for trial in range(600):
        size = int(rng.integers(0, 80))
        found = rng.choice(np.arange(1, n + 1), size=size, replace=False)
        scores = np.sort(np.round(rng.random(size), 2).astype(np.float32))[::-1]
        wanted = None if trial % 3 else set(rng.choice(methods, 2, replace=False).tolist())
        limit = None if trial % 2 else int(rng.integers(1, 15))
        ranked = labels.rank(found, scores, wanted, limit)
        expected = reference(labels, found.tolist(), scores.tolist(), wanted)
        if ranked is None:
            # Declined only for a tie between two hits of one image.
            declined += 1
            by_image: dict[str, list[float]] = {}
            for label, score in zip(found.tolist(), scores.tolist(), strict=True):
                image, method = labels.resolve([label])[0][label]
                if wanted is None or method in wanted:
                    by_image.setdefault(image, []).append(score)
            assert any(s.count(max(s)) > 1 for s in by_image.values())
            continue
        exact += 1
        assert ranked.total == len(expected)
        assert [(h.image, h.score, h.method) for h in expected[:limit]] == ranked.hits
        assert set(ranked.sizes) == {image for image, _, _ in ranked.hits}
        assert all(ranked.sizes[image] == labels.resolve([label])[1][image]
                   for label in found.tolist() for image in [labels.resolve([label])[0][label][0]]
                   if image in ranked.sizes)  # fmt: skip
    assert exact > 400 and declined > 10


def test_rank_declines_what_the_map_cannot_answer() -> None:
    labels = LabelMap()
    labels.add([1, 2, 3], [key(1), key(2), key(3)])
    scores = np.array([0.9, 0.8], np.float32)
    assert labels.rank(np.array([1, 9]), scores) is None  # not mapped
    assert labels.rank(np.array([1, 3]), scores[::-1]) is None  # not best first
    labels.set_alive([2], False)
    assert labels.rank(np.array([1, 2]), scores) is None  # hidden since
    assert labels.rank(np.array([3, 1]), scores) == Ranked(
        [(image(3), 0.8999999761581421, "image"), (image(1), 0.800000011920929, "image")],
        {image(3): (103, 7), image(1): (101, 3)},
        2,
    )
    assert labels.rank(np.array([], np.int64), np.array([], np.float32)) == Ranked([], {}, 0)
    assert LabelMap().rank(np.array([1]), scores[:1]) is None
    assert labels.rank(np.array([3, 1]), scores, {"caption"}) == Ranked([], {}, 0)
    assert labels.rank(np.array([3, 1]), scores, {"unknown"}) == Ranked([], {}, 0)


@pytest.mark.parametrize("wanted_count", [3, 40, 2000])
def test_labels_of_few_or_many_images(wanted_count: int) -> None:
    # Few wanted ids take the low-bits table first: ids sharing those bits (and their
    # first half) with a wanted one, dead labels and other methods must stay out.
    labels = LabelMap()
    ids = [image(n) for n in range(4000)]
    twin = ids[0][:11] + ("f" if ids[0][11] != "f" else "e") + ids[0][12:]  # low bits kept
    half = ids[1][:16] + ("f" if ids[1][16] != "f" else "e") + ids[1][17:]  # same first half
    rows = [(n + 1, key(n, "image" if n % 3 else "text", ids[n]), n % 7 != 5) for n in range(4000)]
    rows += [(5001, key(1, "image", twin), True), (5002, key(2, "image", half), True)]
    labels.load(rows, len(rows))
    wanted = {ids[n] for n in range(0, 4000, 4000 // wanted_count)} | {ids[0], ids[1]}
    for methods in (None, {"image"}):
        expected = [
            label
            for label, (i, m, *_), alive in rows
            if i in wanted and alive and (methods is None or m in methods)
        ]
        assert labels.labels_of(wanted, methods).tolist() == sorted(expected)


def test_labels_of_a_few_images_by_the_image_order() -> None:
    # Once the rows are ordered by image id, every answer must still be the scan's: dead
    # labels, other methods, repeated and unknown ids, two ids sharing their first half,
    # and a map that changed since the order was made (then the scan answers again).
    labels = LabelMap()
    ids = [image(n) for n in range(3000)]
    half = ids[7][:16] + ("f" if ids[7][16] != "f" else "e") + ids[7][17:]
    rows = [(n + 1, key(n, "image" if n % 3 else "text", ids[n]), n % 5 != 2) for n in range(3000)]
    rows.append((4001, key(9, "image", half), True))
    labels.load(rows, len(rows))

    def expected(methods: set[str] | None = None) -> list[int]:
        wanted = set(asked)
        return sorted(
            label
            for label, (i, m, *_), alive in rows
            if i in wanted and alive and (methods is None or m in methods)
        )

    asked = [ids[3], ids[7], ids[7], ids[12], half, image(99_999)]
    scanned = labels.labels_of(asked).tolist()
    assert scanned == expected()
    before = labels.nbytes
    labels.order_by_image()
    assert labels.nbytes > before, "the order's memory counts"
    order = labels._order
    for methods in (None, {"image"}, {"text"}):
        assert labels.labels_of(asked, methods).tolist() == expected(methods)
    labels.order_by_image()
    assert labels._order is order, "made once per state"
    labels.set_alive([4, 13], False)  # the order still holds; aliveness is read anew
    rows = [(n, k, alive and n not in (4, 13)) for n, k, alive in rows]
    assert labels.labels_of(asked).tolist() == expected()
    assert labels._order is order
    # Rows appended (vectors added): the order is extended, not made again.
    added = [ids[12], ids[12], ids[3], image(77_777)]
    labels.add(list(range(5000, 5004)), [key(12 + n, "text", i) for n, i in enumerate(added)])
    rows += [(5000 + n, key(12 + n, "text", i), True) for n, i in enumerate(added)]
    asked.append(image(77_777))
    assert labels._order is not order and labels._order is not None
    assert labels._order.size == len(rows)
    assert labels.labels_of(asked).tolist() == expected()
    assert np.all(labels._order.hi[1:] >= labels._order.hi[:-1])
    # Grown past its arrays' capacity, still in label order: extended too.
    more = [(9000 + n, key(n, "image", image(50_000 + n)), True) for n in range(3000)]
    labels.add([r[0] for r in more], [r[1] for r in more])
    rows += more
    asked += [image(50_000), image(52_999)]
    assert labels._order is not None and labels._order.size == len(rows)
    assert labels.labels_of(asked).tolist() == expected()
    arrays = labels._state.labels
    labels.add([20_000], [key(1, "image", ids[3])])  # appended in place (room to spare)
    rows.append((20_000, key(1, "image", ids[3]), True))
    assert labels._state.labels is arrays and labels._order.labels is arrays
    assert labels._order.size == len(rows)
    assert labels.labels_of(asked).tolist() == expected()
    # A label mapped again (out of order): the order no longer holds; the scan answers.
    labels.add([5], [key(5, "image", ids[3])])
    rows = [(n, k, a) for n, k, a in rows if n != 5] + [(5, key(5, "image", ids[3]), True)]
    assert labels._order.size != len(labels._state.labels[: labels._state.size]) or (
        labels._order.labels is not labels._state.labels
    )
    assert labels.labels_of(asked).tolist() == expected()
    labels.order_by_image()
    assert labels.labels_of(asked).tolist() == expected()


def test_the_map_tells_which_labels_changed_since_a_version() -> None:
    labels = LabelMap()
    labels.load([(n, key(n), True) for n in range(1, 11)], 10)
    loaded = labels.version
    assert labels.changes_since(loaded - 1) is None, "before a load: not known"
    labels.add([11, 12], [key(11), key(12)])
    labels.set_alive([3], False)
    changed, version = labels.changes_since(loaded) or (None, None)
    assert changed is not None and changed.tolist() == [3, 11, 12] and version == labels.version
    labels.add([2], [key(2, "caption")])  # mapped again
    assert (labels.changes_since(version) or (None,))[0].tolist() == [2]
    assert (labels.changes_since(labels.version) or (None,))[0].tolist() == []
    # The log keeps the last few thousand labels: a version older than that is not known.
    labels.add(list(range(100, 4196)), [key(n) for n in range(100, 4196)])
    assert labels.changes_since(version) is None
    latest = labels.changes_since(labels.version - 1)
    assert latest is not None and latest[0].tolist() == list(range(100, 4196))
    labels.add(list(range(5000, 9100)), [key(n) for n in range(5000, 9100)])  # more than kept
    assert labels.changes_since(labels.version - 1) is None
