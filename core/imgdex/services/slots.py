"""The core's slots of routed models: an index or a describer served by model services.

No slot-wide inference lock: the router serialises the in-process model itself and lets
requests to remote services run side by side. When no target can serve, the slot backs
off at once (the enricher leaves the work pending instead of counting it as failed); the
health check wakes it as soon as a target is usable again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from imgdex.errors import ImgdexError, ServiceUnavailable, detail_of
from imgdex.models.lifecycle import Lifecycle
from imgdex.models.slots import DescriberSlot, EmbedderSlot, OpenIndex
from imgdex.providers import Caption
from imgdex.services.describers import RoutingDescriber
from imgdex.services.router import RoutingEmbedder
from imgdex.services.routing import NoModelService, Router

if TYPE_CHECKING:
    from PIL.Image import Image

    from imgdex.plugins import PluginRecord

__all__ = ["RoutedDescriberSlot", "RoutedEmbedderSlot", "RoutedSlot"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Vectors = npt.NDArray[np.float32]


class RoutedSlot(Protocol):
    """What the service manager needs of a routed slot."""

    @property
    def name(self) -> str: ...

    @property
    def router(self) -> Router[Any, Any]: ...

    def wake(self) -> bool: ...


def _routed(slot: Lifecycle, fn: Callable[[], T]) -> T:
    slot.ensure_loaded()
    try:
        return fn()
    except NoModelService as exc:
        slot.back_off(exc.detail)
        raise
    except ImgdexError:
        raise
    except Exception as exc:
        log.exception("%s failed during inference", slot.name)
        raise ServiceUnavailable(f"{slot.name}: inference failed: {detail_of(exc)}") from exc


class RoutedEmbedderSlot(EmbedderSlot):
    """The slot of a routed index."""

    def __init__(
        self,
        plugin: PluginRecord,
        router: RoutingEmbedder,
        retry_after: float,
        open_index: OpenIndex,
    ) -> None:
        super().__init__(plugin, router, retry_after, open_index)
        self._router = router

    @property
    def router(self) -> RoutingEmbedder:
        return self._router

    def embed_images(self, images: Sequence[Image]) -> Vectors:
        return self._check(_routed(self, lambda: self._router.embed_images(images)), len(images))

    def embed_texts(self, texts: Sequence[str], *, query: bool) -> Vectors:
        out = _routed(self, lambda: self._router.embed_texts(texts, query=query))
        return self._check(out, len(texts))


class RoutedDescriberSlot(DescriberSlot):
    """The slot of a routed describer."""

    def __init__(self, plugin: PluginRecord, router: RoutingDescriber, retry_after: float) -> None:
        super().__init__(plugin, router, retry_after)
        self._router = router

    @property
    def router(self) -> RoutingDescriber:
        return self._router

    def describe_images(self, images: Sequence[Image]) -> list[Caption]:
        return _routed(self, lambda: self._router.describe_images(images))
