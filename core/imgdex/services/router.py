"""An index's embedder routed across its service targets (`imgdex.services.routing`).

Vectors of another model never reach an index: a remote target is checked (model,
version, dimension, index name) before its first use and after every recovery, and each
response is checked again; a mismatch takes the target out with the reason.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from imgdex.providers import Embedder
from imgdex.services.client import Backend, MismatchError, Served
from imgdex.services.routing import FAILURES_TO_DISABLE, NoModelService, Router, ServiceTarget

if TYPE_CHECKING:
    from PIL.Image import Image


__all__ = ["FAILURES_TO_DISABLE", "NoModelService", "RoutingEmbedder", "ServiceTarget"]

Vectors = npt.NDArray[np.float32]


class RoutingEmbedder(Router[Backend, Vectors], Embedder):
    """The index's embedder as the core sees it; each call goes to one of its targets."""

    def __init__(
        self,
        plugin_embedder: Embedder,
        targets: list[ServiceTarget[Backend]],
        expected_dimension: Callable[[], int | None],
    ) -> None:
        e = plugin_embedder
        batch = min((p.config.batch_size for p in targets), default=32)
        super().__init__(e.index_name, targets, batch)
        # Registration loads no weights: the plugin's embedder names the index and model.
        self.index_name, self.model, self.version = e.index_name, e.model, e.version
        self.stores, self.query_modalities, self.metric = e.stores, e.query_modalities, e.metric
        self._expected_dimension = expected_dimension
        self._dimension: int | None = None
        self._dim_lock = threading.Lock()

    @property
    def dimension(self) -> int | None:
        return self._dimension

    def load(self) -> None:
        self.find_target()

    def embed_images(self, images: Sequence[Image]) -> Vectors:
        if not images:
            return self._empty()
        return self.route(images, lambda p, chunk: p.backend.embed_images(chunk))

    def embed_texts(self, texts: Sequence[str], *, query: bool) -> Vectors:
        if not texts:
            return self._empty()
        return self.route(texts, lambda p, chunk: p.backend.embed_texts(chunk, query))

    def _empty(self) -> Vectors:
        return np.empty((0, self._dimension or 0), dtype=np.float32)

    def _join(self, parts: list[Vectors]) -> Vectors:
        return np.concatenate(parts)

    def _established(self) -> bool:
        return self._dimension is not None

    # --- checks -----------------------------------------------------------------------

    def _probe(self, target: ServiceTarget[Backend], *, trial: bool, establish: bool) -> Served:
        served = target.backend.check()
        self._verify_served(served, establish=establish)
        if trial or (establish and self._dimension is None):
            # Also how the size is learnt from a service whose /health omits it.
            served = self._trial(target)
            self._verify_served(served, establish=establish)
        return served

    def _verify(self, target: ServiceTarget[Backend], out: Vectors, served: Served, n: int) -> None:
        self._verify_served(served, width=int(out.shape[1]))

    def _trial(self, target: ServiceTarget[Backend]) -> Served:
        if self.stores == "image":
            from PIL import Image as PILImage

            image = PILImage.new("RGB", (32, 32), (128, 128, 128))
            vectors, served = target.backend.embed_images([image])
        else:
            vectors, served = target.backend.embed_texts(["imgdex health check"], False)
        return Served(served.model, served.version, int(vectors.shape[1]), served.index)

    def _verify_served(
        self, served: Served, width: int | None = None, establish: bool = False
    ) -> None:
        """Raise `MismatchError` unless `served` is this index's model, version and size."""
        problems = []
        if served.model != self.model:
            problems.append(f"model {served.model!r}")
        if served.version is not None and served.version != self.version:
            problems.append(f"version {served.version!r}")
        if served.index is not None and served.index != self.index_name:
            problems.append(f"index {served.index!r}")
        dimension = width or served.dimension
        with self._dim_lock:
            expected = self._dimension or self._expected_dimension()
            if dimension is not None and expected is not None and dimension != expected:
                problems.append(f"{dimension}-d vectors")
            if not problems and establish and self._dimension is None:
                self._dimension = expected or dimension
        if problems:
            raise MismatchError(
                f"model mismatch: it serves {', '.join(problems)} but index {self.index_name} "
                f"holds {self.model} v{self.version}"
                + (f" ({expected}-d)" if expected else "")
                + "; vectors of different models are never mixed"
            )
