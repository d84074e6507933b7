"""The ``plugins.siglip2`` config section."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from imgdex import PluginConfig

__all__ = ["DEFAULT_MODEL", "Siglip2PluginConfig"]

# The CPU-friendly default (86M-parameter towers, 768-d). GPU configs name the big one,
# google/siglip2-so400m-patch16-512 (1152-d), explicitly: the default must not depend on
# the machine, or the same config would silently build a different index elsewhere.
DEFAULT_MODEL = "google/siglip2-base-patch16-224"


class Siglip2PluginConfig(PluginConfig, kw_only=True, frozen=True, forbid_unknown_fields=True):
    # A Hugging Face repo id or a local directory holding config.json, weights and the
    # processor files (what `save_pretrained` writes).
    model: str = DEFAULT_MODEL
    # Part of the index name (siglip2_image_v<version>): bump it whenever `model` changes,
    # so the new vectors go into a new index instead of mixing with the old ones. YAML
    # `version: 2` is an int, hence the union.
    version: str | int = "1"
    # "cuda:1" picks one GPU of several.
    device: Annotated[str, msgspec.Meta(pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    batch_size: Annotated[int, msgspec.Meta(ge=1)] = 16
    # SigLIP text towers are trained on fixed-length, padded token sequences (64 tokens).
    max_text_length: Annotated[int, msgspec.Meta(ge=2)] = 64
