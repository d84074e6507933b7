"""Tiny random SigLIP checkpoints of the real architectures, built once per session.

There is no Hugging Face hub here, so the tests save small random models and processors
with `save_pretrained` and load them back through the plugin's `AutoModel` and
`AutoProcessor` path: the code under test is the code that loads a real checkpoint.
"""

from __future__ import annotations

import os

# Before anything imports huggingface_hub, which reads it once at import time.
os.environ["HF_HUB_OFFLINE"] = "1"

from pathlib import Path
from typing import Any

import pytest

# A character-level vocabulary: every text tokenizes to one id per character, so texts of
# different lengths get different numbers of tokens and padding really matters.
_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789▁"
VOCAB = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
VOCAB.update({c: i + len(VOCAB) for i, c in enumerate(_CHARS)})
TEXT_POSITIONS = 16  # the tiny text tower's max_position_embeddings
DIM = 24  # deliberately unlike any real model, so a hard-coded width would show


def _tower(**extra: Any) -> dict[str, Any]:
    return {
        "hidden_size": DIM,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        **extra,
    }


def _text_config() -> dict[str, Any]:
    return _tower(
        vocab_size=len(VOCAB),
        max_position_embeddings=TEXT_POSITIONS,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )


def build_naflex(path: Path) -> Path:
    """A Siglip2Model + Siglip2Processor checkpoint (the NaFlex, variable-resolution kind)."""
    import torch
    from transformers import Siglip2Config, Siglip2Model, Siglip2Processor, Siglip2Tokenizer
    from transformers.models.siglip2.image_processing_pil_siglip2 import (
        Siglip2ImageProcessorPil,
    )

    torch.manual_seed(0)
    config = Siglip2Config(
        text_config=_text_config(), vision_config=_tower(patch_size=8, num_patches=16)
    )
    Siglip2Model(config).eval().save_pretrained(path)
    processor = Siglip2Processor(
        image_processor=Siglip2ImageProcessorPil(patch_size=8, max_num_patches=16),
        tokenizer=Siglip2Tokenizer(vocab=VOCAB, merges=[]),
    )
    processor.save_pretrained(path)
    return path


def build_fixed(path: Path) -> Path:
    """A SiglipModel + SiglipProcessor checkpoint (fixed resolution, like most *-224 ones)."""
    import torch
    from transformers import GemmaTokenizer, SiglipConfig, SiglipModel, SiglipProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    torch.manual_seed(1)
    config = SiglipConfig(
        text_config=_text_config(), vision_config=_tower(patch_size=8, image_size=32)
    )
    SiglipModel(config).eval().save_pretrained(path)
    processor = SiglipProcessor(
        image_processor=SiglipImageProcessorPil(size={"height": 32, "width": 32}),
        tokenizer=GemmaTokenizer(vocab=VOCAB, merges=[]),
    )
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def naflex_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_naflex(tmp_path_factory.mktemp("siglip2-naflex"))


@pytest.fixture(scope="session")
def fixed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fixed(tmp_path_factory.mktemp("siglip2-fixed"))


@pytest.fixture(scope="session", params=["naflex", "fixed"])
def model_dir(request: pytest.FixtureRequest) -> Path:
    """Each architecture in turn."""
    fixture = "naflex_dir" if request.param == "naflex" else "fixed_dir"
    path: Path = request.getfixturevalue(fixture)
    return path
