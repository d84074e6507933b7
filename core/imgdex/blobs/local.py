"""The local-files blob store: ``storage/xx/yy/<rest>/`` per image.

Every file is written to a temporary name, flushed to disk and renamed into place, so a
reader (or a restart after a crash) sees either nothing or the whole file. A new image
directory is assembled under ``storage/.tmp/`` and renamed into place in one step.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from imgdex.files import atomic_write, fsync_dir
from imgdex.ids import check_name, is_id

__all__ = ["THUMBNAIL", "LocalBlobStore"]

THUMBNAIL = "thumbnail.jpg"


def _mkdirs_under(base: Path, path: Path) -> None:
    """Create `path` and its parents up to `base`, which must exist (FileNotFoundError
    otherwise); a directory made by a concurrent writer is fine."""
    for part in reversed([path, *path.parents]):
        if part == base or base not in part.parents:
            continue
        with contextlib.suppress(FileExistsError):
            os.mkdir(part)
    if not path.is_dir():  # renamed away (to the trash) after we made it
        raise FileNotFoundError(errno.ENOENT, "image directory is gone", str(path))


def _npy_bytes(vector: npt.NDArray[np.float32]) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.asarray(vector, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


class LocalBlobStore:
    """The ``storage/`` tree: originals, thumbnails, descriptions and vectors."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / ".tmp"
        self.trash = root / ".trash"
        self.opened_at = time.time()
        for d in (self.root, self.tmp, self.trash):
            d.mkdir(parents=True, exist_ok=True)

    @property
    def staging(self) -> Path:
        return self.tmp

    def image_dir(self, id_: str) -> Path:
        return self.root / id_[:2] / id_[2:4] / id_[4:]

    def original(self, id_: str, filename: str) -> Path:
        return self.image_dir(id_) / filename

    def thumbnail(self, id_: str) -> Path:
        return self.image_dir(id_) / THUMBNAIL

    # --- reads --------------------------------------------------------------------

    def has_image(self, id_: str, filename: str) -> bool:
        return self.original(id_, filename).is_file() and self.thumbnail(id_).is_file()

    def open(self, id_: str, name: str) -> BinaryIO:
        try:
            return open(self.image_dir(id_) / name, "rb")
        except (NotADirectoryError, IsADirectoryError):
            raise FileNotFoundError(errno.ENOENT, "not stored", name) from None

    def read(self, id_: str, name: str) -> bytes:
        with self.open(id_, name) as f:
            return f.read()

    def original_of(self, id_: str) -> str | None:
        try:
            names = [
                p.name
                for p in self.image_dir(id_).iterdir()
                if p.is_file() and p.name.startswith("image.")
            ]
        except (FileNotFoundError, NotADirectoryError):
            return None
        return names[0] if len(names) == 1 else None

    def list_ids(self) -> Iterator[str]:
        return (id_ for id_, _ in self.iter_image_dirs())

    def vector_path(self, id_: str, index_name: str, method: str) -> Path:
        return self.image_dir(id_) / "embedding" / index_name / f"{method}.npy"

    def description_path(self, id_: str, method: str) -> Path:
        return self.image_dir(id_) / "description" / f"{method}.txt"

    # --- writes -------------------------------------------------------------------

    def put_image(self, id_: str, filename: str, data: bytes | Path, thumbnail: bytes) -> bool:
        """Store an image directory atomically; False when it already exists whole.

        `data` may be a staged upload (`imgdex.staging`, fsynced, in `tmp`): it is
        renamed into place instead of copied."""
        final = self.image_dir(id_)
        if (final / filename).is_file() and (final / THUMBNAIL).is_file():
            return False
        staging = self.tmp / f"{id_}.{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        try:
            for name, payload in ((filename, data), (THUMBNAIL, thumbnail)):
                if isinstance(payload, Path):
                    os.replace(payload, staging / name)
                    continue
                with open(staging / name, "wb") as f:
                    f.write(payload)
                    f.flush()
                    os.fsync(f.fileno())
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(staging, final)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                # A half-present directory (lost thumbnail, stray vectors), possibly
                # created a moment ago by a concurrent writer: keep what it has and put
                # the fresh files in atomically one by one.
                for name in (filename, THUMBNAIL):
                    os.replace(staging / name, final / name)
            fsync_dir(final.parent)  # make the rename itself durable
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return True

    def put_vector(
        self, id_: str, index_name: str, method: str, vector: npt.NDArray[np.float32]
    ) -> bool:
        """Write a vector file; False when the image directory is gone (hard-deleted
        meanwhile): a late vector never recreates the directory of a deleted image."""
        path = self.vector_path(id_, index_name, method)
        try:
            _mkdirs_under(self.image_dir(id_), path.parent)
            # Vectors can be recomputed and the catalog is the record: no fsync per vector.
            atomic_write(path, _npy_bytes(vector), fsync=False)
        except FileNotFoundError:
            # The directory went to the trash between two steps (a hard delete): the
            # temp file went with it, and atomic_write removed it if it could.
            return False
        return True

    def read_vector(self, id_: str, index_name: str, method: str) -> npt.NDArray[np.float32]:
        vector = np.load(self.vector_path(id_, index_name, method), allow_pickle=False)
        return np.asarray(vector, dtype=np.float32)

    def put_description(self, id_: str, method: str, content: str) -> None:
        path = self.description_path(id_, method)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, content.encode("utf-8"))

    def remove_description(self, id_: str, method: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.description_path(id_, method).unlink()
        for index_dir in (self.image_dir(id_) / "embedding").glob("*"):
            with contextlib.suppress(FileNotFoundError):
                (index_dir / f"{method}.npy").unlink()

    def remove_index_vectors(self, index_name: str) -> int:
        """Delete every image's vectors of one index (after the index was removed)."""
        check_name(index_name, "index name")
        count = 0
        for _, path in self.iter_image_dirs():
            folder = path / "embedding" / index_name
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
                count += 1
        return count

    def trash_image(self, id_: str) -> None:
        """Move an image directory into the trash: it disappears in one rename."""
        final = self.image_dir(id_)
        if final.exists():
            os.rename(final, self.trash / f"{id_}.{uuid.uuid4().hex[:8]}")

    def trashed_ids(self) -> set[str]:
        """Images whose directory is in the trash (a hard delete that may not have finished)."""
        return {entry.name.split(".")[0] for entry in self.trash.iterdir()}

    def empty_trash(self, id_: str | None = None) -> None:
        for entry in self.trash.glob(f"{id_}.*" if id_ else "*"):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()

    def clean_tmp(self, older_than: float = 0.0) -> int:
        """Remove leftovers of interrupted writes older than `older_than` seconds (0 at
        start-up; while serving, only old ones, never an upload in flight)."""
        count = 0
        cutoff = time.time() - older_than
        for entry in self.tmp.iterdir():
            try:
                if older_than and entry.stat().st_mtime > cutoff:
                    continue
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
            except FileNotFoundError:
                continue
            count += 1
        return count

    def clean_stray_tmp(self) -> int:
        """Remove temp files of writes that never finished (``.<name>.<hex>.tmp`` next to
        vectors and descriptions, left by a kill mid-write) in every image directory.

        Only files older than this `Storage` are touched: a write in flight is never
        pulled from under its rename."""
        count = 0
        for _, path in self.iter_image_dirs():
            for tmp in path.glob("**/.*.tmp"):
                try:
                    if tmp.stat().st_mtime >= self.opened_at:
                        continue
                    tmp.unlink()
                except FileNotFoundError:
                    continue
                count += 1
        return count

    def iter_image_dirs(self) -> Iterator[tuple[str, Path]]:
        """Every ``(id, directory)`` on disk (slow on huge trees: used at reconcile)."""
        for a in sorted(self.root.glob("[0-9a-f][0-9a-f]")):
            if not a.is_dir():
                continue
            for b in sorted(a.glob("[0-9a-f][0-9a-f]")):
                if not b.is_dir():
                    continue
                for rest in b.iterdir():
                    id_ = a.name + b.name + rest.name
                    if is_id(id_) and rest.is_dir():
                        yield id_, rest
