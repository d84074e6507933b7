"""The ``plugins.bge`` config section and the defaults that depend on the model."""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated, Literal

import msgspec

from imgdex import PluginConfig

__all__ = [
    "DEFAULT_MODEL",
    "INSTRUCTION_EN",
    "INSTRUCTION_ZH",
    "BgeConfig",
    "default_query_instruction",
]

DEFAULT_MODEL = "BAAI/bge-small-zh-v1.5"
# The retrieval instructions published with the BGE v1.5 models (queries only).
INSTRUCTION_ZH = "为这个句子生成表示以用于检索相关文章："  # noqa: RUF001 - BGE's exact text
INSTRUCTION_EN = "Represent this sentence for searching relevant passages: "

Positive = Annotated[int, msgspec.Meta(ge=1)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class BgeConfig(PluginConfig, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Settings of the BGE text embedder (any BERT-family sentence encoder works)."""

    # A Hugging Face repo id or a local directory holding config.json, tokenizer, weights.
    model: str = DEFAULT_MODEL
    # Part of the index name (bge_text_v<version>): bump it when the vectors change.
    version: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,32}$")] | NonNegative = "1"
    # cls: the [CLS] token's hidden state (BGE); mean: masked mean of all tokens (MiniLM).
    pooling: Literal["cls", "mean"] = "cls"
    # Prepended to search queries, never to stored descriptions. None: BGE's published
    # instruction when the model name looks like bge-*-zh / bge-*-en, else none. "": none.
    query_instruction: str | None = None
    batch_size: Positive = 32
    max_length: Positive = 512
    device: Annotated[str, msgspec.Meta(pattern=r"^(auto|cpu|cuda(:\d+)?)$")] = "auto"
    # Where the ONNX export is kept; default <data_dir>/cache/bge.
    cache_dir: str | None = None
    # onnxruntime intra-op threads; None lets onnxruntime choose (one per physical core).
    threads: Positive | None = None

    @property
    def index_version(self) -> str:
        return str(self.version)

    @property
    def instruction(self) -> str:
        """The query instruction in force (the explicit one, else the model's default)."""
        if self.query_instruction is not None:
            return self.query_instruction
        return default_query_instruction(self.model)


def default_query_instruction(model: str) -> str:
    """BGE's published query instruction for a BGE v1/v1.5 model name, else ``""``."""
    name = PurePath(model.rstrip("/\\")).name.lower()
    if not name.startswith("bge-") or "m3" in name or "reranker" in name:
        return ""
    return INSTRUCTION_EN if "-en" in name else INSTRUCTION_ZH
