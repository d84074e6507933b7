"""What the templates show, computed from the library (blocking parts run in its I/O pool)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import msgspec

from imgdex.filters import ImageFilters
from imgdex.ops.images import ImageReader
from imgdex.schemas import ImageOut, SearchResponse

__all__ = ["PAGE_SIZE", "Card", "cards_of", "gallery_page", "result_cards"]

PAGE_SIZE = 48
_ALT_MAX = 160

Order = Literal["newest", "oldest"]
Sort = Literal["added", "taken"]


class Card(msgspec.Struct, kw_only=True, frozen=True):
    """One tile of a grid: a link to the image page around its thumbnail."""

    sha256: str
    alt: str
    score: float | None = None
    matches: list[dict[str, Any]] = msgspec.field(default_factory=list)
    favorite: bool = False


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _ALT_MAX else text[: _ALT_MAX - 1].rstrip() + "…"


async def _descriptions(images: ImageReader, ids: Iterable[str]) -> dict[str, str]:
    """The description each image's alt text is taken from: a person's first, else any."""
    out: dict[str, str] = {}
    for id_, rows in (await images.descriptions_of(ids)).items():
        human = [r for r in rows if r.method == "human"]
        if chosen := (human or rows):
            out[id_] = chosen[0].content
    return out


def _fallback_alt(width: int, height: int, fmt: str = "") -> str:
    # Without a description the best we can say is what the file is.
    return f"Undescribed {fmt.upper()} image, {width} by {height}".replace("  ", " ")


async def cards_of(images: ImageReader, rows: Sequence[ImageOut]) -> list[Card]:
    """Grid tiles for `rows`, with alt texts from their descriptions."""
    texts = await _descriptions(images, [r.sha256 for r in rows])
    return [
        Card(
            sha256=r.sha256,
            alt=_short(texts[r.sha256])
            if r.sha256 in texts
            else _fallback_alt(r.width, r.height, r.format),
            favorite=r.favorite,
        )
        for r in rows
    ]


async def gallery_page(
    images: ImageReader,
    *,
    offset: int,
    order: Order,
    sort: Sort,
    status: str | None,
    source: str | None,
    filters: ImageFilters | None = None,
) -> tuple[list[Card], int]:
    """One page of the gallery by date added or taken, newest or oldest first."""
    page = await images.list_images(
        offset=offset,
        limit=PAGE_SIZE,
        status=status,
        source=source,
        filters=filters,
        sort="taken_at" if sort == "taken" else "created_at",
        order="desc" if order == "newest" else "asc",
    )
    return await cards_of(images, page.images), page.total


async def result_cards(images: ImageReader, response: SearchResponse) -> list[Card]:
    """Search results as cards: score, and why each matched (index, method, text)."""
    shas = [r.sha256 for r in response.results]
    texts = await _descriptions(images, shas)
    cards = []
    for r in response.results:
        text = r.matched_text or texts.get(r.sha256)
        cards.append(
            Card(
                sha256=r.sha256,
                alt=_short(text) if text else _fallback_alt(r.width, r.height),
                score=r.score,
                matches=[msgspec.to_builtins(m) for m in r.matches],
            )
        )
    return cards
