"""The siglip2 plugin, end to end on tiny random checkpoints of both SigLIP architectures."""

from __future__ import annotations

import importlib.metadata
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import imgdex_siglip2
from imgdex.config import Config, PluginSettings
from imgdex.errors import ConfigError
from imgdex.providers import Embedder
from imgdex_siglip2 import DEFAULT_MODEL, Siglip2Embedder, Siglip2LoadError

from .conftest import DIM, TEXT_POSITIONS

TEXTS = [
    "a cat",
    "two dogs playing in the snow",  # longer than the tiny tower's 16 positions: truncated
    "x",
    "",
    "red car 42",
]
TOL = 1e-5


def make(source: Path | str, **settings: Any) -> Siglip2Embedder:
    """Build the embedder the way the core does: through the plugin's hook."""
    registered: list[Embedder] = []
    raw = {"model": str(source), "device": "cpu", "max_text_length": TEXT_POSITIONS, **settings}
    imgdex_siglip2.register_embedders(
        register=registered.append, config=PluginSettings("siglip2", raw)
    )
    assert len(registered) == 1
    embedder = registered[0]
    assert isinstance(embedder, Siglip2Embedder)
    return embedder


def images(n: int, seed: int = 0) -> list[Image.Image]:
    """Noise images of varied sizes and aspect ratios (NaFlex resizes each differently)."""
    rng = np.random.default_rng(seed)
    sizes = [(40, 30), (17, 60), (64, 64), (33, 21), (90, 45), (28, 28), (50, 80)]
    return [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        for w, h in (sizes[i % len(sizes)] for i in range(n))
    ]


def assert_unit_rows(vectors: np.ndarray, n: int) -> None:
    assert vectors.shape == (n, DIM)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=TOL)


