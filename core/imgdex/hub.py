"""Fetching model files from the Hugging Face hub, failing fast when it cannot.

`transformers`' ``from_pretrained`` retries every missing file with exponential back-off
when the hub is unreachable, so an offline server spends minutes "loading" each model.
`fetch_model` asks once with ``snapshot_download`` (files already in the cache are used
as they are), then plugins load from the local folder it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["MODEL_FILES", "fetch_model"]

# Configs, tokenizers, processors and safetensors weights; not other frameworks' weights.
MODEL_FILES = (
    "*.json",
    "*.safetensors",
    "*.txt",
    "*.model",
    "*.tiktoken",
    "*.jinja",
    "tokenizer*",
    "vocab*",
    "merges*",
)
_FALLBACK_WEIGHTS = ("pytorch_model*.bin",)


def fetch_model(repo_id: str, allow_patterns: Sequence[str] = MODEL_FILES) -> str:
    """The local folder holding `repo_id`'s files, downloading what the cache lacks.

    Raises `RuntimeError` naming the repo and the reason (offline, unknown repo, gated).
    """
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=list(allow_patterns)))
        if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
            # Older repos ship only PyTorch pickles.
            patterns = [*allow_patterns, *_FALLBACK_WEIGHTS]
            folder = Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as exc:
        reason = " ".join(str(exc).split())[:400]
        raise RuntimeError(
            f"model {repo_id!r} is neither in the Hugging Face cache nor downloadable "
            f"({type(exc).__name__}: {reason}); download it beforehand "
            "(`huggingface-cli download REPO`) or set `model` to a local directory"
        ) from exc
    return str(folder)


def find_problem(model: str) -> str | None:
    """Why `model` cannot be loaded right now without the network, or None when its
    files are on disk (a local directory, or a repo in the Hugging Face cache).

    Cheap: no weights are read; for `imgdex plugins`, which must not load models.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return None
    if model.startswith(("/", "./", "../", "~")) or model.count("/") > 1:
        return f"model directory {model} does not exist"
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(model, "config.json")
    except Exception:  # not a valid repo id (spaces, too long...): cannot be on the hub
        return f"model {model!r} is neither a local directory nor a Hugging Face repo id"
    if isinstance(found, str):
        return None
    return (
        f"model {model!r} is not in the Hugging Face cache: it is downloaded on first use "
        "if the hub is reachable, otherwise download it beforehand or set a local directory"
    )
