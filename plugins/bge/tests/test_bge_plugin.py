"""The plugin as the core sees it: entry point, registration, config and load errors."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import imgdex_bge
from imgdex import Config, Embedder, PluginSettings
from imgdex.errors import ConfigError
from imgdex_bge import BgeConfig, BgeEmbedder, ModelLoadError, default_query_instruction
from imgdex_bge.config import INSTRUCTION_EN, INSTRUCTION_ZH

MakeEmbedder = Callable[..., BgeEmbedder]


def register(raw: dict[str, Any], cache_dir: Path | None = None) -> BgeEmbedder:
    registered: list[Embedder] = []
    imgdex_bge.register_embedders(registered.append, PluginSettings("bge", raw, cache_dir))
    assert len(registered) == 1
    embedder = registered[0]
    assert isinstance(embedder, BgeEmbedder)
    return embedder


def test_entry_point_is_installed() -> None:
    (entry,) = [e for e in importlib.metadata.entry_points(group="imgdex") if e.name == "bge"]
    assert entry.value == "imgdex_bge"
    assert entry.dist is not None and entry.dist.name == "imgdex-bge"
    assert entry.load() is imgdex_bge


def test_core_registers_the_embedder_without_loading_it(tmp_path: Path) -> None:
    from imgdex.plugins import PluginHost

    host = PluginHost(Config(data_dir=str(tmp_path)))
    record = host.add("bge", imgdex_bge)
    assert record.state == "loaded", record.error
    (embedder,) = record.embedders
    assert isinstance(embedder, BgeEmbedder)
    assert embedder.index_name == "bge_text_v1"
    assert embedder.model == "BAAI/bge-small-zh-v1.5"
    assert embedder.version == "1"
    assert embedder.stores == "text"
    assert embedder.query_modalities == frozenset({"text"})
    assert embedder.metric == "cosine"
    assert embedder.dimension is None and not embedder.loaded
    assert embedder.cache_dir == tmp_path.resolve() / "cache" / "bge"
    assert not (tmp_path / "cache").exists()


def test_defaults() -> None:
    config = BgeConfig()
    assert config.model == "BAAI/bge-small-zh-v1.5"
    assert config.pooling == "cls"
    assert config.instruction == INSTRUCTION_ZH
    assert (config.device, config.batch_size, config.max_length) == ("auto", 32, 512)
    assert config.threads is None and config.cache_dir is None


@pytest.mark.parametrize(
    ("raw", "index_name"),
    [({"version": "2"}, "bge_text_v2"), ({"version": 3}, "bge_text_v3"), ({}, "bge_text_v1")],
)
def test_index_name_follows_the_version(raw: dict[str, Any], index_name: str) -> None:
    embedder = register(raw)
    assert embedder.index_name == index_name
    assert embedder.version == index_name.removeprefix("bge_text_v")


def test_cache_dir_can_be_overridden(tmp_path: Path) -> None:
    embedder = register({"cache_dir": str(tmp_path / "onnx")}, cache_dir=tmp_path / "default")
    assert embedder.cache_dir == tmp_path / "onnx"


@pytest.mark.parametrize(
    ("model", "instruction"),
    [
        ("BAAI/bge-small-zh-v1.5", INSTRUCTION_ZH),
        ("BAAI/bge-large-zh-v1.5", INSTRUCTION_ZH),
        ("/models/bge-base-zh/", INSTRUCTION_ZH),
        ("BAAI/bge-large-en-v1.5", INSTRUCTION_EN),
        ("BAAI/bge-m3", ""),
        ("sentence-transformers/all-MiniLM-L6-v2", ""),
    ],
)
def test_default_query_instruction_depends_on_the_model(model: str, instruction: str) -> None:
    assert default_query_instruction(model) == instruction
    assert register({"model": model}).query_instruction == instruction


def test_query_instruction_can_be_set_or_disabled() -> None:
    assert register({"query_instruction": ""}).query_instruction == ""
    assert register({"query_instruction": "Q: "}).query_instruction == "Q: "


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"modle": "x"}, "plugins.bge.modle"),
        ({"pooling": "max"}, "plugins.bge.pooling"),
        ({"device": "gpu"}, "plugins.bge.device"),
        ({"batch_size": 0}, "plugins.bge.batch_size"),
        ({"max_length": "long"}, "plugins.bge.max_length"),
        ({"threads": 0}, "plugins.bge.threads"),
        ({"version": "a/b"}, "plugins.bge.version"),
        ({"model": None}, "plugins.bge.model"),
    ],
)
def test_bad_config_is_an_error_naming_the_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        register(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [({"pooling": "max"}, "plugins.bge.pooling"), ({"modle": "x"}, "plugins.bge.modle: unknown")],
)
def test_bad_config_stops_the_core_naming_the_key(
    tmp_path: Path, raw: dict[str, Any], message: str
) -> None:
    from imgdex.plugins import PluginHost

    config = Config(data_dir=str(tmp_path), plugins={"bge": raw})
    with pytest.raises(ConfigError, match=re.escape(message)):
        PluginHost(config).add("bge", imgdex_bge)


def load_error(model: str, tmp_path: Path) -> str:
    embedder = register({"model": model}, cache_dir=tmp_path / "cache")
    with pytest.raises(ModelLoadError) as info:
        embedder.load()
    assert not embedder.loaded and embedder.dimension is None
    return str(info.value)


def test_missing_local_model_says_which_and_why(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    message = load_error(str(missing), tmp_path)
    assert str(missing) in message and "not found" in message


def test_unreachable_hub_model_says_which_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    message = load_error("imgdex-test/no-such-model", tmp_path)
    assert "'imgdex-test/no-such-model'" in message
    assert "could not be found in the Hugging Face cache or downloaded" in message
    assert "HF_HUB_OFFLINE" in message  # the hub's own reason
    assert "`imgdex models download`" in message and "`hf download REPO`" in message


def test_model_directory_without_weights_says_so(tiny_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(tiny_model, copy)
    (copy / "model.safetensors").unlink()
    message = load_error(str(copy), tmp_path)
    assert str(copy) in message and "no weights" in message


def test_a_failed_load_can_be_retried(
    make_embedder: MakeEmbedder, tiny_model: Path, tmp_path: Path
) -> None:
    # The core retries failed loads later: weights that arrive in between are picked up.
    target = tmp_path / "arrives-later"
    embedder: BgeEmbedder = make_embedder(model=str(target), cache=tmp_path / "cache")
    with pytest.raises(ModelLoadError):
        embedder.load()
    shutil.copytree(tiny_model, target)
    embedder.load()
    assert embedder.loaded and embedder.dimension == 32


def _cuda_usable() -> bool:
    import onnxruntime

    from imgdex_bge.runtime import _cuda_usable as usable

    return usable(onnxruntime)


@pytest.mark.skipif(_cuda_usable(), reason="a working CUDA provider is present")
def test_explicit_cuda_without_cuda_is_a_clear_error(
    make_embedder: MakeEmbedder, tmp_path: Path
) -> None:
    embedder = make_embedder(device="cuda", cache=tmp_path / "cache")
    with pytest.raises(ModelLoadError, match="CUDA"):
        embedder.load()
    auto = make_embedder(device="auto", cache=tmp_path / "cache")
    auto.load()  # auto falls back to the CPU
    assert auto.providers == ["CPUExecutionProvider"]


def test_registering_passes_the_core_checks(tmp_path: Path) -> None:
    # A hook implementation must not need anything but its section: no model access.
    settings = PluginSettings("bge", {"model": str(tmp_path / "not-there-yet")}, tmp_path)
    calls: list[Embedder] = []
    hook: Callable[..., None] = imgdex_bge.register_embedders
    hook(register=calls.append, config=settings)
    assert [e.index_name for e in calls] == ["bge_text_v1"]
