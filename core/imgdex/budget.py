"""Memory budgets for work in flight: image decoding and upload bodies.

A thread pool bounds how many images decode at once, not how much memory they take: a
few small files that decode to hundreds of megapixels each took gigabytes. Every decode
estimates its cost in bytes from the header before a pixel is decoded and holds that
much of one process-wide budget while it works. An image that alone costs more than the
budget is refused (422); others wait for their share, and past a bounded wait get a 503
with ``Retry-After``. `UploadBudget` does the same for the bytes of upload bodies.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from imgdex.errors import PayloadTooLarge, ServiceUnavailable, UnprocessableImage
from imgdex.memory import release_memory

__all__ = ["DECODE_BUDGET", "MemoryBudget", "UploadBudget"]

MiB = 1024 * 1024
# Work below this is left to the allocator; above it freed pages are handed back.
_TRIM_AFTER = 64 * MiB


class MemoryBudget:
    """Bytes held by work in flight; the limit is given by each caller (its config)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.in_use = 0
        self.peak = 0  # the most ever held at once (for tests and /health-style checks)

    @contextmanager
    def hold(self, cost: int, limit: int, wait: float, what: str) -> Iterator[None]:
        """Hold `cost` bytes of a `limit`-byte budget while the block runs."""
        if cost > limit:
            raise UnprocessableImage(
                f"decoding {what} needs about {_mb(cost)} of memory, more than the decode "
                f"budget of {_mb(limit)} (images.decode_budget_bytes)",
                code="image_too_expensive",
            )
        deadline = time.monotonic() + wait
        with self._cond:
            while self.in_use + cost > limit:
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    if self.in_use + cost <= limit:
                        break
                    raise ServiceUnavailable(
                        f"the server is decoding other large images; {what} needs about "
                        f"{_mb(cost)} of the {_mb(limit)} decode budget: retry shortly",
                        code="busy",
                        retry_after=max(1, round(wait)),
                    )
            self.in_use += cost
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= cost
                self._cond.notify_all()
            # The raster was freed: hand its pages back now, not at some later quiet
            # moment (the trim costs milliseconds against a decode of this size).
            if cost >= _TRIM_AFTER:
                release_memory()


def _mb(n: int) -> str:
    return f"{n / MiB:.0f} MiB" if n >= MiB else f"{n} bytes"


DECODE_BUDGET = MemoryBudget()


class UploadBudget:
    """Bytes of upload bodies being received or processed at once (on the event loop).

    Taking more than is left waits up to `wait` seconds for uploads to finish, then
    answers 503 with ``Retry-After``: concurrent uploads cannot pile up without bound."""

    def __init__(self, limit: int, wait: float) -> None:
        self.limit = limit
        self.wait = wait
        self.in_use = 0
        self.peak = 0
        self._waiters: list[asyncio.Future[None]] = []

    async def take(self, n: int) -> None:
        if n > self.limit:  # could never fit, however long it waited
            raise PayloadTooLarge(
                f"the upload ({_mb(n)}) is larger than all uploads in flight may be "
                f"({_mb(self.limit)}, server.uploads_in_flight_bytes)",
                code="payload_too_large",
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        while self.in_use + n > self.limit:
            left = deadline - loop.time()
            if left <= 0:
                raise ServiceUnavailable(
                    f"too many uploads in progress ({_mb(self.in_use)} of "
                    f"{_mb(self.limit)} in flight): retry shortly",
                    code="busy",
                    retry_after=max(1, round(self.wait)),
                )
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait({waiter}, timeout=left)
            finally:
                self._waiters.remove(waiter)
        self.in_use += n
        self.peak = max(self.peak, self.in_use)

    def give(self, n: int) -> None:
        self.in_use -= n
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
