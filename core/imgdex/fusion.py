"""Fusing ranked hits from several indexes into one list, one result per image.

Raw similarities from different models live on different scales (SigLIP text-to-image
cosines sit near 0.1, text-to-text near 0.8), so the default is reciprocal rank fusion
(Cormack et al. 2009): ``score(image) = sum_i w_i / (k + rank_i)`` with ranks from 1 and
k = 60. Each index's hits are first collapsed to the best hit per image, so an image with
five matching descriptions counts once per index, not five times. ``max`` keeps the
seed's behaviour (highest raw score wins) for callers who want it.

Ties are broken by image id, so the order never depends on plugin registration order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["FusedResult", "Hit", "collapse", "fuse"]

Fusion = Literal["rrf", "max"]


@dataclass(frozen=True, slots=True)
class Hit:
    """One vector matched in one index."""

    image: str
    score: float  # raw similarity in that index
    index: str
    method: str  # "image" or the description method


@dataclass(slots=True)
class FusedResult:
    image: str
    score: float
    matches: list[tuple[int, Hit]] = field(default_factory=list)  # (rank, hit), best first

    @property
    def best(self) -> Hit:
        return self.matches[0][1]


def collapse(hits: Iterable[Hit]) -> list[Hit]:
    """Keep the best-scoring hit per image, ordered by score (then image id)."""
    best: dict[str, Hit] = {}
    for hit in hits:
        current = best.get(hit.image)
        if (
            current is None
            or hit.score > current.score
            or (
                hit.score == current.score
                and (hit.index, hit.method) < (current.index, current.method)
            )
        ):
            best[hit.image] = hit
    return sorted(best.values(), key=lambda h: (-h.score, h.image))


def fuse(
    per_index: Mapping[str, Sequence[Hit]],
    *,
    method: Fusion = "rrf",
    k: int = 60,
    weights: Mapping[str, float] | None = None,
) -> list[FusedResult]:
    """Fuse collapsed, score-ordered hit lists (one per index) into one ranked list.

    With a single index the fused score is that index's raw similarity, so a search of
    one index reads like the seed's (an image searched with itself scores ~1.0).
    """
    if len(per_index) == 1:
        (hits,) = per_index.values()
        if (results := _fuse_one(hits)) is not None:
            return results
    return _fuse_many(per_index, method, k, weights or {})


def _fuse_one(hits: Sequence[Hit]) -> list[FusedResult] | None:
    """The single-index fast path: a collapsed list maps straight to results.

    None when an image occurs twice (the list was not collapsed): merging its hits is
    `_fuse_many`'s job. Gives exactly what `_fuse_many` gives for the same list.
    """
    results = [FusedResult(h.image, h.score, [(rank, h)]) for rank, h in enumerate(hits, 1)]
    if len({r.image for r in results}) != len(results):
        return None
    # A collapsed list is in this order already; the sort then costs one pass.
    results.sort(key=_result_order)
    return results


def _fuse_many(
    per_index: Mapping[str, Sequence[Hit]],
    method: Fusion,
    k: int,
    weights: Mapping[str, float],
) -> list[FusedResult]:
    results: dict[str, FusedResult] = {}
    single = len(per_index) == 1
    for index in sorted(per_index):
        weight = weights.get(index, 1.0)
        for rank, hit in enumerate(per_index[index], start=1):
            result = results.setdefault(hit.image, FusedResult(hit.image, 0.0))
            result.matches.append((rank, hit))
            if single or method == "max":
                result.score = max(result.score, hit.score) if result.matches[1:] else hit.score
            else:
                result.score += weight / (k + rank)
    by_score = single or method == "max"
    for result in results.values():
        # The best match explains the result: under RRF the best rank, under max the
        # highest raw score.
        if by_score:
            result.matches.sort(key=lambda m: (-m[1].score, m[0], m[1].index))
        else:
            result.matches.sort(key=lambda m: (m[0], -m[1].score, m[1].index))
    return sorted(results.values(), key=_result_order)


def _result_order(result: FusedResult) -> tuple[float, str]:
    return (-result.score, result.image)
