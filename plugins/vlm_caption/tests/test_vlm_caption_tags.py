"""The tag line a model is asked for: the prompt and the parser of its answers."""

from __future__ import annotations

import pytest

from imgdex import Caption
from imgdex_vlm_caption.tagging import split_caption, tag_prompt


@pytest.mark.parametrize(
    ("answer", "text", "tags"),
    [
        (
            "A red car parked by the sea.\nTags: car, Red, sea, parking",
            "A red car parked by the sea.",
            ("car", "red", "sea", "parking"),
        ),
        ("A dog.\n**Keywords:** dog, grass", "A dog.", ("dog", "grass")),
        ("A dog.\nKeywords: dog; grass", "A dog.", ("dog", "grass")),
        ("Two cats.\n\nTags:\n- cat\n- sofa\n- two cats", "Two cats.", ("cat", "sofa", "two cats")),
        (
            "海边的日落，几艘小船停在岸边。\n标签：日落，海边、小船",  # noqa: RUF001
            "海边的日落，几艘小船停在岸边。",  # noqa: RUF001
            ("日落", "海边", "小船"),
        ),
        ("A cat.\ntags: cat, cat, CAT ", "A cat.", ("cat",)),
        ("Tags: beach, sun", "", ("beach", "sun")),
    ],
)
def test_tag_lines_are_split_off(answer: str, text: str, tags: tuple[str, ...]) -> None:
    assert split_caption(answer, 8) == Caption(text, tags)


def test_answers_without_a_tag_line_are_plain_captions() -> None:
    assert split_caption("  A bridge at night, with tags of graffiti.  ", 8) == (
        "A bridge at night, with tags of graffiti."
    )


def test_tags_are_bounded_and_sentences_are_not_tags() -> None:
    many = "A scene.\nTags: " + ", ".join(f"t{i}" for i in range(30))
    caption = split_caption(many, 5)
    assert isinstance(caption, Caption) and caption.tags == ("t0", "t1", "t2", "t3", "t4")
    rambling = "A scene.\nTags: this is a whole sentence rather than a tag, ok"
    assert split_caption(rambling, 8) == Caption("A scene.", ("ok",))


def test_the_prompt_asks_for_a_tag_line_in_the_caption_language() -> None:
    assert "Tags:" in (tag_prompt("en", 8) or "") and "8" in (tag_prompt("en", 8) or "")
    assert "标签" in (tag_prompt("zh", 5) or "")
    assert tag_prompt("en", 0) is None
