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
