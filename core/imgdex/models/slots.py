"""The core's handle on each registered model: a `Lifecycle` around one provider.

A `ModelSlot` wraps one plugin provider (an `Embedder` or a `Describer`); the lifecycle
(lazy load, back-off, retry) is `Lifecycle`'s, and the slots only say how to load and
how to run their kind of model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from imgdex.errors import ServiceUnavailable
from imgdex.models.lifecycle import Lifecycle, import_for
from imgdex.models.vectors import BadVectors, as_vectors
from imgdex.providers import Caption, Describer, Embedder, as_caption

if TYPE_CHECKING:
    from PIL.Image import Image

    from imgdex.index import ManagedIndex
    from imgdex.plugins import PluginRecord

__all__ = [
    "DescriberSlot",
    "EmbedderSlot",
    "ModelSlot",
    "OpenIndex",
    "RoutedSlots",
    "build_embedder_slot",
    "image_key",
]

P = TypeVar("P", Embedder, Describer)
# Opens (or creates) the index an embedder writes to, given the vector dimension.
OpenIndex = Callable[[Embedder, int], "ManagedIndex"]


class ModelSlot(Lifecycle, Generic[P]):
    """One plugin provider in the core: loaded through the process-wide import lock."""

    def __init__(self, plugin: PluginRecord, provider: P, retry_after: float) -> None:
        super().__init__(retry_after)
        self.plugin = plugin
        self.provider: P = provider

    def _load(self) -> None:
        import_for(self.provider)
        self.provider.load()
        self._after_load()

    def _after_load(self) -> None:
        pass


def image_key(images: Sequence[Image]) -> int:
    """A cheap fingerprint of a batch of images (to recognise the same input failing)."""
    from PIL.Image import Resampling

    return hash(tuple((im.size, im.resize((4, 4), Resampling.NEAREST).tobytes()) for im in images))


class EmbedderSlot(ModelSlot[Embedder]):
    def __init__(
        self, plugin: PluginRecord, provider: Embedder, retry_after: float, open_index: OpenIndex
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

    def forget_index(self) -> None:
        """Its index was removed from disk (the plugin is disabled): the next load opens
        a fresh, empty one."""
        with self._load_lock:
            self.index = None
            self.state = "not_loaded"

    def ready_index(self) -> ManagedIndex:
        self.ensure_loaded()
        assert self.index is not None
        return self.index

    def embed_images(self, images: Sequence[Image]) -> npt.NDArray[np.float32]:
        out = self._run(lambda: self.provider.embed_images(images), lambda: image_key(images))
        return self._check(out, len(images))

    def embed_texts(self, texts: Sequence[str], *, query: bool) -> npt.NDArray[np.float32]:
        out = self._run(
            lambda: self.provider.embed_texts(texts, query=query), lambda: hash(tuple(texts))
        )
        return self._check(out, len(texts))

    def _check(self, out: object, n: int) -> npt.NDArray[np.float32]:
        try:
            return as_vectors(out, n, self.dimension)
        except BadVectors as exc:
            raise ServiceUnavailable(f"{self.name}: model returned {exc}") from None


class DescriberSlot(ModelSlot[Describer]):
    @property
    def name(self) -> str:
        return f"describer {self.provider.method}"

    def describe_images(self, images: Sequence[Image]) -> list[Caption]:
        out = self._run(lambda: self.provider.describe_images(images), lambda: image_key(images))
        if not isinstance(out, list | tuple) or len(out) != len(images):
            raise ServiceUnavailable(f"{self.name}: expected {len(images)} captions")
        try:
            return [as_caption(value) for value in out]
        except TypeError as exc:
            raise ServiceUnavailable(f"{self.name}: {exc}") from None


class RoutedSlots(Protocol):
    """Whatever builds the slots of indexes served by model services (`ServiceManager`)."""

    def routed_slot(
        self, plugin: PluginRecord, embedder: Embedder, retry_after: float, open_index: OpenIndex
    ) -> EmbedderSlot | None: ...


def build_embedder_slot(
    plugin: PluginRecord,
    embedder: Embedder,
    retry_after: float,
    open_index: OpenIndex,
    services: RoutedSlots | None = None,
) -> EmbedderSlot:
    """The slot of one index: routed across model services when `services` has some
    for the plugin, else the plugin's own model in this process."""
    if services is not None:
        routed = services.routed_slot(plugin, embedder, retry_after, open_index)
        if routed is not None:
            return routed
    return EmbedderSlot(plugin, embedder, retry_after, open_index)
