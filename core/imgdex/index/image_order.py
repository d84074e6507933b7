"""Image ids as a label map holds them (16 bytes, or two 64-bit halves), and its rows
ordered by image id (`imgdex.index.labels.LabelMap.order_by_image`): the labels of a few
images are then a binary search each, instead of a pass over every label."""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["ID_BYTES", "ImageOrder", "id_halves", "image_bytes"]

ID_BYTES = 16  # image ids are the first 32 hex digits of the SHA-256


def image_bytes(image: str) -> bytes | None:
    """The 16 bytes of an image id, or None for anything but 32 lowercase hex digits."""
    if len(image) != 2 * ID_BYTES:
        return None
    try:
        raw = bytes.fromhex(image)
    except ValueError:
        return None
    return raw if raw.hex() == image else None  # only the canonical (lowercase) spelling


def id_halves(images: Collection[str]) -> npt.NDArray[np.uint64]:
    """Image ids as ``(n, 2)`` 64-bit halves; ids that are not 32 lowercase hex digits
    (never in a label map) are left out."""
    ids = list(images)
    joined = "".join(ids)
    if len(joined) != 2 * ID_BYTES * len(ids) or joined != joined.lower():
        ids = [i for i in ids if image_bytes(i) is not None]
        joined = "".join(ids)
    try:
        raw = bytes.fromhex(joined)  # one call for all: 90k ids in a few ms
    except ValueError:
        raw = b"".join(b for i in ids if (b := image_bytes(i)) is not None)
    return np.frombuffer(raw, np.uint8).reshape(-1, ID_BYTES).view(np.uint64)


class ImageOrder(NamedTuple):
    """A map's rows `[:size]` sorted by the first 64 bits of their image id."""

    labels: npt.NDArray[np.int64]  # the state's labels array: which state this is for
    size: int
    rows: npt.NDArray[np.intp]
    hi: npt.NDArray[np.uint64]  # the ids' first halves, in `rows` order
    lo: npt.NDArray[np.uint64]

    @classmethod
    def of(
        cls, labels: npt.NDArray[np.int64], images: npt.NDArray[np.uint8], size: int
    ) -> ImageOrder:
        """The order of rows `[:size]` of a label map whose image ids are `images`
        (16 bytes a row) and whose labels array is `labels`."""
        halves = images[:size].view(np.uint64)
        rows = np.argsort(halves[:, 0], kind="stable")
        sorted_halves = halves[rows]
        hi = np.ascontiguousarray(sorted_halves[:, 0])
        lo = np.ascontiguousarray(sorted_halves[:, 1])
        return cls(labels, size, rows, hi, lo)

    def extended(
        self, labels: npt.NDArray[np.int64], images: npt.NDArray[np.uint8], size: int
    ) -> ImageOrder:
        """This order with the rows `[self.size:size]` a map appended (its rows before
        unchanged, `labels` its labels array now): merged in, 0.3 ms at 100k rows where
        a new order costs 10, so that adding vectors keeps the order."""
        halves = images[self.size : size].view(np.uint64)
        new = np.argsort(halves[:, 0], kind="stable")
        hi, lo = halves[new, 0], halves[new, 1]
        at = self.hi.searchsorted(hi, "right")
        rows = np.insert(self.rows, at, new + self.size)
        return ImageOrder(
            labels, size, rows, np.insert(self.hi, at, hi), np.insert(self.lo, at, lo)
        )

    def rows_of(self, wanted: npt.NDArray[np.uint64]) -> npt.NDArray[np.intp]:
        """The rows (ascending) whose image id is one of `wanted` (``(n, 2)`` halves).

        Each wanted id's rows by its first half are a range (an image has a row per
        label: its image vector, each description's), checked against the second half
        all at once: the ranges laid end to end."""
        first = self.hi.searchsorted(wanted[:, 0], "left")
        lengths = self.hi.searchsorted(wanted[:, 0], "right") - first
        ends = np.cumsum(lengths)
        at = np.repeat(first - ends + lengths, lengths) + np.arange(
            int(ends[-1]) if len(ends) else 0
        )
        hit = self.lo[at] == np.repeat(wanted[:, 1], lengths)
        return np.unique(self.rows[at[hit]])
