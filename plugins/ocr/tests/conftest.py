"""Images with rendered text, and one OCR describer shared by the tests (loading and
the first run cost seconds on a small CPU)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from imgdex_ocr import OcrConfig, OcrDescriber

LATIN_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
# Debian's fonts-noto-cjk (the Makefile installs it when missing).
CJK_FONTS = [
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc"),
]


Render = Callable[..., Image.Image]


@pytest.fixture(scope="session")
def latin_font() -> Path:
    return LATIN_FONT


@pytest.fixture(scope="session")
def cjk_font() -> Path:
    for path in CJK_FONTS:
        if path.exists():
            return path
    pytest.fail("no CJK font: apt-get install -y fonts-noto-cjk (make test does it)")


def _render(lines: list[str], font: Path, size: int = 44, width: int = 720) -> Image.Image:
    """Black text on white, one line per entry, as a photo of a sign would be read."""
    face = ImageFont.truetype(str(font), size)
    image = Image.new("RGB", (width, 40 + len(lines) * (size * 2)), "white")
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        draw.text((30, 20 + row * size * 2), line, fill="black", font=face)
    return image


@pytest.fixture(scope="session")
def render() -> Render:
    """``render(lines, font, size=44, width=720)``: an RGB image of the text."""
    return _render


@pytest.fixture(scope="session")
def reader() -> OcrDescriber:
    describer = OcrDescriber(OcrConfig())
    describer.load()
    return describer
