"""The core's handle on each registered model: lazy loading, state, and safe calls.

A `ModelSlot` wraps one provider (an `Embedder` or a `Describer`). Weights load on first
use, once, behind a lock, in whatever worker thread needs them first. A model that fails
to load is reported with its error and retried after ``worker.retry_load_after``
seconds, so a model whose weights arrive later (or whose GPU box comes back) resumes
without a restart; a failure that says nothing about the model (an import race, memory,
a timeout) is retried within seconds. Inference on one model is serialised: two
concurrent batches on the same CPU model only thrash.

Before any `load`, the modules a provider declares in ``imports`` are imported under
one process-wide lock: transformers 5.x resolves its lazy attributes without a lock, so
several threads importing from it at once fail at random.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from imgdex.errors import ImgdexError, ServiceUnavailable
from imgdex.providers import Caption, Describer, Embedder, as_caption

if TYPE_CHECKING:
    from PIL.Image import Image

    from imgdex.index import ManagedIndex
    from imgdex.plugins import PluginRecord

__all__ = [
    "IMPORT_LOCK",
    "DescriberSlot",
    "EmbedderSlot",
    "ModelSlot",
    "import_for",
    "import_serially",
    "transient",
]

log = logging.getLogger(__name__)

P = TypeVar("P", Embedder, Describer)
FAILURES_BEFORE_BACKOFF = 3
State = Literal["not_loaded", "loading", "ready", "failed"]
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


class ModelSlot(Generic[P]):
    def __init__(self, plugin: PluginRecord, provider: P, retry_after: float) -> None:
        self.plugin = plugin
        self.provider: P = provider
        self.retry_after = retry_after
        self.state: State = "not_loaded"
        self.error: str | None = None
        self._failed_at = 0.0
        self._retry_delay = retry_after  # of the current failure
        self._quick_retries = 0
        self._load_lock = threading.Lock()
        self._infer_lock = threading.Lock()
        self._consecutive_failures = 0
        self._failed_inputs: set[int] = set()

    @property
    def name(self) -> str:
        raise NotImplementedError

    def ensure_loaded(self) -> None:
        """Load the model once; raise `ServiceUnavailable` with the reason if it cannot."""
        if self.state == "ready":
            return
        with self._load_lock:
            if self.state == "ready":
                return
            if not self.available():
                raise ServiceUnavailable(f"{self.name}: model unavailable: {self.error}")
            self.state = "loading"
            try:
                import_for(self.provider)
                self.provider.load()
                self._after_load()
            except Exception as exc:
                detail = _describe_error(exc)
                delay = self.retry_after
                if transient(exc) and self._quick_retries < QUICK_RETRIES:
                    delay = min(self.retry_after, 2.0**self._quick_retries)
                    self._quick_retries += 1
                self.back_off(detail, delay)
                log.error("%s could not be loaded: %s; retrying in %gs", self.name, detail, delay)
                raise ServiceUnavailable(f"{self.name}: model unavailable: {detail}") from exc
            self.state = "ready"
            self.error = None
            self._quick_retries = 0
            log.info("%s loaded", self.name)

    def back_off(self, error: str, delay: float | None = None) -> None:
        """Mark the model failed; it is tried again after `delay` (default: the full back-off)."""
        self.state = "failed"
        self.error = error
        self._failed_at = time.monotonic()
        self._retry_delay = self.retry_after if delay is None else delay

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

    def _after_load(self) -> None:
        pass

    def check_not_loading(self) -> None:
        """Raise instead of waiting while another thread loads the model: requests
        should not hang for the minutes a large download or a slow disk may take."""
        if self.state == "loading":
            raise ServiceUnavailable(
                f"{self.name}: the model is still loading", code="model_loading"
            )

    def available(self) -> bool:
        """False while a failed load is waiting for its retry time."""
        return not (
            self.state == "failed" and time.monotonic() - self._failed_at < self._retry_delay
        )

    def _call(self, fn: Callable[[], object], inputs: Callable[[], int]) -> object:
        self.ensure_loaded()
        with self._infer_lock:
            try:
                out = fn()
            except Exception as exc:
                detail = _describe_error(exc)
                self._failed_call(detail, inputs())  # fingerprinted only on failure
                if isinstance(exc, ImgdexError):
                    raise
                log.exception("%s failed during inference", self.name)
                raise ServiceUnavailable(f"{self.name}: inference failed: {detail}") from exc
            self._consecutive_failures = 0
            self._failed_inputs.clear()
            return out

    def _failed_call(self, detail: str, inputs: int) -> None:
        # One failure may be one bad input; several in a row mean the model (or its
        # remote endpoint) is down: back off like a failed load instead of burning
        # through the queue.
        # The same input failing again says nothing new about the model: count only
        # failures on different inputs.
        if inputs in self._failed_inputs:
            return
        self._failed_inputs.add(inputs)
        self._consecutive_failures += 1
        if self._consecutive_failures >= FAILURES_BEFORE_BACKOFF:
            self._consecutive_failures = 0
            self._failed_inputs.clear()
            self.back_off(f"{FAILURES_BEFORE_BACKOFF} calls in a row failed, last: {detail}")
            log.error("%s: %s; retrying in %ss", self.name, self.error, self.retry_after)


def _image_key(images: Sequence[Image]) -> int:
    """A cheap fingerprint of a batch of images (to recognise the same input failing)."""
    from PIL.Image import Resampling

    return hash(tuple((im.size, im.resize((4, 4), Resampling.NEAREST).tobytes()) for im in images))


def _describe_error(exc: Exception) -> str:
    return exc.detail if isinstance(exc, ImgdexError) else f"{type(exc).__name__}: {exc}"


class EmbedderSlot(ModelSlot[Embedder]):
    def __init__(
        self,
        plugin: PluginRecord,
        provider: Embedder,
        retry_after: float,
        open_index: Callable[[Embedder, int], ManagedIndex],
    ) -> None:
        super().__init__(plugin, provider, retry_after)
        self._open_index = open_index
        self.index: ManagedIndex | None = None

    @property
    def name(self) -> str:
        return str(self.provider.index_name)

    @property
    def dimension(self) -> int | None:
        if self.index is not None:
            return self.index.info.dimension
        dimension = self.provider.dimension
        return None if dimension is None else int(dimension)

    def _after_load(self) -> None:
        dimension = self.provider.dimension
        if not dimension or dimension <= 0:
            raise RuntimeError(f"{self.name}: the model reported no vector dimension")
        self.index = self._open_index(self.provider, int(dimension))

    def ready_index(self) -> ManagedIndex:
        self.ensure_loaded()
        assert self.index is not None
        return self.index

    def embed_images(self, images: Sequence[Image]) -> npt.NDArray[np.float32]:
        out = self._call(lambda: self.provider.embed_images(images), lambda: _image_key(images))
        return self._check(out, len(images))

    def embed_texts(self, texts: Sequence[str], *, query: bool) -> npt.NDArray[np.float32]:
        out = self._call(
            lambda: self.provider.embed_texts(texts, query=query), lambda: hash(tuple(texts))
        )
        return self._check(out, len(texts))

    def _check(self, out: object, n: int) -> npt.NDArray[np.float32]:
        vectors = np.asarray(out, dtype=np.float32)
        expected = (n, self.dimension)
        if vectors.shape != expected:
            raise ServiceUnavailable(
                f"{self.name}: model returned vectors of shape {vectors.shape}, expected {expected}"
            )
        if not np.isfinite(vectors).all():
            raise ServiceUnavailable(f"{self.name}: model returned non-finite values")
        return vectors


class DescriberSlot(ModelSlot[Describer]):
    @property
    def name(self) -> str:
        return f"describer {self.provider.method}"

    def describe_images(self, images: Sequence[Image]) -> list[Caption]:
        out = self._call(lambda: self.provider.describe_images(images), lambda: _image_key(images))
        if not isinstance(out, list | tuple) or len(out) != len(images):
            raise ServiceUnavailable(f"{self.name}: expected {len(images)} captions")
        try:
            return [as_caption(value) for value in out]
        except TypeError as exc:
            raise ServiceUnavailable(f"{self.name}: {exc}") from None
