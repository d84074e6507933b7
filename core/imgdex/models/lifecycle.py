"""One lifecycle for every model the core runs, local or behind a service.

`Lifecycle` loads lazily, once, behind a lock, in whatever thread needs the model first.
A failed load is reported with its error and retried after ``worker.retry_load_after``
seconds, so a model whose weights arrive later (or whose GPU box comes back) resumes
without a restart; a failure that says nothing about the model (an import race, memory,
a timeout) is retried within seconds. Inference is serialised per model: two concurrent
batches on the same CPU model only thrash. Several failed calls in a row (on different
inputs) back the model off like a failed load. Subclasses only say how to load (`_load`)
and what to run.

Before any load, the modules a provider declares in ``imports`` are imported under one
process-wide lock: transformers 5.x resolves its lazy attributes without a lock, so
several threads importing from it at once fail at random.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal, TypeVar

from imgdex.errors import ImgdexError, ServiceUnavailable, detail_of

__all__ = [
    "FAILURES_BEFORE_BACKOFF",
    "IMPORT_LOCK",
    "QUICK_RETRIES",
    "FailureStreak",
    "Lifecycle",
    "State",
    "import_for",
    "import_serially",
    "transient",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
State = Literal["not_loaded", "loading", "ready", "failed"]
FAILURES_BEFORE_BACKOFF = 3
# A load that failed for a reason outside the model is retried after 1, 2, 4 ... seconds
# (never longer than the full back-off), this many times before the full back-off.
QUICK_RETRIES = 4
# Failures that say nothing about the model; ModuleNotFoundError (a missing package) does.
_TRANSIENT = (ImportError, AttributeError, MemoryError, TimeoutError)

# Held while any provider's declared modules are imported: one import at a time in the
# whole process, whichever slot, plugin or model service asks.
IMPORT_LOCK = threading.RLock()
_imported: set[str] = set()


def import_serially(*specs: str) -> None:
    """Import modules (``"torch"``) or names in them (``"transformers:AutoModel"``) under
    the core's process-wide import lock, each once per process.

    Resolving a lazy name once, under the lock, leaves it a plain module attribute that
    threads can then read safely. Providers list what `load` needs in ``imports``; a
    plugin that imports a library only on some paths calls this just before it.
    """
    if all(spec in _imported for spec in specs):
        return
    with IMPORT_LOCK:
        for spec in specs:
            if spec in _imported:
                continue
            module_name, _, attr = spec.partition(":")
            module = importlib.import_module(module_name)
            if attr:
                getattr(module, attr)
            _imported.add(spec)


def import_for(provider: object) -> None:
    """Import what `provider` declares in ``imports`` (see `Embedder.imports`)."""
    import_serially(*(str(spec) for spec in getattr(provider, "imports", ()) or ()))


def transient(exc: BaseException) -> bool:
    """Whether a load failure (or what caused it) is not about the model itself."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _TRANSIENT) and not isinstance(current, ModuleNotFoundError):
            return True
        current = current.__cause__ or current.__context__
    return False


class FailureStreak:
    """Failures in a row; `fail` says when they reach `threshold`.

    With a `key` (a fingerprint of the input), the same input failing again says
    nothing new about the model and is not counted."""

    def __init__(self, threshold: int = FAILURES_BEFORE_BACKOFF) -> None:
        self.threshold = threshold
        self.count = 0
        self._keys: set[int] = set()

    def fail(self, key: int | None = None) -> bool:
        """Count one failure; True (and start over) when the streak reaches the threshold."""
        if key is not None:
            if key in self._keys:
                return False
            self._keys.add(key)
        self.count += 1
        if self.count < self.threshold:
            return False
        self.reset()
        return True

    def reset(self) -> None:
        self.count = 0
        self._keys.clear()


