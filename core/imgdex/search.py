"""Text and image search: fan out to every index that can answer, then fuse.

Each index is searched concurrently (query embedding in the model pool, the vector
search and catalog look-ups in the io pool). An index's hits are mapped to images,
filtered (deleted images, ``methods``), collapsed to the best hit per image and, when
too few images survive, searched again with a larger k until enough are found or the
index is exhausted. The fused list is then paged and decorated with image facts and the
matched description texts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from imgdex.errors import BadRequest, Conflict, ImgdexError, NotFound, ServiceUnavailable
from imgdex.fusion import FusedResult, Hit, collapse, fuse
from imgdex.models import EmbedderSlot
from imgdex.schemas import IndexSearched, Match, SearchOptions, SearchResponse, SearchResult

if TYPE_CHECKING:
    from PIL.Image import Image

    from imgdex.library import Library

__all__ = ["Searcher"]

Embed = Callable[[EmbedderSlot], npt.NDArray[np.float32]]

log = logging.getLogger(__name__)


@dataclass
class _IndexOutcome:
    slot: EmbedderSlot
    hits: list[Hit]
    error: str | None = None


class Searcher:
    def __init__(self, library: Library) -> None:
        self.library = library
        self.config = library.config.search

    async def search_text(self, query: str, options: SearchOptions) -> SearchResponse:
        query = query.strip()
        if not query:
            raise BadRequest("the query is empty", code="empty_query")
        slots = self._targets("text", options.index)

        def embed(slot: EmbedderSlot) -> npt.NDArray[np.float32]:
            vectors: npt.NDArray[np.float32] = slot.embed_texts([query], query=True)
            return np.asarray(vectors[0], dtype=np.float32)

        return await self._search(query, slots, embed, options)

    async def search_image(self, image: Image, options: SearchOptions) -> SearchResponse:
        slots = self._targets("image", options.index)

        def embed(slot: EmbedderSlot) -> npt.NDArray[np.float32]:
            vectors: npt.NDArray[np.float32] = slot.embed_images([image])
            return np.asarray(vectors[0], dtype=np.float32)

        return await self._search(None, slots, embed, options)

    def _targets(self, modality: str, wanted: str | list[str] | None) -> list[EmbedderSlot]:
        library = self.library
        if wanted is None:
            slots = library.embedder_slots(query=modality)
            if not slots:
                raise ServiceUnavailable(
                    f"no enabled index can answer {modality} queries (install or enable a "
                    "model plugin: see `imgdex plugins`)",
                    code="no_index",
                )
            return slots
        names = [wanted] if isinstance(wanted, str) else list(dict.fromkeys(wanted))
        if not names:
            raise BadRequest("index: give one index name or a non-empty list", code="bad_index")
        slots = []
        for name in names:
            slot = library.embedders.get(name)
            if slot is None:
                known = sorted(library.embedders)
                raise NotFound(f"unknown index {name!r} (available: {known})", code="unknown_index")
            if not library.plugin_enabled(slot.plugin):
                raise Conflict(
                    f"index {name!r} is disabled (plugin {slot.plugin.name})", code="index_disabled"
                )
            if modality not in slot.provider.query_modalities:
                raise BadRequest(
                    f"index {name!r} cannot answer {modality} queries "
                    f"(it answers: {sorted(slot.provider.query_modalities)})",
                    code="index_cannot_answer",
                )
            slots.append(slot)
        return slots

    async def _search(
        self,
        query: str | None,
        slots: list[EmbedderSlot],
        embed: Embed,
        options: SearchOptions,
    ) -> SearchResponse:
        need = options.offset + options.top_k
        methods = set(options.methods) if options.methods else None
        outcomes = await asyncio.gather(
            *(self._search_one(slot, embed, need, methods) for slot in slots)
        )
        answered = [o for o in outcomes if o.error is None]
        if not answered:
            reasons = "; ".join(f"{o.slot.name}: {o.error}" for o in outcomes)
            raise ServiceUnavailable(f"no index could answer: {reasons}", code="search_unavailable")
        fusion = options.fusion or self.config.fusion
        weights = {**self.config.weights, **(options.weights or {})}
        fused = fuse(
            {o.slot.name: o.hits for o in answered},
            method=fusion,
            k=self.config.rrf_k,
            weights=weights,
        )
        if options.min_score is not None:
            fused = [r for r in fused if r.score >= options.min_score]
        page = fused[options.offset : need]
        results = await self.library.run_io(self._decorate, page)
        return SearchResponse(
            query=query,
            fusion=fusion if len(answered) > 1 else "single",
            top_k=options.top_k,
            offset=options.offset,
            indexes_searched=[
                IndexSearched(
                    index=o.slot.name,
                    model=o.slot.provider.model,
                    result_count=len(o.hits),
                    error=o.error,
                )
                for o in outcomes
            ],
            results=results,
        )

    async def _search_one(
        self, slot: EmbedderSlot, embed: Embed, need: int, methods: set[str] | None
    ) -> _IndexOutcome:
        library = self.library
        try:
            slot.check_not_loading()
            # One worker hop per index: embed the query, then search and resolve.
            hits = await library.run_model(lambda s: self._hits(s, embed(s), need, methods), slot)
        except ImgdexError as exc:
            return _IndexOutcome(slot, [], exc.detail)
        return _IndexOutcome(slot, hits)

    def _hits(
        self,
        slot: EmbedderSlot,
        vector: npt.NDArray[np.float32],
        need: int,
        methods: set[str] | None,
    ) -> list[Hit]:
        managed = slot.ready_index()
        total = len(managed)
        k = min(total, max(3 * need, self.config.min_candidates))
        catalog = self.library.catalog
        while True:
            if k <= 0:
                return []
            labels, scores = managed.search(vector, k)
            entries = catalog.resolve_entries(labels.tolist())
            hits = []
            for label, score in zip(labels.tolist(), scores.tolist(), strict=True):
                entry = entries.get(label)
                if entry is None:  # gone from the catalog meanwhile
                    continue
                image, method = entry
                if methods is not None and method not in methods:
                    continue
                hits.append(Hit(image=image, score=float(score), index=slot.name, method=method))
            collapsed = collapse(hits)
            if len(collapsed) >= need or k >= total:
                return collapsed
            k = min(total, k * 4)

    def _decorate(self, page: Sequence[FusedResult]) -> list[SearchResult]:
        library = self.library
        rows = library.catalog.get_images(r.image for r in page)
        texts = library.catalog.description_texts(
            (hit.image, hit.method) for r in page for _, hit in r.matches if hit.method != "image"
        )
        models = {name: slot.provider.model for name, slot in library.embedders.items()}
        out = []
        for result in page:
            row = rows.get(result.image)
            if row is None or row.is_deleted:  # deleted while we searched
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
                    width=row.width,
                    height=row.height,
                    matches=matches,
                )
            )
        return out
