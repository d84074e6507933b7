"""Turning texts into padded ``input_ids`` / ``attention_mask`` arrays.

A model's ``tokenizer.json`` is read with the `tokenizers` library directly: it is the
whole fast tokenizer, loads in milliseconds and needs neither torch nor transformers.
Only models without one (a bare ``vocab.txt``, a SentencePiece file) go through
transformers' `AutoTokenizer`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from imgdex import import_serially
from imgdex_bge.errors import ModelLoadError
from imgdex_bge.files import read_json

__all__ = ["TextEncoder", "load_text_encoder", "model_max_length"]

Ids = npt.NDArray[np.int64]
_NO_LIMIT = 1_000_000  # transformers writes 1e30 for "no limit"


class TextEncoder:
    """Pads each batch to its longest text and truncates to `max_length` tokens."""

    def __init__(self, backend: Any, max_length: int, *, fast: bool) -> None:
        self.max_length = max_length
        self._backend = backend
        self._fast = fast
        # transformers' tokenizers change the backend's padding state on every call and
        # fail when two threads do that at once ("Already borrowed").
        self._lock = threading.Lock()

    def __call__(self, texts: list[str]) -> tuple[Ids, Ids]:
        """``(input_ids, attention_mask)``, both ``(len(texts), longest)`` int64."""
        with self._lock:
            if self._fast:
                encodings = self._backend.encode_batch(texts)
                ids = np.array([e.ids for e in encodings], dtype=np.int64)
                mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
                return ids, mask
            batch = self._backend(
                texts,
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="np",
            )
        return (
            batch["input_ids"].astype(np.int64, copy=False),
            batch["attention_mask"].astype(np.int64, copy=False),
        )


def load_text_encoder(model_dir: Path, model: str, max_length: int) -> TextEncoder:
    """The tokenizer of the model in `model_dir`, truncating at `max_length` tokens."""
    try:
        if (model_dir / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            pad_token = _tokenizer_config(model_dir).get("pad_token")
            if isinstance(pad_token, dict):  # {"content": "[PAD]", ...} in older configs
                pad_token = pad_token.get("content")
            pad_token = pad_token if isinstance(pad_token, str) else "[PAD]"
            pad_id = tokenizer.token_to_id(pad_token)
            # tokenizer.json may carry fixed padding/truncation (all-MiniLM's pads to 128):
            # replace both with "pad to the longest in the batch, cut at max_length".
            tokenizer.no_padding()
            tokenizer.enable_padding(direction="right", pad_id=pad_id or 0, pad_token=pad_token)
            tokenizer.enable_truncation(max_length=max_length)
            return TextEncoder(tokenizer, max_length, fast=True)
        import_serially("transformers:AutoTokenizer")  # not thread-safe to import from
        from transformers import AutoTokenizer

        fallback = AutoTokenizer.from_pretrained(model_dir)
        fallback.padding_side = "right"  # CLS pooling reads position 0
        return TextEncoder(fallback, max_length, fast=False)
    except Exception as exc:
        raise ModelLoadError(
            f"model {model!r}: the tokenizer could not be loaded ({type(exc).__name__}: {exc})"
        ) from exc


def model_max_length(model_dir: Path, settings: dict[str, Any]) -> int | None:
    """The longest input the model takes, in tokens, as its files declare it (or None).

    The smallest of the tokenizer's ``model_max_length``, sentence-transformers'
    ``max_seq_length`` (the length it was trained at) and, when neither is known,
    ``max_position_embeddings``.
    """
    limits = []
    declared = _tokenizer_config(model_dir).get("model_max_length")
    if isinstance(declared, int) and 0 < declared < _NO_LIMIT:
        limits.append(declared)
    trained = read_json(model_dir / "sentence_bert_config.json").get("max_seq_length")
    if isinstance(trained, int) and trained > 0:
        limits.append(trained)
    positions = settings.get("max_position_embeddings")
    if not limits and isinstance(positions, int) and positions > 0:
        limits.append(positions)
    return min(limits) if limits else None


def _tokenizer_config(model_dir: Path) -> dict[str, Any]:
    return read_json(model_dir / "tokenizer_config.json")
