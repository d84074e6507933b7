"""The ``plugins.ocr`` config section."""

from __future__ import annotations

from typing import Annotated

import msgspec

from imgdex.config import PluginConfig

__all__ = ["OcrConfig"]

Confidence = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Threads = Annotated[int, msgspec.Meta(ge=1, le=256)]


class OcrConfig(PluginConfig, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """``enabled``; ``model``: a local directory of PP-OCR ONNX models (one ``*det*.onnx``,
    one ``*rec*.onnx``, optionally one ``*cls*.onnx``), default the models bundled with
    rapidocr; ``min_confidence``: recognised lines scoring below it are dropped."""

    min_confidence: Confidence = 0.5
    # ONNX Runtime threads per model; unset lets the runtime decide (all cores).
    threads: Threads | None = None
