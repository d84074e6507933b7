"""The ``plugins.qwen3`` config section."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from imgdex import PluginConfig

__all__ = ["DEFAULT_INSTRUCTION", "DEFAULT_MODEL", "Qwen3Settings"]

DEFAULT_MODEL = "Qwen/Qwen3-Embedding-0.6B"
DEFAULT_INSTRUCTION = "Given a search query, retrieve image descriptions that match it"


class Qwen3Settings(PluginConfig, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Everything the Qwen3 text embedder can be told; `model` None means `DEFAULT_MODEL`."""

    # Part of the index name (qwen3_text_v<version>): change it whenever the vectors
    # change (another model, pooling, layer or dimensions), so old and new never mix.
    version: str | int = "1"
    # A Hugging Face repo id or a local directory for the tokenizer, when it does not
    # live beside the weights (Z-Image-Turbo keeps text_encoder/ and tokenizer/ apart).
    tokenizer: str | None = None
    device: Annotated[str, msgspec.Meta(pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    batch_size: Annotated[int, msgspec.Meta(ge=1)] = 16
    max_length: Annotated[int, msgspec.Meta(ge=1)] = 512
    # The task put before every search query; null sends queries bare.
    instruction: str | None = DEFAULT_INSTRUCTION
    # Matryoshka truncation: keep the first N components, then re-normalise.
    dimensions: Annotated[int, msgspec.Meta(ge=1)] | None = None
    pooling: Literal["last_token", "mean"] = "last_token"
    # Which entry of hidden_states to pool: -1 is the final (normed) output, -2 the
    # output of the layer before it (the seed's Qwen3-4B recipe), 0 the embeddings.
    layer: int = -1
