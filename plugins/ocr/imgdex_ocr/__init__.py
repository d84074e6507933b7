"""imgdex plugin ``ocr``: the text inside each image becomes its ``ocr`` description.

PP-OCR detection, direction and recognition models (Chinese and English) run on ONNX
Runtime through rapidocr's pipeline; the models ship inside the rapidocr wheel, so it
works offline. Nothing heavy is imported or loaded here: the core calls
`OcrDescriber.load` lazily in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable

from imgdex import Describer, PluginSettings, hookimpl
from imgdex_ocr.config import OcrConfig
from imgdex_ocr.reader import (
    ModelFiles,
    ModelLoadError,
    OcrDescriber,
    bundled_model_dir,
    check_config,
    find_models,
    reading_order,
)

__all__ = [
    "ModelFiles",
    "ModelLoadError",
    "OcrConfig",
    "OcrDescriber",
    "build_describer",
    "bundled_model_dir",
    "find_models",
    "reading_order",
    "register_describers",
]


def build_describer(config: PluginSettings) -> OcrDescriber:
    """Decode the ``plugins.ocr`` section into the describer (nothing loaded yet)."""
    section = config.decode(OcrConfig)
    check_config(section)
    return OcrDescriber(section)


@hookimpl
def register_describers(register: Callable[[Describer], None], config: PluginSettings) -> None:
    """Register the ``ocr`` describer."""
    register(build_describer(config))
