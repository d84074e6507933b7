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


@dataclass(slots=True)
class Hit:
    """One vector matched in one index. Not frozen: a search builds up to 50 per index,
    and a frozen dataclass's ``__init__`` (``object.__setattr__`` per field) costs 5 x
    as much. Treat it as immutable."""

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
    limit: int | None = None,
) -> list[FusedResult]:
    """Fuse collapsed, score-ordered hit lists (one per index) into one ranked list.

    With a single index the fused score is that index's raw similarity, so a search of
    one index reads like the seed's (an image searched with itself scores ~1.0).
    `limit` keeps only the first results (the same ones, built for fewer images).
    """
    if len(per_index) == 1:
        (hits,) = per_index.values()
        if (results := _fuse_one(hits, limit)) is not None:
            return results
    return _fuse_many(per_index, method, k, weights or {}, limit)


def _fuse_one(hits: Sequence[Hit], limit: int | None = None) -> list[FusedResult] | None:
    """The single-index fast path: a collapsed list maps straight to results.

    None when an image occurs twice (the list was not collapsed): merging its hits is
    `_fuse_many`'s job. Gives exactly what `_fuse_many` gives for the same list.
    """
    if len({h.image for h in hits}) != len(hits):
        return None
    # A collapsed list is in this order already; the sort then costs one pass.
    ranked = sorted(enumerate(hits, 1), key=lambda r: (-r[1].score, r[1].image))
    return [FusedResult(h.image, h.score, [(rank, h)]) for rank, h in ranked[:limit]]


def _fuse_many(
    per_index: Mapping[str, Sequence[Hit]],
    method: Fusion,
    k: int,
    weights: Mapping[str, float],
    limit: int | None = None,
) -> list[FusedResult]:
    # With one index (uncollapsed) the fused score is the raw one, as in `_fuse_one`.
    by_score = len(per_index) == 1 or method == "max"
    scores: dict[str, float] = {}
    matches: dict[str, list[tuple[int, Hit]]] = {}
    for index in sorted(per_index):
        weight = weights.get(index, 1.0)
        for rank, hit in enumerate(per_index[index], start=1):
            image = hit.image
            seen = matches.get(image)
            if seen is None:
                matches[image] = [(rank, hit)]
                scores[image] = hit.score if by_score else weight / (k + rank)
                continue
            seen.append((rank, hit))
            if by_score:
                scores[image] = max(scores[image], hit.score)
            else:
                scores[image] += weight / (k + rank)
    order = sorted(scores, key=lambda image: (-scores[image], image))
    results = []
    for image in order[:limit]:
        seen = matches[image]
        if len(seen) > 1:
            # The best match explains the result: under RRF the best rank, under max
            # the highest raw score.
            seen.sort(key=_by_score if by_score else _by_rank)
        results.append(FusedResult(image, scores[image], seen))
    return results


def _by_score(match: tuple[int, Hit]) -> tuple[float, int, str]:
    return (-match[1].score, match[0], match[1].index)


def _by_rank(match: tuple[int, Hit]) -> tuple[int, float, str]:
    return (match[0], -match[1].score, match[1].index)
