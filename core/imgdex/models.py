"""The core's handle on each registered model: lazy loading, state, and safe calls.

A `ModelSlot` wraps one provider (an `Embedder` or a `Describer`). Weights load on first
use, once, behind a lock, in whatever worker thread needs them first. A model that fails
to load is reported with its error and retried after ``worker.retry_load_after``
seconds, so a model whose weights arrive later (or whose GPU box comes back) resumes
without a restart. Inference on one model is serialised: two concurrent batches on the
same CPU model only thrash.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from imgdex.errors import ImgdexError, ServiceUnavailable
from imgdex.providers import Describer, Embedder

if TYPE_CHECKING:
    from PIL.Image import Image

    from imgdex.index import ManagedIndex
    from imgdex.plugins import PluginRecord

__all__ = ["DescriberSlot", "EmbedderSlot", "ModelSlot"]

log = logging.getLogger(__name__)

P = TypeVar("P", Embedder, Describer)
FAILURES_BEFORE_BACKOFF = 3
State = Literal["not_loaded", "loading", "ready", "failed"]


class ModelSlot(Generic[P]):
    def __init__(self, plugin: PluginRecord, provider: P, retry_after: float) -> None:
        self.plugin = plugin
        self.provider: P = provider
        self.retry_after = retry_after
        self.state: State = "not_loaded"
        self.error: str | None = None
        self._failed_at = 0.0
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
            if self.state == "failed" and time.monotonic() - self._failed_at < self.retry_after:
                raise ServiceUnavailable(f"{self.name}: model unavailable: {self.error}")
            self.state = "loading"
            try:
                self.provider.load()
                self._after_load()
            except Exception as exc:
                self.state = "failed"
                detail = (
                    exc.detail if isinstance(exc, ImgdexError) else f"{type(exc).__name__}: {exc}"
                )
                self.error = detail
                self._failed_at = time.monotonic()
                log.error("%s could not be loaded: %s", self.name, detail)
                raise ServiceUnavailable(f"{self.name}: model unavailable: {detail}") from exc
            self.state = "ready"
            self.error = None
            log.info("%s loaded", self.name)

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
            self.state == "failed" and time.monotonic() - self._failed_at < self.retry_after
        )

    def _call(self, fn: Callable[[], object], inputs: Callable[[], int]) -> object:
        self.ensure_loaded()
        with self._infer_lock:
            try:
                out = fn()
            except Exception as exc:
                detail = (
                    exc.detail if isinstance(exc, ImgdexError) else f"{type(exc).__name__}: {exc}"
                )
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
            self.state = "failed"
            self.error = f"{FAILURES_BEFORE_BACKOFF} calls in a row failed, last: {detail}"
            self._failed_at = time.monotonic()
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

    def describe_images(self, images: Sequence[Image]) -> list[str]:
        out = self._call(lambda: self.provider.describe_images(images), lambda: _image_key(images))
        if not isinstance(out, list) or len(out) != len(images):
            raise ServiceUnavailable(f"{self.name}: expected {len(images)} captions")
        return [str(text).strip() for text in out]