class Lifecycle:
    """Lazy loading, back-off, retry and unloading of one model; see the module doc."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        self.state: State = "not_loaded"
        self.error: str | None = None
        self._failed_at = 0.0
        self._retry_delay = retry_after  # of the current failure
        self._quick_retries = 0
        self._load_lock = threading.Lock()
        self._infer_lock = threading.Lock()
        self._streak = FailureStreak()

    # --- what a concrete model says -----------------------------------------------

    @property
    def name(self) -> str:
        raise NotImplementedError

    def _load(self) -> None:
        """Load the model (called once per attempt, under the load lock)."""
        raise NotImplementedError

    def _unload(self) -> None:
        """Release the model's memory (default: nothing to release)."""

    def _unavailable(self, detail: str) -> str:
        return f"{self.name}: model unavailable: {detail}"

    def _inference_failed(self, detail: str) -> str:
        return f"{self.name}: inference failed: {detail}"

    # --- loading ------------------------------------------------------------------

    def ensure_loaded(self) -> None:
        """Load the model once; raise `ServiceUnavailable` with the reason if it cannot."""
        if self.state == "ready":
            return
        with self._load_lock:
            if self.ready():  # loaded by another thread meanwhile
                return
            if not self.available():
                raise ServiceUnavailable(self._unavailable(str(self.error)))
            self.state = "loading"
            try:
                self._load()
            except Exception as exc:
                detail = detail_of(exc)
                delay = self.retry_after
                if transient(exc) and self._quick_retries < QUICK_RETRIES:
                    delay = min(self.retry_after, 2.0**self._quick_retries)
                    self._quick_retries += 1
                self.back_off(detail, delay)
                log.error("%s could not be loaded: %s; retrying in %gs", self.name, detail, delay)
                raise ServiceUnavailable(self._unavailable(detail)) from exc
            self.state = "ready"
            self.error = None
            self._quick_retries = 0
            log.info("%s loaded", self.name)

    def ready(self) -> bool:
        return self.state == "ready"

    def unload(self) -> None:
        """Drop the loaded model; the next call loads it again."""
        with self._load_lock, self._infer_lock:
            if self.state == "ready":
                self._unload()
            self.state = "not_loaded"

    def check_not_loading(self) -> None:
        """Raise instead of waiting while another thread loads the model: requests
        should not hang for the minutes a large download or a slow disk may take."""
        if self.state == "loading":
            raise ServiceUnavailable(
                f"{self.name}: the model is still loading", code="model_loading"
            )

    # --- back-off -------------------------------------------------------------------

    def back_off(self, error: str, delay: float | None = None) -> None:
        """Mark the model failed; it is tried again after `delay` (default: the full back-off)."""
        self.state = "failed"
        self.error = error
        self._failed_at = time.monotonic()
        self._retry_delay = self.retry_after if delay is None else delay

    def available(self) -> bool:
        """False while a failed load is waiting for its retry time."""
        return not (
            self.state == "failed" and time.monotonic() - self._failed_at < self._retry_delay
        )

    def wake(self) -> bool:
        """End a back-off early (what it waited for is back); True if it did."""
        if self.state != "failed":
            return False
        self._failed_at = time.monotonic() - self._retry_delay
        return True

    @property
    def retry_in(self) -> float | None:
        """Seconds until the next load attempt is allowed (0: due now); None unless failed."""
        if self.state != "failed":
            return None
        return max(0.0, self._failed_at + self._retry_delay - time.monotonic())

    @property
    def next_attempt_at(self) -> str | None:
        """When the next load attempt is due, as an ISO 8601 UTC timestamp."""
        wait = self.retry_in
        if wait is None:
            return None
        return datetime.fromtimestamp(time.time() + wait, UTC).isoformat(timespec="seconds")

    # --- running --------------------------------------------------------------------

    def _run(self, fn: Callable[[], T], key: Callable[[], int] | None = None) -> T:
        """Run `fn` on the loaded model, one call at a time. With `key` (a fingerprint
        of the input, computed only on failure), failures on several different inputs in
        a row back the model off: they mean the model is down, not one bad input."""
        self.ensure_loaded()
        with self._infer_lock:
            try:
                out = fn()
            except Exception as exc:
                detail = detail_of(exc)
                if key is not None:
                    self._failed_call(detail, key())
                if isinstance(exc, ImgdexError):
                    raise
                log.exception("%s failed during inference", self.name)
                raise ServiceUnavailable(self._inference_failed(detail)) from exc
            self._streak.reset()
            return out

    def _failed_call(self, detail: str, key: int) -> None:
        if self._streak.fail(key):
            self.back_off(f"{self._streak.threshold} calls in a row failed, last: {detail}")
            log.error("%s: %s; retrying in %ss", self.name, self.error, self.retry_after)
