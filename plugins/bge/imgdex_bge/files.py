"""Finding a model's files (local directory or Hugging Face hub) and fingerprinting them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from imgdex.hub import DOWNLOAD_HINT
from imgdex_bge.errors import ModelLoadError

__all__ = ["fingerprint", "read_config", "read_json", "resolve_model_dir", "weight_files"]

# Everything an encoder and its tokenizer need, and nothing else a repo may hold (ONNX,
# OpenVINO or PyTorch duplicates of the weights).
_HUB_FILES = ["*.json", "*.txt", "*.model", "*.safetensors"]
_HUB_FALLBACK_WEIGHTS = ["pytorch_model*.bin"]
_CHUNK = 1 << 20


def weight_files(model_dir: Path) -> list[Path]:
    """The checkpoint files in `model_dir`: safetensors if any, else PyTorch ``.bin``."""
    found = sorted(model_dir.glob("*.safetensors"))
    return found or sorted(model_dir.glob("pytorch_model*.bin"))


def resolve_model_dir(model: str) -> Path:
    """A local directory holding `model`'s config, tokenizer and weights.

    `model` is a local directory or a hub repo id; a repo is downloaded into (or, offline,
    found in) the Hugging Face cache. Raises `ModelLoadError` saying why it cannot be had.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        model_dir = path.resolve()
    elif path.is_absolute() or model.startswith((".", "~")) or model.count("/") > 1:
        raise ModelLoadError(f"model {model!r}: local model directory not found")
    else:
        model_dir = _download(model)
    if not (model_dir / "config.json").is_file():
        raise ModelLoadError(f"model {model!r}: no config.json in {model_dir}")
    if not weight_files(model_dir):
        raise ModelLoadError(
            f"model {model!r}: no weights (*.safetensors or pytorch_model*.bin) in {model_dir}"
        )
    return model_dir


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=_HUB_FILES))
        if not weight_files(folder):
            folder = Path(
                snapshot_download(repo_id, allow_patterns=_HUB_FILES + _HUB_FALLBACK_WEIGHTS)
            )
    except Exception as exc:  # offline, unknown repo, gated, disk full: say which and why
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"model {repo_id!r}: weights could not be found in the Hugging Face cache or "
            f"downloaded ({type(exc).__name__}: {reason}); {DOWNLOAD_HINT}"
        ) from exc
    return folder


def read_config(model_dir: Path) -> dict[str, Any]:
    """The model's ``config.json`` as a dict."""
    try:
        data = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{model_dir}: unreadable config.json ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{model_dir}: config.json is not a JSON object")
    return data


def read_json(path: Path) -> dict[str, Any]:
    """An optional JSON object file; ``{}`` when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def fingerprint(model: str, model_dir: Path, salt: str) -> str:
    """SHA-256 over the model name, its config.json and every weight file's bytes.

    Any change to the weights or the architecture gives a new key, so a stale export is
    never reused; `salt` names the export format (bumped when the exported graph changes).
    """
    digest = hashlib.sha256()
    for part in (salt, model):
        digest.update(part.encode() + b"\0")
    for file in [model_dir / "config.json", *weight_files(model_dir)]:
        digest.update(file.name.encode() + b"\0")
        with file.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()
