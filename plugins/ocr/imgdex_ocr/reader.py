"""`OcrDescriber`: the text inside an image, read by PP-OCR detection, direction and
recognition models on ONNX Runtime (through rapidocr's pipeline).

The engine is built on first use, once, behind a lock; the core calls `load` lazily in
a worker thread and serialises inference per describer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgdex.errors import ConfigError, ServiceUnavailable
from imgdex.providers import Describer
from imgdex_ocr.config import OcrConfig

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "ModelFiles",
    "ModelLoadError",
    "OcrDescriber",
    "bundled_model_dir",
    "check_config",
    "find_models",
    "reading_order",
]

log = logging.getLogger(__name__)

METHOD = "ocr"


class ModelLoadError(ServiceUnavailable):
    """The OCR models could not be found or opened (HTTP 503, never the client's fault)."""

    code = "model_unavailable"


@dataclass(frozen=True)
class ModelFiles:
    """The ONNX files of one PP-OCR model set."""

    det: Path
    rec: Path
    cls: Path | None


def bundled_model_dir() -> Path:
    """The models directory shipped inside the rapidocr wheel."""
    import importlib.util

    spec = importlib.util.find_spec("rapidocr")
    if spec is None or spec.origin is None:
        raise ModelLoadError("ocr: the rapidocr package is not installed")
    return Path(spec.origin).parent / "models"


def _default_model_dir() -> Path | str:
    try:
        return bundled_model_dir()
    except ModelLoadError:  # reported by `load`; the describer still registers
        return "rapidocr"


def find_models(directory: Path) -> ModelFiles:
    """The det/rec/cls ONNX files in `directory`, by name; raise naming what is missing."""
    if not directory.is_dir():
        raise ModelLoadError(f"ocr: model directory {directory} does not exist")
    files = sorted(p for p in directory.glob("*.onnx") if p.is_file())

    def pick(role: str, required: bool) -> Path | None:
        found = [p for p in files if role in p.name.lower()]
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise ModelLoadError(f"ocr: several {role} models in {directory}: {names}")
        if not found and required:
            raise ModelLoadError(f"ocr: no *{role}*.onnx model in {directory}")
        return found[0] if found else None

    det, rec = pick("det", True), pick("rec", True)
    assert det is not None and rec is not None  # required above
    return ModelFiles(det=det, rec=rec, cls=pick("cls", False))


def reading_order(boxes: Sequence[Sequence[Sequence[float]]], texts: Sequence[str]) -> str:
    """Join recognised boxes into text: lines top to bottom, words left to right.

    A box joins the current line when its vertical centre falls inside the line's
    vertical extent (so slightly tilted or differently sized words stay on one line).
    """
    items = []
    for box, text in zip(boxes, texts, strict=True):
        if not text.strip():
            continue
        ys = [float(point[1]) for point in box]
        xs = [float(point[0]) for point in box]
        items.append((min(ys), max(ys), min(xs), text.strip()))
    items.sort(key=lambda item: (item[0], item[2]))
    lines: list[list[tuple[float, float, float, str]]] = []
    for item in items:
        top, bottom = item[0], item[1]
        centre = (top + bottom) / 2
        if lines:
            line = lines[-1]
            line_top = min(i[0] for i in line)
            line_bottom = max(i[1] for i in line)
            if line_top <= centre <= line_bottom:
                line.append(item)
                continue
        lines.append([item])
    return "\n".join(" ".join(i[3] for i in sorted(line, key=lambda i: i[2])) for line in lines)


class OcrDescriber(Describer):
    """Describer ``ocr``: the text read from each image; empty when there is none."""

    method = METHOD
    empty_ok = True  # an image without text reads as "": no description, not a failure

    def __init__(self, config: OcrConfig) -> None:
        self.config = config
        self.model_dir = Path(config.model).expanduser() if config.model else None
        # A directory, so that `imgdex plugins` finds the files without loading them.
        self.model = str(self.model_dir or _default_model_dir())
        self._engine: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OcrDescriber(model={self.model!r})"

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    def load(self) -> None:
        """Open the three ONNX sessions (once)."""
        with self._lock:
            if self._engine is not None:
                return
            files = find_models(self.model_dir or bundled_model_dir())
            self._engine = _build_engine(files, self.config)
            log.info("ocr: models loaded from %s", files.det.parent)

    def describe_images(self, images: Sequence[Image]) -> list[str]:
        """The text in each image (lines in reading order), or ``""``."""
        self.load()
        return [self.read(image) for image in images]

    def read(self, image: Image) -> str:
        import numpy as np

        rgb = image if image.mode == "RGB" else image.convert("RGB")
        # rapidocr treats an ndarray as OpenCV's BGR; Pillow gives RGB.
        result = self._engine(np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1]))
        if result.boxes is None or result.txts is None or result.scores is None:
            return ""
        keep = [
            i for i, score in enumerate(result.scores) if float(score) >= self.config.min_confidence
        ]
        return reading_order(
            [result.boxes[i].tolist() for i in keep], [str(result.txts[i]) for i in keep]
        )


def _build_engine(files: ModelFiles, config: OcrConfig) -> Any:
    try:
        from rapidocr import RapidOCR
    except ImportError as exc:
        raise ModelLoadError(f"ocr: cannot import rapidocr: {exc}") from None
    threads = config.threads if config.threads is not None else -1
    params: dict[str, Any] = {
        "Global.log_level": "warning",
        # Our own threshold is applied afterwards; let rapidocr keep everything above it.
        "Global.text_score": config.min_confidence,
        "Global.use_cls": files.cls is not None,
        "Det.model_path": str(files.det),
        "Rec.model_path": str(files.rec),
        "EngineConfig.onnxruntime.intra_op_num_threads": threads,
    }
    if files.cls is not None:
        params["Cls.model_path"] = str(files.cls)
    try:
        engine: Any = RapidOCR(params=params)
        # rapidocr opens each session on first use; open them now, so that a bad model
        # fails here (reported by the core as a load error) and not on the first image.
        engine._load_det_model()
        if files.cls is not None:
            engine._load_cls_model()
        engine._load_rec_model()
        return engine
    except Exception as exc:  # rapidocr raises bare exceptions for unreadable models
        raise ModelLoadError(
            f"ocr: cannot open the models in {files.det.parent}: {type(exc).__name__}: {exc}"
        ) from None


def check_config(config: OcrConfig) -> None:
    """Refuse a `model` that cannot be a directory path (checked at startup, cheaply)."""
    if config.model is not None and not config.model.strip():
        raise ConfigError("plugins.ocr.model: expected a directory path or nothing")
