"""The in-memory label map that answers a search's label -> (image, method) look-ups."""

from __future__ import annotations

import hashlib
import threading

import pytest

from imgdex.index.labels import LabelMap


def image(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()[:32]


def test_empty_map_leaves_everything_to_the_catalog() -> None:
    labels = LabelMap()
    assert labels.resolve([]) == ({}, [])
    assert labels.resolve([3, 1]) == ({}, [3, 1])
    labels.set_alive([1], False)  # unknown labels are skipped
    assert len(labels) == 0


def test_add_and_resolve_in_any_order() -> None:
    labels = LabelMap()
    labels.add([1, 2, 5], [(image(1), "image"), (image(2), "caption"), (image(5), "image")])
    found, missing = labels.resolve([5, 4, 1, 2, 9])
    assert found == {5: (image(5), "image"), 1: (image(1), "image"), 2: (image(2), "caption")}
    assert missing == [4, 9]
    assert len(labels) == 3


def test_out_of_order_and_repeated_labels() -> None:
    labels = LabelMap()
    labels.add([10, 20], [(image(10), "a"), (image(20), "b")])
    labels.add([15, 10], [(image(15), "c"), (image(99), "d")])  # 10 again: the last one wins
    found, missing = labels.resolve([10, 15, 20])
    assert found == {10: (image(99), "d"), 15: (image(15), "c"), 20: (image(20), "b")}
    assert missing == []
    assert len(labels) == 3
    labels.add([30], [(image(30), "a")])
    assert labels.resolve([30, 10])[0] == {30: (image(30), "a"), 10: (image(99), "d")}


def test_hidden_labels_are_left_to_the_catalog_until_unhidden() -> None:
    labels = LabelMap()
    labels.add([1, 2, 3], [(image(n), "image") for n in (1, 2, 3)])
    labels.set_alive([2, 7], False)
    assert labels.resolve([1, 2, 3]) == ({1: (image(1), "image"), 3: (image(3), "image")}, [2])
    assert len(labels) == 2
    labels.set_alive([2], True)
    assert labels.resolve([2]) == ({2: (image(2), "image")}, [])


@pytest.mark.parametrize(
    "odd", ["short", "A" * 32, "g" * 32, image(1).upper(), image(1) + "00", ""]
)
def test_ids_that_are_not_32_lowercase_hex_digits_are_not_mapped(odd: str) -> None:
    labels = LabelMap()
    labels.add([1, 2], [(odd, "image"), (image(2), "image")])
    assert labels.resolve([1, 2]) == ({2: (image(2), "image")}, [1])


def test_image_ids_with_zero_bytes_survive() -> None:
    # NumPy's fixed-width bytes would strip trailing zero bytes: the map stores raw rows.
    ids = ["00" * 16, "ab" + "00" * 15, "00" * 15 + "ff"]
    labels = LabelMap()
    labels.add([1, 2, 3], [(i, "image") for i in ids])
    assert labels.resolve([1, 2, 3])[0] == {1: (ids[0], "image"), 2: (ids[1], "image"),
                                            3: (ids[2], "image")}  # fmt: skip


def test_load_replaces_the_map() -> None:
    labels = LabelMap()
    labels.add([1, 2], [(image(1), "image"), (image(2), "image")])
    labels.load([(9, image(9), "caption", True), (4, image(4), "image", False)])
    assert labels.resolve([1, 4, 9]) == ({9: (image(9), "caption")}, [1, 4])
    labels.add([12], [(image(12), "image")])  # grows from a loaded map
    assert labels.resolve([12, 9])[0] == {12: (image(12), "image"), 9: (image(9), "caption")}


def test_add_checks_one_key_per_label() -> None:
    with pytest.raises(ValueError, match="one"):
        LabelMap().add([1, 2], [(image(1), "image")])


def test_many_methods_and_growth() -> None:
    labels = LabelMap()
    for start in range(0, 5000, 250):
        batch = list(range(start, start + 250))
        labels.add(batch, [(image(n), f"m{n % 37}") for n in batch])
    found, missing = labels.resolve(list(range(0, 5000, 7)))
    assert missing == []
    assert all(found[n] == (image(n), f"m{n % 37}") for n in range(0, 5000, 7))
    assert labels.nbytes < 5000 * 2 * 27 + 1024 * 27  # 27 bytes a label, capacity doubling


def test_readers_never_see_a_wrong_answer_while_labels_are_added() -> None:
    labels = LabelMap()
    labels.add([0], [(image(0), "image")])
    done = threading.Event()
    errors: list[str] = []

    def read() -> None:
        while not done.is_set():
            found, _ = labels.resolve(list(range(0, 20_000, 13)))
            bad = [n for n, key in found.items() if key != (image(n), "image")]
            if bad:
                errors.append(f"wrong answers for {bad[:5]}")
                return

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        for start in range(1, 20_000, 97):
            batch = list(range(start, min(start + 97, 20_000)))
            labels.add(batch, [(image(n), "image") for n in batch])
            if start % 5 == 0:
                labels.set_alive(batch[:3], False)
                labels.set_alive(batch[:3], True)
    finally:
        done.set()
        for t in readers:
            t.join()
    assert errors == []
    assert labels.resolve(list(range(20_000)))[1] == []