@pytest.fixture
def load_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Counts (and slows down) `AutoModel.from_pretrained`, so races would show."""
    import transformers

    original = transformers.AutoModel.from_pretrained
    calls: list[str] = []

    def counting(source: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(source)
        time.sleep(0.2)
        return original(source, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", counting)
    yield calls


# --- registration -----------------------------------------------------------------


def test_registers_through_hook_without_loading(naflex_dir: Path, load_calls: list[str]) -> None:
    embedder = make(naflex_dir)
    assert embedder.index_name == "siglip2_image_v1"
    assert embedder.model == str(naflex_dir)
    assert embedder.version == "1"
    assert embedder.stores == "image"
    assert embedder.query_modalities == frozenset({"image", "text"})
    assert embedder.metric == "cosine"
    assert embedder.dimension is None
    assert load_calls == []


def test_defaults_name_the_base_model() -> None:
    registered: list[Embedder] = []
    imgdex_siglip2.register_embedders(
        register=registered.append, config=PluginSettings("siglip2", {})
    )
    [embedder] = registered
    assert embedder.model == DEFAULT_MODEL == "google/siglip2-base-patch16-224"
    assert embedder.index_name == "siglip2_image_v1"


@pytest.mark.parametrize(
    ("version", "name"), [(2, "siglip2_image_v2"), ("3b", "siglip2_image_v3b")]
)
def test_version_goes_into_the_index_name(naflex_dir: Path, version: object, name: str) -> None:
    embedder = make(naflex_dir, version=version)
    assert embedder.index_name == name
    assert embedder.version == str(version)


def test_entry_point_is_installed() -> None:
    [ep] = [ep for ep in importlib.metadata.entry_points(group="imgdex") if ep.name == "siglip2"]
    assert ep.value == "imgdex_siglip2"
    assert ep.dist is not None and ep.dist.name == "imgdex-siglip2"
    assert ep.load() is imgdex_siglip2


def test_core_plugin_host_registers_it(naflex_dir: Path) -> None:
    from imgdex.plugins import ENTRY_POINT_GROUP, PluginHost

    others = {e.name for e in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    config = Config(plugins={"siglip2": {"model": str(naflex_dir), "device": "cpu"}})
    host = PluginHost(config)
    host.load_entry_points(exclude=others - {"siglip2"})
    record = host.records["siglip2"]
    assert record.state == "loaded", record.error
    [embedder] = record.embedders
    assert embedder.index_name == "siglip2_image_v1"
    assert embedder.model == str(naflex_dir)


# --- configuration errors ---------------------------------------------------------


def test_unknown_key_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"plugins\.siglip2\.modle"):
        make("x", modle="google/siglip2-base-patch16-224")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("batch_size", 0),
        ("max_text_length", "long"),
        ("device", "gpu"),
        ("dtype", "float8"),
        ("model", None),
        ("version", 1.5),
    ],
)
def test_bad_values_are_config_errors_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"plugins\.siglip2\.{key}"):
        make("x", **{key: value})


# --- loading ----------------------------------------------------------------------


def test_missing_directory_fails_clearly(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    embedder = make(missing)
    with pytest.raises(Siglip2LoadError) as info:
        embedder.load()
    message = str(info.value)
    assert "siglip2" in message
    assert repr(str(missing)) in message
    assert "does not exist" in message
    assert embedder.dimension is None
    with pytest.raises(Siglip2LoadError):  # and embedding says the same, not AttributeError
        embedder.embed_texts(["a cat"], query=True)


def test_directory_without_weights_fails_clearly(tmp_path: Path) -> None:
    embedder = make(tmp_path)
    with pytest.raises(Siglip2LoadError, match=rf"cannot load model '{tmp_path}'"):
        embedder.load()


def test_uncached_repo_id_fails_clearly_offline() -> None:
    embedder = make("imgdex-tests/no-such-siglip")
    with pytest.raises(Siglip2LoadError) as info:
        embedder.load()
    assert "'imgdex-tests/no-such-siglip'" in str(info.value)
    assert "HF_HUB_OFFLINE" in str(info.value)
    # The hint names the command the installed huggingface_hub ships (`hf`, not
    # `huggingface-cli`), and imgdex's own.
    assert "`hf download REPO`" in str(info.value) and "huggingface-cli" not in str(info.value)
    assert "`imgdex models download`" in str(info.value)


def test_text_length_beyond_the_tower_fails(naflex_dir: Path) -> None:
    embedder = make(naflex_dir, max_text_length=TEXT_POSITIONS * 2)
    with pytest.raises(Siglip2LoadError, match="max_text_length 32 exceeds"):
        embedder.load()


def test_loads_once_under_concurrency(naflex_dir: Path, load_calls: list[str]) -> None:
    embedder = make(naflex_dir)
    barrier = threading.Barrier(8)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(embedder.embed_texts(["a cat"], query=True))
        except BaseException as exc:  # surfaced below; a thread must not swallow it
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(load_calls) == 1
    for result in results[1:]:
        np.testing.assert_allclose(result, results[0], atol=TOL)
    embedder.load()  # idempotent
    assert len(load_calls) == 1
    assert embedder.dimension == DIM


# --- embeddings (both architectures) -----------------------------------------------


def test_image_vectors(model_dir: Path) -> None:
    embedder = make(model_dir)
    vectors = embedder.embed_images(images(5))
    assert embedder.dimension == DIM  # read from the model config, not assumed
    assert_unit_rows(vectors, 5)
    similarity = vectors @ vectors.T
    assert (similarity[~np.eye(5, dtype=bool)] < 0.9999).all()  # different images differ


def test_text_vectors_share_the_image_space(model_dir: Path) -> None:
    embedder = make(model_dir)
    texts = embedder.embed_texts(TEXTS, query=True)
    assert_unit_rows(texts, len(TEXTS))
    assert texts.shape[1] == embedder.embed_images(images(1)).shape[1] == embedder.dimension
    assert len({row.tobytes() for row in texts}) == len(TEXTS)
    # A search query and a stored text embed the same way (no prompts in SigLIP).
    np.testing.assert_array_equal(texts, embedder.embed_texts(TEXTS, query=False))


def test_image_batches_match_single(model_dir: Path) -> None:
    batch = images(7)
    embedder = make(model_dir)
    together = embedder.embed_images(batch)
    alone = np.concatenate([embedder.embed_images([image]) for image in batch])
    split = make(model_dir, batch_size=3).embed_images(batch)
    np.testing.assert_allclose(split, together, atol=TOL)
    np.testing.assert_allclose(alone, together, atol=TOL)


def test_text_batches_match_single(model_dir: Path) -> None:
    embedder = make(model_dir)
    together = embedder.embed_texts(TEXTS, query=True)
    alone = np.concatenate([embedder.embed_texts([t], query=True) for t in TEXTS])
    split = make(model_dir, batch_size=2).embed_texts(TEXTS, query=True)
    np.testing.assert_allclose(alone, together, atol=TOL)
    np.testing.assert_allclose(split, together, atol=TOL)


def test_images_follow_the_reference_recipe(model_dir: Path) -> None:
    """Same numbers as calling transformers by hand with the checkpoint's own processor."""
    import torch
    from transformers import AutoModel, AutoProcessor

    batch = images(3, seed=5)
    model = AutoModel.from_pretrained(model_dir).eval()
    inputs = AutoProcessor.from_pretrained(model_dir).image_processor(batch, return_tensors="pt")
    with torch.inference_mode():
        expected = model.get_image_features(**inputs).pooler_output
    expected = torch.nn.functional.normalize(expected, dim=-1).numpy()
    np.testing.assert_allclose(make(model_dir).embed_images(batch), expected, atol=TOL)


