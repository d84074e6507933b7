"""imgdex plugin ``bge``: a BGE (or any BERT-family) text embedder on ONNX Runtime.

Registers one embedder, index ``bge_text_v<version>``, that stores every description
and answers text queries. Configured under ``plugins.bge`` (see `BgeConfig`).
"""

from __future__ import annotations

from collections.abc import Callable

from imgdex import Embedder, PluginSettings, hookimpl
from imgdex_bge.config import BgeConfig, default_query_instruction
from imgdex_bge.embedder import BgeEmbedder
from imgdex_bge.errors import ModelLoadError

__all__ = [
    "BgeConfig",
    "BgeEmbedder",
    "ModelLoadError",
    "default_query_instruction",
    "register_embedders",
]


@hookimpl
def register_embedders(register: Callable[[Embedder], None], config: PluginSettings) -> None:
    """Register the BGE embedder; nothing is loaded until the core first needs it."""
    settings = config.decode(BgeConfig)
    register(BgeEmbedder(settings, cache_dir=config.cache_dir))
