"""Large upload bodies staged on disk while they stream, hashed on the way.

Holding a 200 MB upload in memory, then copying it to hash and store it, cost about 2.4x
the body per upload. A body past ``server.upload_spool_bytes`` is instead written to a
file in the storage's staging directory (the same filesystem as the library, so storing
it is a rename) and hashed as it is written: the whole body is never in memory, and the
stored original is that very file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from imgdex.budget import UploadBudget

__all__ = ["Spool", "Spooling", "StagedFile"]


@dataclass(frozen=True)
class Spooling:
    """Where and past which size an upload body is staged on disk, and the budget its
    bytes are held of while it is in flight."""

    directory: Path
    threshold: int
    budget: UploadBudget | None = None


@dataclass(frozen=True)
class StagedFile:
    """A complete upload body on disk (durable), with its SHA-256 and size."""

    path: Path
    sha256: str
    size: int


class Spool:
    """A staging file being written; its methods block (call them in a worker thread)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="upload.", suffix=".part", dir=directory)
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray) -> None:
        self._hash.update(data)  # releases the GIL for large chunks
        self._file.write(data)
        self.size += len(data)

    def finish(self) -> StagedFile:
        """Flush and fsync: the file can be renamed into the library as it is."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return StagedFile(self.path, self._hash.hexdigest(), self.size)

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)
