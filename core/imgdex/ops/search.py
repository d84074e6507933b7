"""Text and image search: fan out to every index that can answer, then fuse.

Which indexes answer is decided first (`imgdex.ops.search_indexes`), before anything is
embedded. Each index then embeds the query, searches and maps its labels to images in
one model-pool call (`imgdex.ops.candidates`); with several indexes these calls run
concurrently. The call that ends last fuses, pages and decorates the page with image
facts and the matched description texts. A search costs one worker hop per index and
none more; an image given as file bytes is decoded in that same call.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from imgdex import keyword_index
from imgdex.catalog import Catalog
from imgdex.config import Config
from imgdex.errors import BadRequest, ServiceUnavailable
from imgdex.filter_sets import FilterSets
from imgdex.models import EmbedderSlot
from imgdex.ops.candidates import (
    Candidates,
    Embed,
    ImageQuery,
    index_candidates,
    keyword_candidates,
    loading,
)
from imgdex.ops.fusion import FusedResult, fuse
from imgdex.ops.search_indexes import check_weights, text_indexes, vector_indexes
from imgdex.pools import Pools
from imgdex.registry import Registry
from imgdex.schemas import IndexSearched, Match, SearchOptions, SearchResponse, SearchResult
from imgdex.search_filters import CatalogAllowed, FilterSource, Scope, TakenAt, sort_by_taken_at
from imgdex.staging import Spooling
from imgdex.status import model_name

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["Searcher"]

log = logging.getLogger(__name__)


class Searcher:
    def __init__(
        self,
        config: Config,
        registry: Registry,
        catalog: Catalog,
        pools: Pools,
        spooling: Spooling,
    ) -> None:
        """Filters are answered by the catalog (`imgdex.search_filters`), which keeps
        what a filter allows between searches (`imgdex.filter_sets`, building its sets
        in the io pool)."""
        self.config = config.search
        self.spooling = spooling  # how query images in multipart bodies are read
        self.images_config = config.images
        self.registry = registry
        self.catalog = catalog
        self.pools = pools
        sets = FilterSets(catalog, self.config.filter_cache_mb << 20, pools.run_in_background)
        self.allowed: FilterSource = CatalogAllowed(catalog, sets)
        self.taken_at: TakenAt = catalog.images.taken_at

    async def search_text(self, query: str, options: SearchOptions) -> SearchResponse:
        query = query.strip()
        if not query:
            raise BadRequest("the query is empty", code="empty_query")
        check_weights(self.registry, options)
        slots, keyword = text_indexes(self.registry, options.index)

        def embed(slot: EmbedderSlot) -> npt.NDArray[np.float32]:
            vectors: npt.NDArray[np.float32] = slot.embed_texts([query], query=True)
            return np.asarray(vectors[0], dtype=np.float32)

        return await self._search(query, slots, embed, options, keyword=keyword)

    async def search_image(
        self, image: Image | bytes | bytearray | Path, options: SearchOptions
    ) -> SearchResponse:
        """Search by a decoded image, or by an image file's bytes (decoded in the search's
        own worker call, which saves a hop)."""
        if not isinstance(image, bytes | bytearray | Path):
            decoded = image

            def embed(slot: EmbedderSlot) -> npt.NDArray[np.float32]:
                vectors: npt.NDArray[np.float32] = slot.embed_images([decoded])
                return np.asarray(vectors[0], dtype=np.float32)

            slots = vector_indexes(self.registry, "image", options.index)
            return await self._search(None, slots, embed, options)
        # Every option is checked before the image is touched: a bad one costs nothing.
        slots = self.image_targets(options)
        query = ImageQuery(image, self.images_config)
        return await self._search(None, slots, query.embed, options, query.decode)

    async def search_vectors(
        self,
        slots: list[EmbedderSlot],
        vector: Callable[[EmbedderSlot], npt.NDArray[np.float32]],
        options: SearchOptions,
    ) -> SearchResponse:
        """Search `slots` with vectors already at hand (`vector(slot)`, called in the
        slot's worker call; an `ImgdexError` it raises fails only that index). For
        similar images, whose query is an image's stored vector."""
        check_weights(self.registry, options)
        return await self._search(None, slots, vector, options)

    def image_targets(self, options: SearchOptions) -> list[EmbedderSlot]:
        """The indexes an image search with `options` asks, or the 4xx its options earn
        (callers check this before decoding or even base64-decoding the image)."""
        check_weights(self.registry, options)
        return vector_indexes(self.registry, "image", options.index)

    async def _search(
        self,
        query: str | None,
        slots: list[EmbedderSlot],
        embed: Embed,
        options: SearchOptions,
        prepare: Callable[[], None] | None = None,
        keyword: bool = False,
    ) -> SearchResponse:
        """`prepare` (decoding an image query) runs in the worker calls before `embed`;
        its errors fail the request, where `embed`'s fail only that index. With
        `keyword`, the keyword index is searched too (after the vector indexes)."""
        scope = Scope(options.filters, self.allowed)
        found: list[Candidates | None] = [loading(slot) for slot in slots]
        if keyword:
            found.append(None)
        todo = [i for i, c in enumerate(found) if c is None]
        if not todo:
            if prepare is not None:
                await self.pools.run_io(prepare)  # a bad image still comes first
            return self._answer(query, [c for c in found if c is not None], options)
        left = len(todo)
        lock = threading.Lock()
        single = len(found) == 1  # then only the page's hits are built

        def search(i: int) -> SearchResponse | None:
            # One index per call, concurrently: while one call maps its labels to images
            # (Python, holding the GIL), the others' vector searches run (hnswlib releases
            # it). The call that ends last answers for all, so the answer needs no hop.
            nonlocal left
            try:
                if i == len(slots):  # the keyword index
                    found[i] = keyword_candidates(
                        self.catalog, query or "", options, scope, self.config.min_candidates
                    )
                else:
                    found[i] = index_candidates(
                        self.catalog,
                        slots[i],
                        embed,
                        options,
                        prepare,
                        scope,
                        self.config.min_candidates,
                        single,
                    )
            finally:
                with lock:
                    left -= 1
                    last = left == 0
            done = [c for c in found if c is not None]
            if not last or len(done) < len(found):  # not last, or another call raised
                return None
            return self._answer(query, done, options)

        answers = await asyncio.gather(*(self.pools.run_model(search, i) for i in todo))
        return next(a for a in answers if a is not None)

    def _answer(
        self, query: str | None, found: Sequence[Candidates], options: SearchOptions
    ) -> SearchResponse:
        """Fuse, page and decorate (in one worker thread)."""
        answered = [c for c in found if c.error is None]
        if not answered:
            reasons = "; ".join(f"{c.name}: {c.error}" for c in found)
            raise ServiceUnavailable(f"no index could answer: {reasons}", code="search_unavailable")
        need = options.offset + options.top_k
        fusion = options.fusion or self.config.fusion
        weights = {**self.config.weights, **(options.weights or {})}
        fused = fuse(
            {c.name: c.hits for c in answered},
            method=fusion,
            k=self.config.rrf_k,
            weights=weights,
            limit=need,  # the results are score-ordered: `min_score` only cuts a tail
        )
        if options.min_score is not None:
            fused = [r for r in fused if r.score >= options.min_score]
        if options.sort == "taken_at":
            fused = sort_by_taken_at(fused, self.taken_at)  # the relevant ones, by date
        page = fused[options.offset : need]
        sizes: dict[str, tuple[int, int]] = {}
        for c in answered:
            sizes.update(c.sizes)
        return SearchResponse(
            query=query,
            fusion=fusion if len(answered) > 1 else "single",
            top_k=options.top_k,
            offset=options.offset,
            indexes_searched=[
                IndexSearched(
                    index=c.name,
                    model=c.model,
                    result_count=c.total,
                    error=c.error,
                )
                for c in found
            ],
            results=self._decorate(page, sizes),
        )

    def _decorate(
        self, page: Sequence[FusedResult], sizes: dict[str, tuple[int, int]]
    ) -> list[SearchResult]:
        """Build the page's results. An image a label map knows to be live has its size
        from the map; any other image is read from the catalog and dropped if it was
        deleted while we searched."""
        rows = self.catalog.get_images(r.image for r in page if r.image not in sizes)
        for image, row in rows.items():
            if not row.is_deleted:
                sizes[image] = (row.width, row.height)
        texts = self.catalog.description_texts(
            (hit.image, hit.method) for r in page for _, hit in r.matches if hit.method != "image"
        )
        models = {
            name: model_name(slot.provider.model) for name, slot in self.registry.embedders.items()
        }
        models[keyword_index.NAME] = keyword_index.MODEL
        out = []
        for result in page:
            size = sizes.get(result.image)
            if size is None:  # deleted while we searched
                continue
            matches = [
                Match(
                    index=hit.index,
                    model=models.get(hit.index, ""),
                    rank=rank,
                    score=round(hit.score, 6),
                    matched_by=hit.method,
                    matched_text=texts.get((hit.image, hit.method)),
                )
                for rank, hit in result.matches
            ]
            best = matches[0]
            out.append(
                SearchResult(
                    sha256=result.image,
                    score=round(result.score, 6),
                    matched_by=best.matched_by,
                    matched_text=best.matched_text,
                    index=best.index,
                    model=best.model,
                    width=size[0],
                    height=size[1],
                    matches=matches,
                )
            )
        return out
