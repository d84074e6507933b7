"""Text and image search: fan out to every index that can answer, then fuse.

Each index embeds the query and runs its vector search in one model-pool call; with
several indexes these run concurrently. A second worker call then maps every index's
labels to images with one catalog query, filters them (``methods``), collapses each
index's hits to the best hit per image (searching an index again with a larger k when
too few images survive), fuses, pages and decorates the page with image facts and the
matched description texts. A search of one index does all of it in a single call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from imgdex.errors import BadRequest, Conflict, ImgdexError, NotFound, ServiceUnavailable
from imgdex.fusion import FusedResult, Hit, collapse, fuse
from imgdex.models import EmbedderSlot
from imgdex.schemas import IndexSearched, Match, SearchOptions, SearchResponse, SearchResult

if TYPE_CHECKING:
    from PIL.Image import Image

    from imgdex.index import ManagedIndex
    from imgdex.library import Library

__all__ = ["Searcher"]

Embed = Callable[[EmbedderSlot], npt.NDArray[np.float32]]

log = logging.getLogger(__name__)


@dataclass
class _Candidates:
    """One index's nearest labels (best first), and what it takes to search it deeper."""

    slot: EmbedderSlot
    error: str | None = None
    index: ManagedIndex | None = None
    vector: npt.NDArray[np.float32] | None = None
    k: int = 0
    total: int = 0
    labels: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)  # collapsed, once resolved


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
        library = self.library
        # The rank window: how many labels each index is asked for at first.
        window = max(3 * (options.offset + options.top_k), self.config.min_candidates)
        if len(slots) == 1:
            # One worker hop in all: embed, search, resolve, fuse, decorate.
            (slot,) = slots
            if (loading := _loading(slot)) is not None:
                return self._answer(query, [loading], options)

            def one() -> SearchResponse:
                return self._answer(query, [self._knn(slot, embed, window)], options)

            return await library.run_model(one)

        async def knn(slot: EmbedderSlot) -> _Candidates:
            if (loading := _loading(slot)) is not None:
                return loading
            return await library.run_model(self._knn, slot, embed, window)

        # The indexes' embeddings and vector searches run concurrently (hnswlib releases
        # the GIL), then one more hop resolves, fuses and decorates them together.
        found = await asyncio.gather(*(knn(slot) for slot in slots))
        return await library.run_io(self._answer, query, found, options)

    def _knn(self, slot: EmbedderSlot, embed: Embed, k: int) -> _Candidates:
        """Embed the query and search one index (in a model-pool thread)."""
        try:
            vector = embed(slot)
            index = slot.ready_index()
            total = len(index)
            k = min(total, k)
            labels, scores = _search_index(index, vector, k)
        except ImgdexError as exc:
            return _Candidates(slot, exc.detail)
        return _Candidates(slot, None, index, vector, k, total, labels, scores)

    def _answer(
        self, query: str | None, found: Sequence[_Candidates], options: SearchOptions
    ) -> SearchResponse:
        """Resolve, collapse, fuse, page and decorate (in one worker thread)."""
        answered = [c for c in found if c.error is None]
        if answered:
            self._resolve(answered, options)
            answered = [c for c in answered if c.error is None]
        if not answered:
            reasons = "; ".join(f"{c.slot.name}: {c.error}" for c in found)
            raise ServiceUnavailable(f"no index could answer: {reasons}", code="search_unavailable")
        fusion = options.fusion or self.config.fusion
        weights = {**self.config.weights, **(options.weights or {})}
        fused = fuse(
            {c.slot.name: c.hits for c in answered},
            method=fusion,
            k=self.config.rrf_k,
            weights=weights,
        )
        if options.min_score is not None:
            fused = [r for r in fused if r.score >= options.min_score]
        page = fused[options.offset : options.offset + options.top_k]
        return SearchResponse(
            query=query,
            fusion=fusion if len(answered) > 1 else "single",
            top_k=options.top_k,
            offset=options.offset,
            indexes_searched=[
                IndexSearched(
                    index=c.slot.name,
                    model=c.slot.provider.model,
                    result_count=len(c.hits),
                    error=c.error,
                )
                for c in found
            ],
            results=self._decorate(page),
        )

    def _resolve(self, found: Sequence[_Candidates], options: SearchOptions) -> None:
        """Map every index's labels to images with one catalog query and collapse them.

        An index whose collapsed hits are fewer than the page needs (several vectors per
        image, or the ``methods`` filter) is searched again with 4 x k, until enough
        images are found or the index is exhausted.
        """
        need = options.offset + options.top_k
        methods = set(options.methods) if options.methods else None
        catalog = self.library.catalog
        # Labels are vector_entries ids, unique across indexes: one query serves them all.
        entries = catalog.resolve_entries([label for c in found for label in c.labels])
        for c in found:
            while True:
                c.hits = collapse(_hits(c, entries, methods))
                if len(c.hits) >= need or c.k >= c.total:
                    break
                assert c.index is not None and c.vector is not None
                c.k = min(c.total, c.k * 4)
                try:
                    c.labels, c.scores = _search_index(c.index, c.vector, c.k)
                except ImgdexError as exc:
                    c.error, c.hits = exc.detail, []
                    break
                entries.update(catalog.resolve_entries([x for x in c.labels if x not in entries]))

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


def _loading(slot: EmbedderSlot) -> _Candidates | None:
    """An error outcome, without a worker hop, while the model is still loading."""
    try:
        slot.check_not_loading()
    except ImgdexError as exc:
        return _Candidates(slot, exc.detail)
    return None


def _search_index(
    index: ManagedIndex, vector: npt.NDArray[np.float32], k: int
) -> tuple[list[int], list[float]]:
    if k <= 0:
        return [], []
    labels, scores = index.search(vector, k)
    return labels.tolist(), scores.tolist()


def _hits(
    found: _Candidates, entries: dict[int, tuple[str, str]], methods: set[str] | None
) -> list[Hit]:
    name = found.slot.name
    hits = []
    for label, score in zip(found.labels, found.scores, strict=True):
        entry = entries.get(label)
        if entry is None:  # gone from the catalog meanwhile
            continue
        image, method = entry
        if methods is not None and method not in methods:
            continue
        hits.append(Hit(image, score, name, method))
    return hits
