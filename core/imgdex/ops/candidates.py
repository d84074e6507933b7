"""One index's candidates for one search: embed the query, search, map labels to images.

Runs in a model-pool thread, one call per index (`imgdex.ops.search.Searcher` fans the
calls out and fuses what they return). The labels found become images through the
index's in-memory label map; the catalog answers for what the map lacks. Hits are
filtered (``methods``, the search's filters) and collapsed to the best hit per image,
and the index is searched again with a larger k when too few images survive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from imgdex import keyword_index
from imgdex.catalog import Catalog
from imgdex.errors import ImgdexError, reason_of
from imgdex.imaging import decode_image
from imgdex.models import EmbedderSlot
from imgdex.ops.fusion import Hit, collapse
from imgdex.schemas import SearchOptions
from imgdex.search_filters import Scope
from imgdex.status import model_name

if TYPE_CHECKING:
    from PIL.Image import Image

    from imgdex.config import ImagesConfig
    from imgdex.index import ManagedIndex

__all__ = [
    "Candidates",
    "Embed",
    "ImageQuery",
    "index_candidates",
    "keyword_candidates",
    "loading",
]

Embed = Callable[[EmbedderSlot], npt.NDArray[np.float32]]


@dataclass
class Candidates:
    """One index's outcome: its hits collapsed to the best per image (best first), and the
    sizes of the live images among them; or why it could not answer."""

    name: str
    model: str
    error: str | None = None
    hits: list[Hit] = field(default_factory=list)
    total: int = 0  # images found, `hits` may hold only the first
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)


def index_candidates(
    catalog: Catalog,
    slot: EmbedderSlot,
    embed: Embed,
    options: SearchOptions,
    prepare: Callable[[], None] | None,
    scope: Scope,
    min_candidates: int,
    single: bool = False,
) -> Candidates:
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
    c = Candidates(name, model_name(slot.provider.model))
    scope.check()  # a bad filter fails the request, not just this index
    try:
        vector = embed(slot)
        index = slot.ready_index()
        search = scope.search(index, methods)  # imgdex.index.filtered
        k = min(search.total, max(3 * need, min_candidates))
        while True:
            labels, scores = search(vector, k)
            ranked = index.rank(labels, scores, methods, need if single else None)
            if ranked is not None:  # the label map answered for every label
                c.hits = [Hit(image, score, name, m) for image, score, m in ranked.hits]
                c.total = ranked.total
                c.sizes.update(ranked.sizes)
            else:
                entries, sizes = _entries(catalog, index, labels.tolist())
                hits = _hits(name, labels.tolist(), scores.tolist(), entries, methods)
                hits = scope.keep(hits)  # the catalog answered: check again
                c.hits = collapse(hits)
                c.total = len(c.hits)
                c.sizes.update(sizes)
            if c.total >= need or k >= search.total:
                return c
            k = min(search.total, k * 4)
    except ImgdexError as exc:
        return Candidates(name, c.model, reason_of(exc.detail, name))


def keyword_candidates(
    catalog: Catalog, query: str, options: SearchOptions, scope: Scope, min_candidates: int
) -> Candidates:
    """The keyword index's candidates (in a worker thread)."""
    c = Candidates(keyword_index.NAME, keyword_index.MODEL)
    c.hits, c.total = keyword_index.keyword_hits(
        catalog,
        query,
        options.offset + options.top_k,
        methods=set(options.methods) if options.methods else None,
        allowed=scope.matching if scope.filtered else None,
        min_candidates=min_candidates,
    )
    return c


def loading(slot: EmbedderSlot) -> Candidates | None:
    """An error outcome, without a worker hop, while the model is still loading."""
    try:
        slot.check_not_loading()
    except ImgdexError as exc:
        return Candidates(
            slot.name, model_name(slot.provider.model), reason_of(exc.detail, slot.name)
        )
    return None


class ImageQuery:
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


def _entries(
    catalog: Catalog, index: ManagedIndex, labels: list[int]
) -> tuple[dict[int, tuple[str, str]], dict[str, tuple[int, int]]]:
    """``{label: (image, method)}`` and the live images' ``{image: (width, height)}``,
    from the index's label map; the catalog answers for what the map cannot (a label
    hidden since the search, say)."""
    entries, sizes, unknown = index.resolve(labels)
    if unknown:
        entries.update(catalog.resolve_entries(unknown))
    return entries, sizes


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
