"""Where blocking work runs: the io pool (hashing, decoding, SQLite, file and index
writes) and the model pool (inference), never the event loop."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["Pools", "Wakeup"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class Wakeup:
    """The bell the background workers listen to: rung when there are new jobs."""

    def __init__(self) -> None:
        self._listener: Callable[[], None] = lambda: None

    def listen(self, listener: Callable[[], None]) -> None:
        self._listener = listener

    def ring(self) -> None:
        self._listener()


class Pools:
    def __init__(self, model_threads: int) -> None:
        # More io threads than about twice the cores only contend for the GIL
        # (docs/benchmarks.md has the measurements).
        io_threads = max(4, 2 * (os.cpu_count() or 2))
        self._io = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="imgdex-io")
        self._models = ThreadPoolExecutor(
            max_workers=max(4, model_threads), thread_name_prefix="imgdex-model"
        )

    async def run_io(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, functools.partial(fn, *args, **kwargs))

    async def run_model(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._models, functools.partial(fn, *args, **kwargs))

    def run_in_background(self, fn: Callable[..., object], *args: object) -> None:
        """Run blocking upkeep in the io pool without waiting for it; errors are logged."""

        def guarded() -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("background task %s failed", getattr(fn, "__name__", fn))

        self._io.submit(guarded)

    def close(self) -> None:
        self._io.shutdown(wait=True, cancel_futures=True)
        self._models.shutdown(wait=True, cancel_futures=True)
