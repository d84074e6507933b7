"""Fixtures for the bge plugin's tests: a tiny random BERT built on the fly, and a factory
of embedders. No test reaches the Hugging Face hub."""

from __future__ import annotations

import os

# Before transformers / huggingface_hub are imported anywhere: never touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imgdex import PluginSettings
from imgdex_bge import BgeConfig, BgeEmbedder

# Every word the tests use; anything else becomes [UNK].
VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "query:", "a", "the", "cat", "kitten", "dog", "sits",
    "sleeps", "runs", "on", "in", "by", "mat", "window", "park", "beach", "stock", "market",
    "report", "fell", "today", "one", "two", "three", "four", "five", "six", "seven", "eight",
]  # fmt: skip


def build_tiny_bert(path: Path, *, seed: int = 0, hidden: int = 32) -> Path:
    """Save a random 2-layer BERT and a word-level tokenizer for it into `path`."""
    import torch
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(path)
    ids = {word: i for i, word in enumerate(VOCAB)}
    tokenizer = Tokenizer(WordLevel(ids, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=64,
    ).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT (hidden size 32) with its tokenizer, built once per session."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export cache shared by the tests that do not look at caching, so the tiny
    model is exported once per session."""
    return tmp_path_factory.mktemp("bge-cache")


@pytest.fixture(scope="session")
def tiny_bert_builder() -> Callable[..., Path]:
    """`build_tiny_bert(path, seed=0, hidden=32)`, for tests that need variants."""
    return build_tiny_bert


@pytest.fixture(scope="session")
def tiny_vocab() -> list[str]:
    """The tiny tokenizer's vocabulary, in id order."""
    return list(VOCAB)


MakeEmbedder = Callable[..., BgeEmbedder]


@pytest.fixture
def make_embedder(tiny_model: Path, shared_cache: Path) -> MakeEmbedder:
    """``make_embedder(**plugin_config)``: an unloaded embedder of the tiny model."""

    def make(*, cache: Path | None = None, **raw: Any) -> BgeEmbedder:
        raw.setdefault("model", str(tiny_model))
        config = PluginSettings("bge", raw, cache_dir=cache or shared_cache).decode(BgeConfig)
        return BgeEmbedder(config, cache_dir=cache or shared_cache)

    return make
