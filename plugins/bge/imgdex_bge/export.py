"""Exporting an encoder to ONNX once and keeping the export in a cache directory.

The exported graph takes ``input_ids`` and ``attention_mask`` (int64, dynamic batch and
sequence axes) and returns both poolings, ``cls`` and ``mean`` (float32, not normalised),
so one export serves either ``pooling`` setting. torch and transformers are imported only
here, and only when an export is needed: a cached export loads with onnxruntime alone.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgdex import import_serially
from imgdex_bge.errors import ModelLoadError
from imgdex_bge.files import fingerprint

if TYPE_CHECKING:
    import torch

__all__ = [
    "EXPORT_FORMAT",
    "OUTPUTS",
    "cached_export",
    "discard_export",
    "ensure_export",
    "export_onnx",
]

log = logging.getLogger(__name__)

# Bump when the exported graph changes: every cached export is then made anew.
EXPORT_FORMAT = "imgdex-bge-onnx-1"
OUTPUTS = ("cls", "mean")
OPSET = 17
_ONNX_NAME = "model.onnx"
_META_NAME = "export.json"


def cached_export(model: str, model_dir: Path, cache_dir: Path) -> Path:
    """The directory where `model`'s export lives (or will), keyed by its fingerprint."""
    key = fingerprint(model, model_dir, EXPORT_FORMAT)[:20]
    # "BAAI--bge-small-zh-v1.5", or the last two folders of a local path: readable, short.
    tail = "--".join(re.split(r"[/\\]+", model.strip("/\\"))[-2:])
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", tail)[-60:].strip("_.-") or "model"
    return cache_dir / f"{slug}-{key}"


def ensure_export(model: str, model_dir: Path, cache_dir: Path) -> tuple[Path, bool]:
    """``(path of model.onnx, whether it was exported now)``; exports on a cache miss.

    The export is written into a temporary directory next to its final place and renamed
    into place in one step, so a crash leaves either no export or a whole one, and two
    processes exporting at once both end up using one complete export.
    """
    target = cached_export(model, model_dir, cache_dir)
    onnx_path = target / _ONNX_NAME
    if (target / _META_NAME).is_file() and onnx_path.is_file():
        return onnx_path, False
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=cache_dir))
    except OSError as exc:
        raise ModelLoadError(f"model {model!r}: cannot write the ONNX cache ({exc})") from exc
    try:
        started = time.perf_counter()
        export_onnx(model_dir, tmp / _ONNX_NAME)
        meta = {"model": model, "source": str(model_dir), "format": EXPORT_FORMAT}
        (tmp / _META_NAME).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        for file in tmp.iterdir():
            _fsync(file)
        if target.exists() and not (target / _META_NAME).is_file():
            shutil.rmtree(target)  # a directory without its marker is not an export
        try:
            tmp.rename(target)
        except OSError:
            if not onnx_path.is_file():
                raise
            # Another process finished the same export first; its copy is as good.
        _fsync(cache_dir)
        log.info("exported %s to %s in %.1fs", model, onnx_path, time.perf_counter() - started)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return onnx_path, True


def discard_export(onnx_path: Path) -> None:
    """Remove a cached export (one onnxruntime could not open) so it is made again."""
    shutil.rmtree(onnx_path.parent, ignore_errors=True)


def export_onnx(model_dir: Path, path: Path) -> None:
    """Export the encoder in `model_dir` with both pooling heads to the ONNX file `path`."""
    # transformers 5.x is not thread-safe to import from: other models may be loading.
    import_serially("torch", "transformers:AutoModel")
    import torch
    from transformers import AutoModel

    # The TorchScript exporter is deprecated in torch >= 2.9 (the dynamo exporter would
    # need onnxscript) and transformers warns about unused weights such as the pooler;
    # both are expected here, so they are logged rather than raised or printed. (The
    # filter is process-wide while it lasts: warnings of other threads during an export
    # end up in the debug log too.)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            encoder = AutoModel.from_pretrained(
                model_dir, dtype=torch.float32, attn_implementation="eager"
            )
        except Exception as exc:
            raise ModelLoadError(
                f"{model_dir}: the weights could not be loaded ({type(exc).__name__}: {exc})"
            ) from exc
        module = _pooling_module(encoder).eval()
        # A padded example batch, so that nothing in the trace assumes a full mask.
        vocab = int(getattr(encoder.config, "vocab_size", 0) or 8)
        ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 0, 0, 0]]) % vocab
        mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0]])
        axes = {0: "batch", 1: "sequence"}
        with torch.no_grad():
            torch.onnx.export(
                module,
                (ids, mask),
                str(path),
                input_names=["input_ids", "attention_mask"],
                output_names=list(OUTPUTS),
                dynamic_axes={
                    "input_ids": axes,
                    "attention_mask": axes,
                    **{name: {0: "batch"} for name in OUTPUTS},
                },
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    for warning in caught:
        log.debug(
            "while exporting %s: %s: %s", model_dir, warning.category.__name__, warning.message
        )


def _pooling_module(encoder: Any) -> torch.nn.Module:
    import torch

    takes_token_types = "token_type_ids" in inspect.signature(encoder.forward).parameters

    class Pooling(torch.nn.Module):
        """The encoder followed by CLS and attention-masked mean pooling."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            # A ready 4-D additive mask: transformers passes it through untouched, so the
            # trace holds no data-dependent shortcut (such as "no padding, skip the mask").
            keep = attention_mask[:, None, None, :].to(torch.float32)
            additive = (1.0 - keep) * torch.finfo(torch.float32).min
            kwargs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": additive}
            if takes_token_types:
                kwargs["token_type_ids"] = torch.zeros_like(input_ids)
            hidden = self.encoder(**kwargs).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
            return hidden[:, 0], mean

    return Pooling()


def _fsync(path: Path) -> None:
    flags = (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return  # directories cannot be opened for fsync on some platforms (Windows)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
