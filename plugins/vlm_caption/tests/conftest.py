"""Offline settings for every test, and a tiny random vision-language model.

No test reaches the network or the Hugging Face hub.
"""

from __future__ import annotations

import os

# Before transformers / huggingface_hub are imported: they read these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from pathlib import Path

import pytest

# --- a tiny random vision-language model ----------------------------------------------

# SmolVLM's chat template (HuggingFaceTB/SmolVLM-256M-Instruct is an Idefics3 model).
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
SPECIAL = ["[PAD]", "[UNK]", "<|im_start|>", "<end_of_utterance>", "<image>",
           "<fake_token_around_image>", "<global-img>"]  # fmt: skip
WORDS = (  # noqa: SIM905 - a word list reads better as one string
    "a an the photo picture of cat dog tree house red blue green sky water person car "
    "street on in with near sunny city field User Assistant Describe this image : . ,"
).split()


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Idefics3 (SmolVLM) checkpoint: 1-layer SigLIP-style vision tower, 1-layer Llama."""
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

    path = tmp_path_factory.mktemp("idefics3-tiny")
    # Tiles of a split image are announced by <row_i_col_j> tokens.
    rows = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    special = [*SPECIAL, *rows]
    vocab = {tok: i for i, tok in enumerate([*special, *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece()  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        padding_side="right",  # the plugin must pad left whatever the tokenizer says
    )
    tokenizer.add_special_tokens({"additional_special_tokens": special[2:]})
    # Images are resized to 64 px on the longest side and split into 32 px tiles plus a
    # global view, as SmolVLM does at 512/2048: different aspect ratios give prompts of
    # different lengths, so a batch needs (left) padding.
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=True
    )
    # image_seq_len = (image_size / patch_size)^2 / scale_factor^2 = (32/8)^2 / 4 = 4
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=4,
        chat_template=CHAT_TEMPLATE,
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
            "max_position_embeddings": 256,
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
        # Special tokens get logit 0 while words get random ones, so greedy decoding
        # writes words (the max of ~30 random logits is positive) and the captions of a
        # random model are not empty after `skip_special_tokens`.
        model.lm_head.weight[: len(special)] = 0.0
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