def test_texts_follow_the_reference_recipe(model_dir: Path) -> None:
    """SigLIP's training recipe: right padding to the fixed length, no attention mask."""
    import torch
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(model_dir).eval()
    tokenizer = AutoProcessor.from_pretrained(model_dir).tokenizer
    tokenizer.padding_side = "right"
    ids = tokenizer(
        TEXTS,
        padding="max_length",
        max_length=TEXT_POSITIONS,
        truncation=True,
        return_tensors="pt",
    )["input_ids"]
    with torch.inference_mode():
        expected = model.get_text_features(input_ids=ids).pooler_output
    expected = torch.nn.functional.normalize(expected, dim=-1).numpy()
    np.testing.assert_allclose(make(model_dir).embed_texts(TEXTS, query=True), expected, atol=TOL)


def test_max_text_length_pads_and_truncates(naflex_dir: Path) -> None:
    short = make(naflex_dir, max_text_length=8)
    same_prefix = short.embed_texts(["abcdefgh", "abcdefghijk", "abcdefghzzzz"], query=True)
    np.testing.assert_allclose(same_prefix[1:], same_prefix[[0, 0]], atol=TOL)
    # The padded length is part of the input: a different length is a different vector.
    longer = make(naflex_dir, max_text_length=12).embed_texts(["abcdefgh"], query=True)
    assert float(longer[0] @ same_prefix[0]) < 0.9999


def test_batch_size_bounds_each_model_call(
    naflex_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import Siglip2Model

    sizes: list[int] = []
    original = Siglip2Model.get_image_features

    def recording(self: Any, pixel_values: Any, *args: Any, **kwargs: Any) -> Any:
        sizes.append(len(pixel_values))
        return original(self, pixel_values, *args, **kwargs)

    monkeypatch.setattr(Siglip2Model, "get_image_features", recording)
    make(naflex_dir, batch_size=2).embed_images(images(5))
    assert sizes == [2, 2, 1]


def test_empty_inputs(naflex_dir: Path) -> None:
    embedder = make(naflex_dir)
    assert embedder.embed_images([]).shape == (0, DIM)
    assert embedder.embed_texts([], query=True).shape == (0, DIM)
