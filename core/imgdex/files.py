"""Durable file writes (temp file, fsync, rename) and the data directory's permissions."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

from imgdex.config import StorageConfig

__all__ = ["atomic_write", "fsync_dir", "make_private"]


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
            fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
