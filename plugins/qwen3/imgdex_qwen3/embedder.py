"""The Qwen3 text embedder: tokenise, left-pad, run the model, pool, truncate, normalise.

torch and transformers are imported inside `load` and the embedding path, so listing
plugins or starting the server never pays for them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from imgdex import Embedder, resolve_device
from imgdex.errors import ConfigError
from imgdex.hub import fetch_model
from imgdex_qwen3.config import DEFAULT_MODEL, Qwen3Settings

if TYPE_CHECKING:
    import torch

__all__ = ["ModelLoadError", "Qwen3Embedder", "format_query", "left_pad"]


class ModelLoadError(RuntimeError):
    """The tokenizer or the weights of the configured model could not be loaded."""


@dataclass(frozen=True)
class _Loaded:
    tokenizer: Any
    model: Any
    device: str
    pad_id: int
    dimension: int


def format_query(instruction: str | None, text: str) -> str:
    """The Qwen3-Embedding query prompt (no space after ``Query:``, as the model card has it)."""
    return text if instruction is None else f"Instruct: {instruction}\nQuery:{text}"


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)``, padded on the left so every row ends in a real token."""
    import torch

    width = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ids in enumerate(sequences):
        if ids:
            input_ids[row, width - len(ids) :] = torch.tensor(list(ids), dtype=torch.long)
            mask[row, width - len(ids) :] = 1
    return input_ids, mask


class Qwen3Embedder(Embedder):
    """Qwen3-Embedding (or any Qwen3 decoder) as a text embedder for ``qwen3_text_v<version>``."""

    stores = "text"
    query_modalities = frozenset({"text"})
    metric = "cosine"
    # Imported by the core before `load`, serially (transformers 5.x is not thread-safe
    # to import from).
    imports = (
        "torch",
        "transformers:AutoConfig",
        "transformers:AutoModel",
        "transformers:AutoTokenizer",
    )

    def __init__(self, settings: Qwen3Settings, *, plugin: str = "qwen3") -> None:
        self.settings = settings
        self.plugin = plugin
        self.model = settings.model or DEFAULT_MODEL
        self.version = str(settings.version)
        self.index_name = f"qwen3_text_v{self.version}"
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None

    @property
    def dimension(self) -> int | None:
        if self._loaded is not None:
            return self._loaded.dimension
        return self.settings.dimensions

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def load(self) -> None:
        """Load tokenizer and weights once; safe to call from several threads."""
        if self._loaded is not None:
            return
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()

    def _load(self) -> _Loaded:
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        s = self.settings
        # The config is a small file: check the settings against it before paying for
        # gigabytes of weights.
        config = _from_pretrained(AutoConfig, "model", self.model)
        hidden_size = int(config.hidden_size)
        layers = int(config.num_hidden_layers)
        key = f"plugins.{self.plugin}"
        # hidden_states holds the embeddings plus one entry per decoder layer.
        if not -(layers + 1) <= s.layer <= layers:
            raise ConfigError(
                f"{key}.layer: {s.layer} is out of range for {self.model!r}, which has "
                f"{layers} layers (use -{layers + 1}..{layers})"
            )
        if s.dimensions is not None and s.dimensions > hidden_size:
            raise ConfigError(
                f"{key}.dimensions: {s.dimensions} is larger than the hidden size "
                f"{hidden_size} of {self.model!r}"
            )

        tokenizer = _from_pretrained(AutoTokenizer, "tokenizer", s.tokenizer or self.model)
        pad_id = tokenizer.pad_token_id
        if pad_id is None:  # masked out anyway; any valid id will do
            pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0

        device, dtype = resolve_device(s.device, s.dtype)
        model = _from_pretrained(AutoModel, "model", self.model, config=config, dtype=dtype)
        try:
            model = model.to(device).eval()
        except Exception as exc:
            raise ModelLoadError(
                f"cannot move model {self.model!r} to device {device!r}: {exc}"
            ) from exc
        return _Loaded(tokenizer, model, device, int(pad_id), s.dimensions or hidden_size)

    def embed_texts(self, texts: Sequence[str], *, query: bool) -> npt.NDArray[np.float32]:
        """L2-normalised float32 vectors; queries get the instruction prefix, documents not."""
        import torch

        self.load()
        state = self._loaded
        assert state is not None
        s = self.settings
        prompts = [format_query(s.instruction, t) if query else t for t in texts]
        out = np.empty((len(prompts), state.dimension), dtype=np.float32)
        if not prompts:
            return out
        # The tokenizer appends what the model was trained to end on (Qwen3-Embedding's
        # post-processor adds <|endoftext|>, whose state is the embedding), and truncation
        # keeps it.
        encoded: list[list[int]] = state.tokenizer(
            prompts, truncation=True, max_length=s.max_length
        )["input_ids"]
        # Similar lengths batched together waste less compute on padding.
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        with torch.inference_mode():
            for start in range(0, len(order), s.batch_size):
                rows = order[start : start + s.batch_size]
                out[rows] = self._embed_batch(state, [encoded[i] for i in rows])
        return out

    def _embed_batch(self, state: _Loaded, sequences: list[list[int]]) -> npt.NDArray[np.float32]:
        import torch

        s = self.settings
        # An empty sequence would pool padding; give it one token to stand on.
        sequences = [ids or [state.pad_id] for ids in sequences]
        input_ids, mask = left_pad(sequences, state.pad_id)
        # Positions count real tokens only, so a padded row sees exactly what it would
        # see alone (RoPE is relative, but this makes batched == single, not just close).
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        output = state.model(
            input_ids=input_ids.to(state.device),
            attention_mask=mask.to(state.device),
            position_ids=positions.to(state.device),
            output_hidden_states=s.layer != -1,
            use_cache=False,
        )
        hidden = output.last_hidden_state if s.layer == -1 else output.hidden_states[s.layer]
        # Pool and normalise in float32 whatever the model's dtype.
        if s.pooling == "last_token":
            # Left padding: the last column is every row's last real token.
            pooled = hidden[:, -1].float()
        else:
            keep = mask.to(state.device).unsqueeze(-1).bool()
            # masked_fill, not multiply: padded rows can hold NaN from fully masked attention.
            pooled = hidden.float().masked_fill(~keep, 0.0).sum(dim=1) / keep.sum(dim=1)
        if s.dimensions is not None:
            pooled = pooled[:, : s.dimensions]
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
        result: npt.NDArray[np.float32] = pooled.cpu().numpy().astype(np.float32, copy=False)
        return result


def _from_pretrained(loader: Any, what: str, source: str, **kwargs: Any) -> Any:
    """`loader.from_pretrained(source)`, failing with a message that names the model and why."""
    local = Path(source).expanduser()
    is_local = source.startswith(("/", "./", "../", "~")) or local.is_dir()
    if is_local and not local.is_dir():
        raise ModelLoadError(f"cannot load {what} {source!r}: no such directory")
    try:
        # fetch_model: one quick request instead of from_pretrained's retries offline.
        return loader.from_pretrained(str(local) if is_local else fetch_model(source), **kwargs)
    except Exception as exc:
        hint = (
            ""
            if is_local
            else " (offline? download it into the Hugging Face cache first, or set it to a"
            " local directory)"
        )
        raise ModelLoadError(
            f"cannot load {what} {source!r}: {type(exc).__name__}: {exc}{hint}"
        ) from exc
