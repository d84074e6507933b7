"""The Qwen3 plugin, end to end on a tiny random model, against hand-computed vectors."""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

import imgdex_qwen3
from imgdex.config import Config, PluginSettings
from imgdex.errors import ConfigError
from imgdex.plugins import PluginHost
from imgdex_qwen3 import DEFAULT_INSTRUCTION, ModelLoadError, Qwen3Embedder
from imgdex_qwen3.embedder import format_query, left_pad

DOCS = [
    "an orange cat sits on the windowsill",
    "dog",
    "my ginger pet in sunlight , indoor scene",
    "red car parked near old house at dusk",
    "green field",
]
Vector = npt.NDArray[np.float32]


def make_embedder(model_dir: Path, **raw: Any) -> Qwen3Embedder:
    """Build the embedder the way the core does: through the hook, from a raw section."""
    found: list[Any] = []
    settings = PluginSettings("qwen3", {"model": str(model_dir), "device": "cpu", **raw})
    imgdex_qwen3.register_embedders(register=found.append, config=settings)
    assert len(found) == 1 and isinstance(found[0], Qwen3Embedder)
    return found[0]


@pytest.fixture(scope="session")
def reference(tiny_model_dir: Path) -> Callable[..., Vector]:
    """One text, no padding, straight through transformers: the un-normalised pooled vector."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModel.from_pretrained(tiny_model_dir).eval()

    def run(text: str, *, layer: int = -1, pooling: str = "last_token") -> Vector:
        ids = tokenizer(text)["input_ids"]
        assert ids[-1] == tokenizer.pad_token_id  # the <|endoftext|> the model pools on
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
        hidden = out.last_hidden_state if layer == -1 else out.hidden_states[layer]
        vec = hidden[0, -1] if pooling == "last_token" else hidden[0].mean(dim=0)
        result: Vector = vec.numpy().astype(np.float32)
        return result

    return run


def unit(vec: Vector) -> Vector:
    return vec / np.linalg.norm(vec)


def assert_close(a: Vector, b: Vector) -> None:
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-5)


# --- registration ---------------------------------------------------------------


def test_entry_point_is_installed() -> None:
    (ep,) = [e for e in importlib.metadata.entry_points(group="imgdex") if e.name == "qwen3"]
    assert ep.value == "imgdex_qwen3"
    assert ep.load() is imgdex_qwen3


def test_core_plugin_host_registers_it(tiny_model_dir: Path) -> None:
    host = PluginHost(Config(plugins={"qwen3": {"model": str(tiny_model_dir), "version": 2}}))
    host.load_entry_points()
    record = host.records["qwen3"]
    assert record.state == "loaded", record.error
    (embedder,) = record.embedders
    assert isinstance(embedder, Qwen3Embedder)
    assert embedder.index_name == "qwen3_text_v2"
    assert (embedder.stores, embedder.query_modalities) == ("text", frozenset({"text"}))
    assert embedder.model == str(tiny_model_dir) and embedder.version == "2"


def test_default_model_and_index_name() -> None:
    embedder = make_embedder(Path("unused"), model=None)
    assert embedder.model == "Qwen/Qwen3-Embedding-0.6B"
    assert embedder.index_name == "qwen3_text_v1"
    assert embedder.settings.instruction == DEFAULT_INSTRUCTION


def test_registration_loads_nothing(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("weights loaded during registration")

    monkeypatch.setattr(AutoModel, "from_pretrained", refuse)
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", refuse)
    embedder = make_embedder(tiny_model_dir)
    assert not embedder.loaded
    assert embedder.dimension is None  # unknown until the model config is read


def test_concurrent_loads_load_once(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    embedder = make_embedder(tiny_model_dir)
    calls = 0
    real_load = embedder._load

    def counting_load() -> Any:
        nonlocal calls
        calls += 1
        return real_load()

    monkeypatch.setattr(embedder, "_load", counting_load)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            embedder.load()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert calls == 1
    embedder.load()  # idempotent
    assert calls == 1 and embedder.loaded


# --- configuration errors -------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"poolin": "mean"}, "plugins.qwen3.poolin"),
        ({"pooling": "cls"}, "plugins.qwen3.pooling"),
        ({"device": "gpu"}, "plugins.qwen3.device"),
        ({"dtype": "int8"}, "plugins.qwen3.dtype"),
        ({"dimensions": 0}, "plugins.qwen3.dimensions"),
        ({"batch_size": 0}, "plugins.qwen3.batch_size"),
    ],
)
def test_bad_config_names_the_key(tiny_model_dir: Path, raw: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        make_embedder(tiny_model_dir, **raw)


def test_dimensions_above_hidden_size(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("weights loaded before the settings were checked")

    monkeypatch.setattr(AutoModel, "from_pretrained", refuse)
    embedder = make_embedder(tiny_model_dir, dimensions=64)
    with pytest.raises(ConfigError, match=r"plugins\.qwen3\.dimensions: 64 .* hidden size 32"):
        embedder.load()
    assert not embedder.loaded


@pytest.mark.parametrize("layer", [3, -4])
def test_layer_out_of_range(tiny_model_dir: Path, layer: int) -> None:
    with pytest.raises(ConfigError, match=r"plugins\.qwen3\.layer: .* 2 layers"):
        make_embedder(tiny_model_dir, layer=layer).load()


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    embedder = make_embedder(missing)
    with pytest.raises(ModelLoadError, match=f"{missing}.*no such directory"):
        embedder.load()
    assert not embedder.loaded


def test_directory_without_weights(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=f"cannot load model '{tmp_path}'"):
        make_embedder(tmp_path).load()


def test_unreachable_hub_model(tiny_model_dir: Path) -> None:
    # The tokenizer is found locally, so the error must be about the weights' repo id.
    embedder = make_embedder(Path("nobody/qwen3-missing"), tokenizer=str(tiny_model_dir))
    with pytest.raises(
        ModelLoadError, match=r"(?s)cannot load model 'nobody/qwen3-missing'.*offline"
    ):
        embedder.load()


# --- vectors --------------------------------------------------------------------


def test_shapes_dimension_and_norm(tiny_model_dir: Path) -> None:
    embedder = make_embedder(tiny_model_dir, dtype="float32")
    vectors = embedder.embed_texts(DOCS, query=False)
    assert embedder.dimension == 32  # the model's hidden size, read from its config
    assert vectors.shape == (len(DOCS), 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    # Different texts really are different vectors (the model is not degenerate).
    sims = vectors @ vectors.T
    assert sims[~np.eye(len(DOCS), dtype=bool)].max() < 0.99
    assert embedder.embed_texts([], query=True).shape == (0, 32)


def test_left_pad_puts_padding_first() -> None:
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=1)
    assert ids.tolist() == [[5, 6, 7], [1, 1, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_documents_are_last_token_without_prefix(
    tiny_model_dir: Path, reference: Callable[..., Vector]
) -> None:
    embedder = make_embedder(tiny_model_dir)
    # Batched with longer texts, "dog" is padded; it must still pool its own last token.
    vectors = embedder.embed_texts(DOCS, query=False)
    for text, vector in zip(DOCS, vectors, strict=True):
        assert_close(vector, unit(reference(text)))


def test_queries_get_the_instruction(
    tiny_model_dir: Path, reference: Callable[..., Vector]
) -> None:
    embedder = make_embedder(tiny_model_dir)
    text = "orange cat"
    query = embedder.embed_texts([text], query=True)[0]
    document = embedder.embed_texts([text], query=False)[0]
    prompt = f"Instruct: {DEFAULT_INSTRUCTION}\nQuery:{text}"
    assert format_query(DEFAULT_INSTRUCTION, text) == prompt
    assert_close(query, unit(reference(prompt)))
    assert not np.allclose(query, document, atol=1e-3)

    custom = make_embedder(tiny_model_dir, instruction="retrieve pet image descriptions")
    other = custom.embed_texts([text], query=True)[0]
    assert_close(other, unit(reference(f"Instruct: retrieve pet image descriptions\nQuery:{text}")))

    bare = make_embedder(tiny_model_dir, instruction=None)
    assert_close(bare.embed_texts([text], query=True)[0], document)


def test_batched_equals_single(tiny_model_dir: Path) -> None:
    embedder = make_embedder(tiny_model_dir, batch_size=3)
    texts = [*DOCS, "cat", "the old house near the green field in sunlight at dusk"]
    for query in (False, True):
        batched = embedder.embed_texts(texts, query=query)
        single = np.stack([embedder.embed_texts([t], query=query)[0] for t in texts])
        assert_close(batched, single)


def test_matryoshka_truncation(tiny_model_dir: Path, reference: Callable[..., Vector]) -> None:
    embedder = make_embedder(tiny_model_dir, dimensions=16)
    assert embedder.dimension == 16
    vectors = embedder.embed_texts(DOCS, query=False)
    assert vectors.shape == (len(DOCS), 16)
    for text, vector in zip(DOCS, vectors, strict=True):
        assert_close(vector, unit(reference(text)[:16]))  # truncate, then re-normalise


@pytest.mark.parametrize("pooling", ["last_token", "mean"])
def test_hidden_layer_option(
    tiny_model_dir: Path, reference: Callable[..., Vector], pooling: str
) -> None:
    embedder = make_embedder(tiny_model_dir, layer=-2, pooling=pooling, version="seed")
    assert embedder.index_name == "qwen3_text_vseed"
    vectors = embedder.embed_texts(DOCS, query=False)
    final = make_embedder(tiny_model_dir, pooling=pooling).embed_texts(DOCS, query=False)
    for text, vector, last in zip(DOCS, vectors, final, strict=True):
        assert_close(vector, unit(reference(text, layer=-2, pooling=pooling)))
        assert not np.allclose(vector, last, atol=1e-3)


def test_mean_pooling_ignores_padding(
    tiny_model_dir: Path, reference: Callable[..., Vector]
) -> None:
    vectors = make_embedder(tiny_model_dir, pooling="mean").embed_texts(DOCS, query=False)
    for text, vector in zip(DOCS, vectors, strict=True):
        assert_close(vector, unit(reference(text, pooling="mean")))


def test_truncation_keeps_the_final_token(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tokenizer(DOCS[0], truncation=True, max_length=4)["input_ids"]
    assert len(ids) == 4 and ids[-1] == tokenizer.pad_token_id
    truncated = make_embedder(tiny_model_dir, max_length=4).embed_texts([DOCS[0]], query=False)
    prefix = make_embedder(tiny_model_dir).embed_texts(["an orange cat"], query=False)
    assert_close(truncated, prefix)
