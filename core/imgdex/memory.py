"""Keeping the server's memory bounded and giving it back to the system.

Decoding an image allocates its whole raster (Pillow takes it in 16 MiB blocks) for a
moment. With glibc's defaults every thread that decodes may get its own malloc arena,
and blocks freed after a large image stay in those arenas: resident memory after a burst
of large images stayed at many times its start. `tune_allocator` caps the arenas and
fixes the mmap threshold (glibc otherwise raises it after each large free, so later
blocks come from the arenas), and `release_memory` hands freed arena pages back.
Both do nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading

__all__ = ["release_memory", "tune_allocator"]

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h).
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Pillow allocates rasters in blocks of up to 16 MiB (whole lines, so usually a little
# less): above this threshold each block is its own mapping, returned to the system the
# moment it is freed, and a burst of large images cannot pile up in the arenas. Smaller
# allocations (most images of ordinary size) still reuse arena memory.
_MMAP_THRESHOLD = 4 * 1024 * 1024
_ARENA_MAX = 2

_lock = threading.Lock()
_tuned = False


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


def tune_allocator() -> None:
    """Cap malloc arenas and fix the mmap threshold, once per process (idempotent).

    Arenas already created stay, so this runs early (the server calls it before its
    thread pools start). ``MALLOC_ARENA_MAX`` / ``MALLOC_MMAP_THRESHOLD_`` in the
    environment win: glibc read them at start-up and they are left alone."""
    global _tuned
    with _lock:
        if _tuned or _LIBC is None:
            return
        _tuned = True
        if "MALLOC_ARENA_MAX" not in os.environ:
            _LIBC.mallopt(_M_ARENA_MAX, _ARENA_MAX)
        if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
            _LIBC.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)


def release_memory() -> None:
    """Return free heap pages to the system (after large image work)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
