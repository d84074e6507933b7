"""Tags: one normal form, so that "Beach", " beach " and a full-width
"BEACH" are one tag.

NFKC folds compatibility forms (full-width Latin, ligatures), casefold lowers case the
Unicode way (ß -> ss), and runs of whitespace (including the ideographic space) become
one ASCII space. CJK text passes through unchanged apart from that.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from imgdex.errors import BadRequest

__all__ = ["MAX_TAG_CHARS", "USER_SOURCE", "normalise", "normalise_all", "parse_tag_list"]

MAX_TAG_CHARS = 100
USER_SOURCE = "user"


def normalise(tag: str) -> str:
    """The normal form of a tag (may be empty: the caller decides whether that is bad)."""
    folded = unicodedata.normalize("NFKC", tag).casefold()
    cleaned = "".join(ch for ch in folded if ch.isprintable() or ch.isspace())
    return " ".join(cleaned.split())


def normalise_all(tags: Iterable[str], *, what: str = "tags") -> list[str]:
    """Each tag normalised, duplicates dropped (first kept); 400 for an empty or too
    long one."""
    out: dict[str, None] = {}
    for raw in tags:
        tag = normalise(raw)
        if not tag:
            raise BadRequest(f"{what}: a tag is empty after normalisation", code="bad_tag")
        if len(tag) > MAX_TAG_CHARS:
            raise BadRequest(
                f"{what}: tag {tag[:40]!r}... is longer than {MAX_TAG_CHARS} characters",
                code="bad_tag",
            )
        out.setdefault(tag, None)
    return list(out)


def parse_tag_list(text: str, limit: int = 10) -> list[str]:
    """Tags from a model's free text ("beach, sunset; Sea\\n- waves"): split on commas,
    semicolons, 、 and line breaks, list markers and quotes stripped, normalised, at most
    `limit`, none longer than a few words."""
    out: dict[str, None] = {}
    # NFKC turns the full-width comma into ","; the ideographic one has no such mapping.
    text = unicodedata.normalize("NFKC", text)
    for line in text.replace("\u3001", ",").replace(";", ",").splitlines():
        for part in line.split(","):
            tag = normalise(part.strip().lstrip("-*•#0123456789.) ").strip("\"'`“”[]"))
            if tag and len(tag) <= 40 and len(tag.split()) <= 4:
                out.setdefault(tag, None)
    return list(out)[:limit]
