"""One writer per data directory: an exclusive ``flock`` on ``<data_dir>/lock``.

Every process that writes a data directory (``imgdex serve``, ``imgdex import --local``,
anything that opens a `Runtime`) holds the lock for as long as it writes; a second one
fails at once with `DataDirLocked`, naming the process that holds it. The kernel drops
the lock when the holder exits, however it exits, so a killed server never leaves a
stale lock behind. The file keeps the holder's pid and command line for that message.

Within one process the lock is re-entrant (a count per directory): the CLI takes it
before the server starts, and the library the server opens takes it again.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import sys
import threading
from pathlib import Path

from imgdex.errors import ImgdexError

__all__ = ["DataDirLocked", "DataLock", "acquire"]

LOCK_FILE = "lock"


class DataDirLocked(ImgdexError):
    """Another process writes this data directory."""

    status = 409
    code = "data_dir_locked"


class DataLock:
    """A held lock; `release` it once (the last release in the process unlocks)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._released = False

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        with _guard:
            held = _held[self.path]
            held[1] -= 1
            if held[1] == 0:
                del _held[self.path]
                fd = held[0]
                try:
                    os.ftruncate(fd, 0)  # no stale holder to read once it is free
                finally:
                    os.close(fd)  # closing drops the flock

    def __enter__(self) -> DataLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


_guard = threading.Lock()
_held: dict[Path, list[int]] = {}  # lock file -> [fd, holders in this process]


def acquire(data_dir: Path) -> DataLock:
    """Lock `data_dir` (created if missing) for this process, or raise `DataDirLocked`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = (data_dir / LOCK_FILE).resolve()
    with _guard:
        if (held := _held.get(path)) is not None:
            held[1] += 1
            return DataLock(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise DataDirLocked(
                f"data directory {data_dir} is in use by {holder}; stop it first, or give "
                "this command another --data-dir (a running server takes imports without "
                "--local)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{shlex.join(sys.argv)}\n".encode(), 0)
        _held[path] = [fd, 1]
        return DataLock(path)


def _read_holder(fd: int) -> str:
    # The holder writes its pid right after locking; a reader that comes in between
    # sees an empty file.
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace")
    except OSError:
        text = ""
    pid, _, command = text.partition("\n")
    if not pid.strip():
        return "another process"
    command = command.strip()
    return f"process {pid.strip()} ({command})" if command else f"process {pid.strip()}"
