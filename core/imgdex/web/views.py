"""What the templates show, read through the image reader (`imgdex.ops.images`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import msgspec

from imgdex.ops.images import ImageReader
from imgdex.schemas import ImageListResponse, SearchResponse

__all__ = ["PAGE_SIZE", "Card", "gallery_page", "result_cards"]

PAGE_SIZE = 48
_ALT_MAX = 160

Order = Literal["newest", "oldest"]


class Card(msgspec.Struct, kw_only=True, frozen=True):
    """One tile of a grid: a link to the image page around its thumbnail."""

    sha256: str
    alt: str
    score: float | None = None
    matches: list[dict[str, Any]] = msgspec.field(default_factory=list)


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


async def gallery_page(
    images: ImageReader,
    *,
    offset: int,
    order: Order,
    status: str | None,
    source: str | None,
) -> tuple[list[Card], int]:
    """One page of the gallery, newest or oldest first, with alt texts."""
    limit = PAGE_SIZE
    if order == "newest":
        page = await _list(images, offset, limit, status, source)
        rows = page.images
    else:
        # The catalog lists newest first: the oldest-first page at `offset` is the
        # newest-first window ending `offset` from the end, reversed.
        total = (await _list(images, 0, 1, status, source)).total
        end = max(total - offset, 0)
        start = max(end - limit, 0)
        page = await _list(images, start, max(end - start, 1), status, source)
        rows = list(reversed(page.images[: end - start]))
    texts = await _descriptions(images, [r.sha256 for r in rows])
    cards = [
        Card(
            sha256=r.sha256,
            alt=_short(texts[r.sha256])
            if r.sha256 in texts
            else _fallback_alt(r.width, r.height, r.format),
        )
        for r in rows
    ]
    return cards, page.total


async def _list(
    images: ImageReader, offset: int, limit: int, status: str | None, source: str | None
) -> ImageListResponse:
    return await images.list_images(
        offset=offset, limit=limit, status=status, source=source, include_deleted=False
    )


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
