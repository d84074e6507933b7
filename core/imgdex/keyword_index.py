"""The keyword index as a search source: BM25 over descriptions, tags and file names.

It answers text queries only and takes part in fan-out and fusion like a vector index,
under the name ``keyword``; its hits name the field that matched (a description's
method, ``tags`` or ``filename``). The SQL is the catalog's (`imgdex.catalog.keyword`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

from imgdex.catalog.keyword import field_label
from imgdex.ops.fusion import Hit

if TYPE_CHECKING:
    from imgdex.catalog.keyword import KeywordStore

__all__ = ["MODEL", "NAME", "keyword_hits"]

NAME = "keyword"
MODEL = "sqlite-fts5-bm25"


def keyword_hits(
    store: KeywordStore,
    query: str,
    need: int,
    *,
    methods: Collection[str] | None = None,
    allowed: Callable[[Sequence[str]], Collection[str]] | None = None,
    min_candidates: int = 50,
) -> tuple[list[Hit], int]:
    """The best hit per image, best first, and how many images were found.

    Asks for a window of documents and widens it (x4) until `need` images survive the
    `methods` and `allowed` conditions or the index has no more matches. `allowed` is
    asked which of a window's images a result may be (None: any)."""
    limit = max(3 * need, min_candidates)
    while True:
        rows = store.keyword_search(query, limit)
        best: dict[str, Hit] = {}
        ok = None if allowed is None else allowed(list({image for image, _, _ in rows}))
        for image, field, score in rows:
            if image in best or (ok is not None and image not in ok):
                continue
            label = field_label(field)
            if methods is not None and label not in methods:
                continue
            best[image] = Hit(image, score, NAME, label)
        if len(best) >= need or len(rows) < limit:
            return list(best.values()), len(best)
        limit *= 4
