"""A tiny random Qwen3 model and tokenizer, built once per session; no hub access."""

from __future__ import annotations

import os

# Before transformers / huggingface_hub are imported: they read these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from pathlib import Path

import pytest

# Every word the tests use, so the instruction and the texts tokenise to real ids.
TEXT = (
    "Instruct Given a search query retrieve image descriptions that match it Query "
    "an orange cat sits on the windowsill in sunlight indoor scene pet my ginger "
    "dog runs across green field at dusk red car parked near old house"
)
WORDS = TEXT.split()
PAD = "<|endoftext|>"  # appended to every text, like Qwen3-Embedding's post-processor
EOS = "<|im_end|>"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Qwen3ForCausalLM checkpoint (hidden size 32, 2 layers) with its tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    path = tmp_path_factory.mktemp("qwen3-tiny")
    vocab = {tok: i for i, tok in enumerate(["[UNK]", PAD, EOS, ":", ",", "\n", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single=f"$A {PAD}", special_tokens=[(PAD, vocab[PAD])]
    )
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token=PAD,
        eos_token=EOS,
        padding_side="right",  # the plugin must pad left whatever the tokenizer says
    )
    tokenizer.save_pretrained(path)

    config = Qwen3Config(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
        head_dim=16,
        max_position_embeddings=256,
        # Large random weights, so that different texts get clearly different vectors;
        # no pad_token_id, so the pad embedding is not a zero row (it is not in Qwen3).
        initializer_range=0.3,
        eos_token_id=vocab[EOS],
    )
    torch.manual_seed(0)
    Qwen3ForCausalLM(config).save_pretrained(path)
    return path
