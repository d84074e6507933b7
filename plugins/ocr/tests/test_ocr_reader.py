"""The real PP-OCR models on rendered English and Chinese text."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from imgdex_ocr import (
    ModelLoadError,
    OcrConfig,
    OcrDescriber,
    bundled_model_dir,
    find_models,
    reading_order,
)

Render = Callable[..., Image.Image]


def test_reads_english_lines_in_order(
    reader: OcrDescriber, render: Render, latin_font: Path
) -> None:
    image = render(["Harbour lighthouse", "Closed on Mondays"], latin_font)
    (text,) = reader.describe_images([image])
    lines = text.splitlines()
    assert len(lines) == 2, text
    assert "lighthouse" in lines[0].lower()
    assert "mondays" in lines[1].lower()


def test_reads_chinese(reader: OcrDescriber, render: Render, cjk_font: Path) -> None:
    image = render(["海边的日落风景", "欢迎光临"], cjk_font, size=48)
    (text,) = reader.describe_images([image])
    assert "日落" in text
    assert "欢迎" in text


def test_an_image_without_text_reads_as_empty(reader: OcrDescriber) -> None:
    blank = Image.new("RGB", (320, 240), (90, 140, 200))
    assert reader.describe_images([blank, blank.convert("L")]) == ["", ""]


def test_batches_keep_their_order(reader: OcrDescriber, render: Render, latin_font: Path) -> None:
    images = [render([word], latin_font) for word in ("Bakery", "Pharmacy")]
    texts = reader.describe_images(images)
    assert "bakery" in texts[0].lower() and "pharmacy" in texts[1].lower()


def test_min_confidence_drops_lines(reader: OcrDescriber, render: Render, latin_font: Path) -> None:
    strict = OcrDescriber(OcrConfig(min_confidence=1.0))
    strict._engine = reader._engine  # the same sessions; only the threshold differs
    assert strict.describe_images([render(["Harbour lighthouse"], latin_font)]) == [""]


def test_model_directory_can_be_given(tmp_path: Path, render: Render, latin_font: Path) -> None:
    files = find_models(bundled_model_dir())
    for src, name in ((files.det, "my_det.onnx"), (files.rec, "my_rec.onnx")):
        shutil.copy(src, tmp_path / name)  # no cls model: direction check is skipped
    describer = OcrDescriber(OcrConfig(model=str(tmp_path)))
    assert describer.model == str(tmp_path) and not describer.loaded
    (text,) = describer.describe_images([render(["Railway station"], latin_font)])
    assert "station" in text.lower()


def test_missing_or_ambiguous_models_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        OcrDescriber(OcrConfig(model=str(tmp_path / "nope"))).load()
    (tmp_path / "a_det.onnx").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"no \*rec\*\.onnx"):
        find_models(tmp_path)
    (tmp_path / "a_rec.onnx").write_bytes(b"")
    (tmp_path / "b_rec.onnx").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="several rec models"):
        find_models(tmp_path)
    (tmp_path / "b_rec.onnx").unlink()
    (tmp_path / "a_rec.onnx").write_bytes(b"not an onnx model")
    describer = OcrDescriber(OcrConfig(model=str(tmp_path)))
    with pytest.raises(ModelLoadError, match="cannot open the models"):
        describer.load()
    assert not describer.loaded


def box(x: float, y: float, w: float = 100, h: float = 30) -> list[list[float]]:
    return [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]


def test_reading_order_groups_lines_and_sorts_words() -> None:
    boxes = [box(300, 52), box(10, 50), box(10, 120), box(150, 48, h=40)]
    assert reading_order(boxes, ["c", "a", "d", "b"]) == "a b c\nd"
    assert reading_order([], []) == ""
    assert reading_order([box(0, 0)], ["  "]) == ""
