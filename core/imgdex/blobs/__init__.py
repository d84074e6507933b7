"""Where the bytes live: the blob-store seam and its local-files implementation.

A blob store keeps, per image id, the original file and its thumbnail (written once,
atomically, together), plus the mirrors the catalog can be rebuilt from: description
texts and vectors. Nothing outside a store builds a path to an image's files; callers
name a blob by image id and file name (``image.<ext>`` or `THUMBNAIL`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
import numpy.typing as npt

from .local import THUMBNAIL, LocalBlobStore

__all__ = ["THUMBNAIL", "BlobStore", "LocalBlobStore"]


class BlobStore(Protocol):
    """The operations the core needs from a place that stores image files."""

    @property
    def staging(self) -> Path:
        """A local directory for large uploads, renamed into the store when kept."""
        ...

    def put_image(self, id_: str, filename: str, data: bytes | Path, thumbnail: bytes) -> bool:
        """Store an original and its thumbnail atomically unless both are there already
        (put if absent); False when they were. `data` may be a staged file."""
        ...

    def has_image(self, id_: str, filename: str) -> bool:
        """Whether the original `filename` and the thumbnail are both stored."""
        ...

    def open(self, id_: str, name: str) -> BinaryIO:
        """Open a stored file for (ranged, streaming) reading; FileNotFoundError if absent."""
        ...

    def read(self, id_: str, name: str) -> bytes:
        """A stored file's bytes; FileNotFoundError if absent."""
        ...

    def original_of(self, id_: str) -> str | None:
        """The name of the one original stored for `id_` (used to recover lost rows)."""
        ...

    def list_ids(self) -> Iterator[str]:
        """Every image id with files in the store (slow on huge stores)."""
        ...

    def trash_image(self, id_: str) -> None:
        """Hide an image's files at once; `empty_trash` removes them for good."""
        ...

    def trashed_ids(self) -> set[str]: ...

    def empty_trash(self, id_: str | None = None) -> None: ...

    def clean_tmp(self, older_than: float = 0.0) -> int:
        """Remove staging leftovers older than `older_than` seconds; how many."""
        ...

    def clean_stray_tmp(self) -> int:
        """Remove temp files of writes a kill interrupted; how many."""
        ...

    def put_vector(
        self, id_: str, index_name: str, method: str, vector: npt.NDArray[np.float32]
    ) -> bool:
        """Keep a vector; False when the image is gone (a late write never revives it)."""
        ...

    def read_vector(self, id_: str, index_name: str, method: str) -> npt.NDArray[np.float32]: ...

    def remove_index_vectors(self, index_name: str) -> int: ...

    def put_description(self, id_: str, method: str, content: str) -> None: ...

    def remove_description(self, id_: str, method: str) -> None: ...
