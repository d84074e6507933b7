"""Content-addressed files on disk: ``storage/xx/yy/<rest>/`` per image.

Every file is written to a temporary name, flushed to disk and renamed into place, so a
reader (or a restart after a crash) sees either nothing or the whole file. A new image
directory is assembled under ``storage/.tmp/`` and renamed into place in one step.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from imgdex.config import StorageConfig
from imgdex.errors import BadRequest

__all__ = [
    "ID_LENGTH",
    "Storage",
    "atomic_write",
    "check_id",
    "check_name",
    "image_id",
    "make_private",
]

ID_LENGTH = 32
_ID_RE = re.compile(r"[0-9a-f]{32}")
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


def image_id(full_sha256: str) -> str:
    """The image id: the first 32 hex characters (128 bits) of the SHA-256."""
    return full_sha256[:ID_LENGTH]


def check_id(value: str) -> str:
    """Validate an image id from a client; raises 400 for anything but 32 lowercase hex."""
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise BadRequest(
            f"invalid image id {str(value)[:80]!r}: expected 32 lowercase hex characters",
            code="invalid_id",
        )
    return value


def check_name(value: str, what: str = "name") -> str:
    """Names that become file names (methods, indexes): letters, digits, ``_ . -``."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value) or ".." in value:
        raise BadRequest(
            f"invalid {what} {str(value)[:80]!r}: use 1-64 letters, digits, '_', '.', '-'",
            code="invalid_name",
        )
    return value


def atomic_write(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write `data` to `path` through a temporary file and an atomic rename."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if fsync:
            _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def make_private(data: Path, storage: StorageConfig) -> None:
    """Run with ``storage.umask`` and create the data directory with it; an existing
    directory and catalog made under a laxer mask are tightened, so files inside (which
    need the directory to be reached) are private too."""
    # Process-wide on purpose: SQLite, hnswlib and Pillow create files of their own.
    os.umask(storage.mask)
    data.mkdir(parents=True, exist_ok=True, mode=storage.dir_mode)
    for path, mode in (
        (data, storage.dir_mode),
        *((data / name, storage.file_mode) for name in _CATALOG_FILES),
    ):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            current = path.stat().st_mode & 0o777
            if current & storage.mask:
                path.chmod(current & mode)


_CATALOG_FILES = ("imgdex.db", "imgdex.db-wal", "imgdex.db-shm", "admin_token")


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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _npy_bytes(vector: npt.NDArray[np.float32]) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.asarray(vector, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


class Storage:
    """The ``storage/`` tree: originals, thumbnails, descriptions and vectors."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / ".tmp"
        self.trash = root / ".trash"
        self.opened_at = time.time()
        for d in (self.root, self.tmp, self.trash):
            d.mkdir(parents=True, exist_ok=True)

    def image_dir(self, id_: str) -> Path:
        return self.root / id_[:2] / id_[2:4] / id_[4:]

    def original(self, id_: str, filename: str) -> Path:
        return self.image_dir(id_) / filename

    def thumbnail(self, id_: str) -> Path:
        return self.image_dir(id_) / "thumbnail.jpg"

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
        if (final / filename).is_file() and (final / "thumbnail.jpg").is_file():
            return False
        staging = self.tmp / f"{id_}.{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        try:
            for name, payload in ((filename, data), ("thumbnail.jpg", thumbnail)):
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
                for name in (filename, "thumbnail.jpg"):
                    os.replace(staging / name, final / name)
            _fsync_dir(final.parent)  # make the rename itself durable
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
                    if _ID_RE.fullmatch(id_) and rest.is_dir():
                        yield id_, rest


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
