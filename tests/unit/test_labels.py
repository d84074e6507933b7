"""The in-memory label map that answers a search's label -> (image, method) look-ups."""

from __future__ import annotations

import hashlib
import threading

import pytest

from imgdex.index.labels import Key, LabelMap


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
