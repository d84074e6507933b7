"""Tags with the caption: the model is asked to end its answer with a tag line, which is
split off the caption and handed to the core as `imgdex.Caption` tags.

Models follow such instructions loosely ("Tags: a, b", "**Keywords:** a, b", a list on
the lines below, the Chinese colon), so the parser accepts all of them; an answer
without a tag line is a plain caption.
"""

from __future__ import annotations

import re

from imgdex import Caption
from imgdex.tags import parse_tag_list

__all__ = ["TAG_PROMPTS", "split_caption", "tag_prompt"]

TAG_PROMPTS: dict[str, str] = {
    "en": (
        "Then, on a last line starting with 'Tags:', list up to {n} short lowercase "
        "keywords for the image, separated by commas."
    ),
    "zh": "最后另起一行，以“标签:”开头，列出最多{n}个简短的关键词，用逗号分隔。",  # noqa: RUF001
}

_TAG_LINE = re.compile(
    r"^\s*[-*#>]*\s*(?:\*\*|__)?\s*(tags|keywords|标签|关键词)\s*(?:\*\*|__)?\s*[:：]"  # noqa: RUF001
    r"\s*(?:\*\*|__)?(.*)$",
    re.IGNORECASE,
)


def tag_prompt(language: str, limit: int) -> str | None:
    """The instruction added after the caption prompt (None when tags are off)."""
    return TAG_PROMPTS[language].format(n=limit) if limit > 0 else None


def split_caption(answer: str, limit: int) -> str | Caption:
    """The caption, and the tags of its last tag line if it has one (at most `limit`);
    with tags off (`limit` 0) the answer is left as the model wrote it."""
    if limit <= 0:
        return answer.strip()
    lines = answer.strip().splitlines()
    for i in range(len(lines) - 1, -1, -1):
        match = _TAG_LINE.match(lines[i])
        if match is None:
            continue
        tag_text = "\n".join([match.group(2), *lines[i + 1 :]])
        text = "\n".join(lines[:i]).strip()
        return Caption(text, tuple(parse_tag_list(tag_text, limit=limit)))
    return answer.strip()
