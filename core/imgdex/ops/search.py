"""Text and image search: fan out to every index that can answer, then fuse.

Each index embeds the query, runs its vector search, maps the labels found to images
(from the index's in-memory label map; the catalog answers for what a map lacks),
filters them (``methods``) and collapses them to the best hit per image, searching again
with a larger k when too few images survive, all in one model-pool call; with several
indexes these calls run concurrently. The call that ends last fuses, pages and decorates
the page with image facts and the matched description texts. A search costs one worker
hop per index and none more; an image given as file bytes is decoded in that same call.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from imgdex import keyword_index
from imgdex.catalog import Catalog
from imgdex.config import Config
from imgdex.errors import (
    BadRequest,
    Conflict,
    ImgdexError,
    NotFound,
    ServiceUnavailable,
    reason_of,
)
from imgdex.imaging import decode_image
from imgdex.models import EmbedderSlot
from imgdex.ops.fusion import FusedResult, Hit, collapse, fuse
from imgdex.pools import Pools
from imgdex.registry import Registry
from imgdex.schemas import IndexSearched, Match, SearchOptions, SearchResponse, SearchResult
from imgdex.search_filters import (
    Allowed,
    Scope,
    TakenAt,
    catalog_allowed,
    catalog_taken_at,
    no_taken_at,
    sort_by_taken_at,
)
from imgdex.staging import Spooling
from imgdex.status import model_name

if TYPE_CHECKING:
    from PIL.Image import Image

    from imgdex.config import ImagesConfig
    from imgdex.index import ManagedIndex

__all__ = ["Searcher"]

Embed = Callable[[EmbedderSlot], npt.NDArray[np.float32]]

log = logging.getLogger(__name__)


@dataclass
class _Candidates:
    """One index's outcome: its hits collapsed to the best per image (best first), and the
    sizes of the live images among them; or why it could not answer."""

    name: str
    model: str
    error: str | None = None
    hits: list[Hit] = field(default_factory=list)
    total: int = 0  # images found, `hits` may hold only the first
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)


class Searcher:
    def __init__(
        self,
        config: Config,
        registry: Registry,
        catalog: Catalog,
        pools: Pools,
        spooling: Spooling,
        allowed: Allowed | None = None,
        taken_at: TakenAt | None = None,
    ) -> None:
        """`allowed` turns filters into matching images and `taken_at` looks capture
        dates up (see `imgdex.search_filters`); by default the catalog answers both."""
        self.config = config.search
        self.spooling = spooling  # how query images in multipart bodies are read
        self.images_config = config.images
        self.registry = registry
        self.catalog = catalog
        self.pools = pools
        self.allowed = allowed or catalog_allowed(catalog)
        self.taken_at = taken_at or catalog_taken_at(catalog)

    async def search_text(self, query: str, options: SearchOptions) -> SearchResponse:
        query = query.strip()
        if not query:
            raise BadRequest("the query is empty", code="empty_query")
        self._check_weights(options)
        slots, keyword = self._text_targets(options.index)

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

            return await self._search(None, self._targets("image", options.index), embed, options)
        # Every option is checked before the image is touched: a bad one costs nothing.
        slots = self.image_targets(options)
        query = _ImageQuery(image, self.images_config)
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
        self._check_weights(options)
        return await self._search(None, slots, vector, options)

    def image_targets(self, options: SearchOptions) -> list[EmbedderSlot]:
        """The indexes an image search with `options` asks, or the 4xx its options earn
        (callers check this before decoding or even base64-decoding the image)."""
        self._check_weights(options)
        return self._targets("image", options.index)

    def _text_targets(self, wanted: str | list[str] | None) -> tuple[list[EmbedderSlot], bool]:
        """The vector indexes a text search asks, and whether the keyword index answers
        too (it does unless `wanted` names only vector indexes)."""
        names = [wanted] if isinstance(wanted, str) else wanted
        if names is None:
            return self._targets("text", None, none_ok=True), True
        rest = [n for n in names if n != keyword_index.NAME]
        if rest or not names:  # an empty list gets its 400 from _targets
            return self._targets("text", rest), len(rest) < len(names)
        return [], True

    def _check_weights(self, options: SearchOptions) -> None:
        # A misspelt index in `weights` would otherwise just weigh nothing, silently.
        known = {*self.registry.embedders, keyword_index.NAME}
        unknown = sorted(set(options.weights or ()) - known)
        if unknown:
            raise BadRequest(
                f"weights: unknown index {', '.join(map(repr, unknown))} "
                f"(available: {sorted(known)})",
                code="unknown_index",
            )

    def _targets(
        self, modality: str, wanted: str | list[str] | None, none_ok: bool = False
    ) -> list[EmbedderSlot]:
        """`none_ok`: no enabled vector index is fine (the keyword index answers)."""
        if wanted is None:
            slots = self.registry.embedder_slots(query=modality)
            if not slots and not none_ok:
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
            slot = self.registry.embedders.get(name)
            if name == keyword_index.NAME:
                raise BadRequest(
                    f"index {name!r} cannot answer {modality} queries (it answers: ['text'])",
                    code="index_cannot_answer",
                )
            if slot is None:
                known = sorted({*self.registry.embedders, keyword_index.NAME})
                raise NotFound(f"unknown index {name!r} (available: {known})", code="unknown_index")
            if not self.registry.plugin_enabled(slot.plugin):
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
        prepare: Callable[[], None] | None = None,
        keyword: bool = False,
    ) -> SearchResponse:
        """`prepare` (decoding an image query) runs in the worker calls before `embed`;
        its errors fail the request, where `embed`'s fail only that index. With
        `keyword`, the keyword index is searched too (after the vector indexes)."""
        if options.sort == "taken_at" and self.taken_at is None:
            raise no_taken_at()
        scope = Scope(options.filters, self.allowed)
        found: list[_Candidates | None] = [_loading(slot) for slot in slots]
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
                    found[i] = self._keyword(query or "", options, scope)
                else:
                    found[i] = self._candidates(slots[i], embed, options, prepare, scope, single)
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

    def _candidates(
        self,
        slot: EmbedderSlot,
        embed: Embed,
        options: SearchOptions,
        prepare: Callable[[], None] | None,
        scope: Scope,
        single: bool = False,
    ) -> _Candidates:
        """Embed the query, search one index and collapse its hits to the best hit per
        image (in a model-pool thread).

        The index is asked for a rank window of ``max(3 x (offset + top_k),
        search.min_candidates)`` labels. If fewer images than the page needs survive (several
        vectors per image, or the ``methods`` filter), it is searched again with 4 x k,
        until enough images are found or the index is exhausted. With `single`, only the
        page's hits are built (`total` still counts all the images found).

        With filters, only the labels of the matching images are searched (see
        `VectorIndex.search_among`), so the page fills whatever the filters' selectivity.
        """
        if prepare is not None:
            prepare()
        need = options.offset + options.top_k
        methods = set(options.methods) if options.methods else None
        name = slot.name
        c = _Candidates(name, model_name(slot.provider.model))
        scope.check()  # a bad filter fails the request, not just this index
        try:
            vector = embed(slot)
            index = slot.ready_index()
            search = scope.search(index, methods)  # imgdex.index.filtered
            k = min(search.total, max(3 * need, self.config.min_candidates))
            while True:
                labels, scores = search(vector, k)
                ranked = index.rank(labels, scores, methods, need if single else None)
                if ranked is not None:  # the label map answered for every label
                    c.hits = [Hit(image, score, name, m) for image, score, m in ranked.hits]
                    c.total = ranked.total
                    c.sizes.update(ranked.sizes)
                else:
                    entries, sizes = self._entries(index, labels.tolist())
                    hits = _hits(name, labels.tolist(), scores.tolist(), entries, methods)
                    hits = scope.keep(hits)  # the catalog answered: check again
                    c.hits = collapse(hits)
                    c.total = len(c.hits)
                    c.sizes.update(sizes)
                if c.total >= need or k >= search.total:
                    return c
                k = min(search.total, k * 4)
        except ImgdexError as exc:
            return _Candidates(name, c.model, reason_of(exc.detail, name))

    def _keyword(self, query: str, options: SearchOptions, scope: Scope) -> _Candidates:
        """The keyword index's candidates (in a worker thread)."""
        c = _Candidates(keyword_index.NAME, keyword_index.MODEL)
        c.hits, c.total = keyword_index.keyword_hits(
            self.catalog,
            query,
            options.offset + options.top_k,
            methods=set(options.methods) if options.methods else None,
            allowed=scope.matching if scope.filtered else None,
            min_candidates=self.config.min_candidates,
        )
        return c

    def _entries(
        self, index: ManagedIndex, labels: list[int]
    ) -> tuple[dict[int, tuple[str, str]], dict[str, tuple[int, int]]]:
        """``{label: (image, method)}`` and the live images' ``{image: (width, height)}``,
        from the index's label map; the catalog answers for what the map cannot (a label
        hidden since the search, say)."""
        entries, sizes, unknown = index.resolve(labels)
        if unknown:
            entries.update(self.catalog.resolve_entries(unknown))
        return entries, sizes

    def _answer(
        self, query: str | None, found: Sequence[_Candidates], options: SearchOptions
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
        if options.sort == "taken_at" and self.taken_at is not None:
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


class _ImageQuery:
    """An image query given as file bytes, decoded once by the first call that needs it."""

    def __init__(self, data: bytes | bytearray | Path, policy: ImagesConfig) -> None:
        self.data = data
        self.policy = policy
        self.image: Image | None = None
        self._lock = threading.Lock()

    def decode(self) -> None:
        with self._lock:
            if self.image is None:
                self.image = decode_image(self.data, self.policy).image

    def embed(self, slot: EmbedderSlot) -> npt.NDArray[np.float32]:
        assert self.image is not None, "decode() runs first"
        vectors: npt.NDArray[np.float32] = slot.embed_images([self.image])
        return np.asarray(vectors[0], dtype=np.float32)


def _loading(slot: EmbedderSlot) -> _Candidates | None:
    """An error outcome, without a worker hop, while the model is still loading."""
    try:
        slot.check_not_loading()
    except ImgdexError as exc:
        return _Candidates(
            slot.name, model_name(slot.provider.model), reason_of(exc.detail, slot.name)
        )
    return None


def _hits(
    name: str,
    labels: list[int],
    scores: list[float],
    entries: dict[int, tuple[str, str]],
    methods: set[str] | None,
) -> list[Hit]:
    hits = []
    for label, score in zip(labels, scores, strict=True):
        entry = entries.get(label)
        if entry is None:  # gone from the catalog meanwhile
            continue
        image, method = entry
        if methods is not None and method not in methods:
            continue
        hits.append(Hit(image, score, name, method))
    return hits
