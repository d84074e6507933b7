"""imgdex plugin: SigLIP-2 image embeddings, searchable by image and by text.

Registers one embedder whose index (``siglip2_image_v<version>``) stores every uploaded
image; its text tower embeds text queries into the same space, so a sentence finds images
directly, without any description.
"""

from __future__ import annotations

from collections.abc import Callable

from imgdex import Embedder, PluginSettings, hookimpl
from imgdex_siglip2.config import DEFAULT_MODEL, Siglip2PluginConfig
from imgdex_siglip2.embedder import Siglip2Embedder, Siglip2LoadError

__all__ = [
    "DEFAULT_MODEL",
    "Siglip2Embedder",
    "Siglip2LoadError",
    "Siglip2PluginConfig",
    "register_embedders",
]


@hookimpl
def register_embedders(register: Callable[[Embedder], None], config: PluginSettings) -> None:
    """Register the SigLIP-2 embedder; weights load later, on first use."""
    register(Siglip2Embedder(config.decode(Siglip2PluginConfig)))
