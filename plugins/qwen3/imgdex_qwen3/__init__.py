"""imgdex plugin: Qwen3-Embedding text vectors for every description (``qwen3_text_v1``).

Configured under ``plugins.qwen3``; see the plugin README for the keys.
"""

from __future__ import annotations

from collections.abc import Callable

from imgdex import Embedder, PluginSettings, hookimpl
from imgdex_qwen3.config import DEFAULT_INSTRUCTION, DEFAULT_MODEL, Qwen3Settings
from imgdex_qwen3.embedder import ModelLoadError, Qwen3Embedder

__all__ = [
    "DEFAULT_INSTRUCTION",
    "DEFAULT_MODEL",
    "ModelLoadError",
    "Qwen3Embedder",
    "Qwen3Settings",
    "register_embedders",
]


@hookimpl
def register_embedders(register: Callable[[Embedder], None], config: PluginSettings) -> None:
    """Register one Qwen3 text embedder; weights load later, on first use."""
    register(Qwen3Embedder(config.decode(Qwen3Settings), plugin=config.name))
