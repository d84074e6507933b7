"""Similar images: an image's own stored vectors as the query, no re-embedding.

Each image index that holds a vector of the image is searched with it (the vector file
written when the image was embedded), the hits are fused like any search, and the image
itself is left out of the answer.
"""

from __future__ import annotations

import msgspec
import numpy as np
import numpy.typing as npt

from imgdex import keyword_index
from imgdex.blobs import BlobStore
from imgdex.catalog import Catalog
from imgdex.errors import BadRequest, Conflict, NotFound
from imgdex.ids import check_id
from imgdex.models import EmbedderSlot
from imgdex.ops.search import Searcher
from imgdex.pools import Pools
from imgdex.registry import Registry
from imgdex.schemas import SearchOptions, SearchResponse

__all__ = ["Similar"]


class Similar:
    def __init__(
        self,
        registry: Registry,
        catalog: Catalog,
        blobs: BlobStore,
        pools: Pools,
        searcher: Searcher,
    ) -> None:
        self._registry = registry
        self._catalog = catalog
        self._blobs = blobs
        self._pools = pools
        self._searcher = searcher

    async def similar_images(self, id_: str, top_k: int, index: str | None) -> SearchResponse:
        """The `top_k` images most like image `id_` in its image indexes (or in `index`)."""
        check_id(id_)
        slots = _slots(self._registry, index)
        names = [slot.name for slot in slots]
        held = await self._pools.run_io(_held, self._catalog, id_, names)
        slots = [slot for slot in slots if slot.name in held]
        if not slots:
            where = f"index {index!r}" if index else "any image index"
            raise Conflict(
                f"image {id_} has no vector in {where} yet (it is still being embedded, or "
                "the model could not embed it)",
                code="not_embedded",
            )

        def vector(slot: EmbedderSlot) -> npt.NDArray[np.float32]:
            try:
                return self._blobs.read_vector(id_, slot.name, "image")
            except (OSError, ValueError):
                raise NotFound(f"the stored vector of {id_} is unreadable") from None

        # One more than asked: the image itself is normally the first hit.
        options = SearchOptions(top_k=top_k + 1)
        answer = await self._searcher.search_vectors(slots, vector, options)
        results = [r for r in answer.results if r.sha256 != id_][:top_k]
        return msgspec.structs.replace(answer, top_k=top_k, results=results)


def _slots(registry: Registry, index: str | None) -> list[EmbedderSlot]:
    """The image indexes to search: `index`, or every enabled one."""
    if index is None:
        return registry.embedder_slots(stores="image", query="image")
    if index == keyword_index.NAME:
        raise BadRequest(
            "index 'keyword' holds no image vectors: similar images need an image index",
            code="index_cannot_answer",
        )
    slot = registry.embedders.get(index)
    if slot is None:
        known = sorted(registry.embedders)
        raise NotFound(f"unknown index {index!r} (available: {known})", code="unknown_index")
    if not registry.plugin_enabled(slot.plugin):
        raise Conflict(
            f"index {index!r} is disabled (plugin {slot.plugin.name})", code="index_disabled"
        )
    if slot.provider.stores != "image":
        raise BadRequest(
            f"index {index!r} holds text vectors: similar images need an image index",
            code="index_cannot_answer",
        )
    return [slot]


def _held(catalog: Catalog, id_: str, names: list[str]) -> set[str]:
    """Of `names`, the indexes holding a vector of live image `id_` (404 if none such)."""
    row = catalog.get_image(id_)
    if row is None or row.is_deleted:
        raise NotFound(f"image {id_} not found", code="image_not_found")
    return set(catalog.image_indexes(id_)) & set(names)
