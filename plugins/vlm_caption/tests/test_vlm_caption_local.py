"""The local backend with a tiny random Idefics3 (SmolVLM architecture) built at test time."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imgdex.config import PluginSettings
from imgdex.errors import ServiceUnavailable
from imgdex_vlm_caption import CaptionError, LocalCaptioner, ModelLoadError, build_describers
from imgdex_vlm_caption.tagging import tag_prompt


def local_captioner(model: Path | str, **section: Any) -> LocalCaptioner:
    raw = {"model": str(model), "device": "cpu", "max_new_tokens": 6, **section}
    (describer,) = build_describers(PluginSettings("vlm_caption", raw))
    assert isinstance(describer, LocalCaptioner)
    return describer


def images() -> list[Image.Image]:
    """Different sizes and aspect ratios, so the batch needs padding; one non-RGB."""
    return [
        Image.new("RGB", (64, 40), (220, 30, 30)),
        Image.new("RGB", (20, 90), (30, 30, 220)),
        Image.new("L", (33, 33), 200),
    ]


@pytest.fixture(scope="module")
def loaded(tiny_vlm_dir: Path) -> LocalCaptioner:
    captioner = local_captioner(tiny_vlm_dir, batch_size=2)
    captioner.load()
    return captioner


def test_captions_through_generate(loaded: LocalCaptioner, tiny_vlm_dir: Path) -> None:
    from tokenizers import Tokenizer

    captions = loaded.describe_images(images())

    assert len(captions) == 3
    # The pixels reach the model: differently coloured images get different captions.
    assert len(set(captions)) > 1
    vocab = set(Tokenizer.from_file(str(tiny_vlm_dir / "tokenizer.json")).get_vocab())
    for caption in captions:
        assert isinstance(caption, str)
        assert caption == caption.strip() and caption
        # The decoder glues punctuation to the word before it ("on ," -> "on,").
        words = re.findall(r"\w+|[^\w\s]", caption)
        # Only newly generated tokens: at most max_new_tokens words, none of the prompt's
        # special tokens, every word from the tiny vocabulary.
        assert 1 <= len(words) <= 6
        assert set(words) <= vocab
        assert not any(word.startswith(("<", "[")) for word in words)


def test_greedy_decoding_is_deterministic_and_batch_independent(
    loaded: LocalCaptioner, tiny_vlm_dir: Path
) -> None:
    # The images' prompts differ in length (tiles), so a batch of them is padded.
    lengths = {
        len(loaded._processor(text=[loaded._chat_prompt], images=[[image]])["input_ids"][0])
        for image in images()
    }
    assert len(lengths) > 1
    batched = loaded.describe_images(images())
    assert loaded.describe_images(images()) == batched
    # One at a time (no padding) gives the same captions as in a left-padded batch.
    single = local_captioner(tiny_vlm_dir, batch_size=1)
    assert single.describe_images(images()) == batched


def test_max_new_tokens_limits_the_caption(tiny_vlm_dir: Path) -> None:
    one = local_captioner(tiny_vlm_dir, max_new_tokens=1).describe_images(images()[:1])
    assert len(one) == 1 and len(re.findall(r"\w+|[^\w\s]", one[0])) == 1


def test_load_is_idempotent(loaded: LocalCaptioner) -> None:
    model = loaded._model
    loaded.load()
    assert loaded._model is model
    assert loaded.device == "cpu"
    assert loaded.describe_images([]) == []


def test_chat_template_carries_the_prompt(tiny_vlm_dir: Path) -> None:
    captioner = local_captioner(tiny_vlm_dir, language="zh", prompt="Describe this image .", tags=0)
    captioner.load()
    assert captioner._chat_prompt == (
        "<|im_start|>User:<image>Describe this image .<end_of_utterance>\nAssistant:"
    )
    # By default the model is also asked for a tag line, in the caption's language.
    tagged = local_captioner(tiny_vlm_dir, language="zh", prompt="Describe this image .")
    tagged.load()
    assert tagged._chat_prompt == (
        "<|im_start|>User:<image>Describe this image ."
        f"{tag_prompt('zh', 8)}<end_of_utterance>\nAssistant:"
    )
    assert captioner._processor.tokenizer.padding_side == "left"


def test_empty_caption_is_an_error(tiny_vlm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    captioner = local_captioner(tiny_vlm_dir)
    captioner.load()
    # A model that only writes special tokens decodes to nothing.
    monkeypatch.setattr(captioner._processor, "batch_decode", lambda ids, **kw: [" "] * len(ids))
    with pytest.raises(
        CaptionError, match=r"vlm_caption: model '.*idefics3-tiny.*' wrote an empty"
    ):
        captioner.describe_images(images()[:1])


def test_missing_model_says_which_and_why(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    captioner = local_captioner(missing, method="vlm2")
    with pytest.raises(ModelLoadError) as info:
        captioner.load()
    text = str(info.value)
    assert text == f"vlm2: cannot load vision-language model '{missing}': no such directory"
    assert isinstance(info.value, ServiceUnavailable)
    # Still not loaded: a later call (weights installed meanwhile) tries again.
    assert captioner._model is None


def test_hub_model_offline_names_the_repo() -> None:
    captioner = local_captioner("HuggingFaceTB/no-such-vlm-for-imgdex-tests")
    with pytest.raises(ModelLoadError, match="'HuggingFaceTB/no-such-vlm-for-imgdex-tests'"):
        captioner.load()


def test_not_a_vision_language_model(tmp_path: Path) -> None:
    from transformers import BertConfig

    BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=8).save_pretrained(tmp_path)  # fmt: skip
    with pytest.raises(ModelLoadError, match="cannot load vision-language model"):
        local_captioner(tmp_path).load()
