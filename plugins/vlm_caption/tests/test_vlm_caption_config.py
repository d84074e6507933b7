"""The config section, several instances, and registration through the core's plugin host."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import imgdex_vlm_caption
from imgdex.config import Config, PluginSettings, decode_config
from imgdex.errors import ConfigError
from imgdex.plugins import PluginHost
from imgdex_vlm_caption import ApiCaptioner, LocalCaptioner, build_describers
from imgdex_vlm_caption.config import DEFAULT_LOCAL_MODEL, DEFAULT_PROMPTS

THREE = {
    "language": "zh",
    "max_new_tokens": 40,
    "instances": [
        {
            "method": "vlm1",
            "backend": "api",
            "endpoint": "http://gpu-box:8000/v1/",
            "model": "Qwen/Qwen2.5-VL-7B-Instruct",
            "api_key": "sk-1",
            "max_image_side": 512,
        },
        {
            "method": "vlm2",
            "backend": "api",
            "endpoint": "http://ollama:11434/v1",
            "model": "llava",
        },
        {"method": "vlm_en", "language": "en", "enabled": True},
        {"method": "vlm_off", "enabled": False},
    ],
}


def build(raw: dict[str, Any]) -> list[ApiCaptioner | LocalCaptioner]:
    return build_describers(PluginSettings("vlm_caption", raw))


def test_empty_section_gives_the_default_local_describer() -> None:
    (describer,) = build({})
    assert isinstance(describer, LocalCaptioner)
    assert (describer.method, describer.model) == ("vlm_caption", DEFAULT_LOCAL_MODEL)
    settings = describer.settings
    assert settings.prompt == DEFAULT_PROMPTS["en"]
    assert (settings.device, settings.dtype, settings.max_new_tokens) == ("auto", "auto", 96)


def test_enabled_and_model_are_always_accepted() -> None:
    (describer,) = build({"enabled": False, "model": "/models/smolvlm", "method": "caption"})
    assert (describer.method, describer.model) == ("caption", "/models/smolvlm")


def test_several_instances_with_inheritance() -> None:
    describers = build(THREE)
    by_method = {d.method: d for d in describers}
    assert list(by_method) == ["vlm_caption", "vlm1", "vlm2", "vlm_en"]  # vlm_off skipped

    top = by_method["vlm_caption"]
    assert isinstance(top, LocalCaptioner)
    assert top.settings.prompt == DEFAULT_PROMPTS["zh"]
    assert top.settings.max_new_tokens == 40

    vlm1 = by_method["vlm1"]
    assert isinstance(vlm1, ApiCaptioner)
    assert vlm1.url == "http://gpu-box:8000/v1/chat/completions"
    assert vlm1.model == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert (vlm1.settings.api_key, vlm1.settings.max_image_side) == ("sk-1", 512)
    assert vlm1.settings.prompt == DEFAULT_PROMPTS["zh"]  # inherited language
    assert vlm1.settings.max_new_tokens == 40

    vlm2 = by_method["vlm2"]
    assert isinstance(vlm2, ApiCaptioner)
    assert vlm2.settings.api_key is None  # not vlm1's key, nor anyone's
    assert vlm2.settings.max_image_side == 768

    vlm_en = by_method["vlm_en"]
    assert isinstance(vlm_en, LocalCaptioner)
    assert vlm_en.model == DEFAULT_LOCAL_MODEL
    assert vlm_en.settings.prompt == DEFAULT_PROMPTS["en"]


def test_api_key_is_inherited_only_with_the_endpoint() -> None:
    raw = {
        "backend": "api",
        "endpoint": "https://api.example.com/v1",
        "model": "gpt-4o-mini",
        "api_key_env": "OPENAI_API_KEY",
        "instances": [
            {"method": "same", "prompt": "Short caption."},
            {"method": "other", "endpoint": "http://vllm:8000/v1"},
            {"method": "local", "backend": "local"},
        ],
    }
    same, other, local = build(raw)[1:]
    assert (same.settings.api_key_env, same.model) == ("OPENAI_API_KEY", "gpt-4o-mini")
    assert same.settings.prompt == "Short caption."
    assert (other.settings.api_key_env, other.model) == (None, "gpt-4o-mini")
    # A local instance does not inherit an API model name.
    assert local.model == DEFAULT_LOCAL_MODEL


def test_explicit_prompt_is_inherited_unless_a_language_is_chosen() -> None:
    raw = {
        "prompt": "Caption it.",
        "instances": [{"method": "a"}, {"method": "b", "language": "zh"}],
    }
    prompts = [d.settings.prompt for d in build(raw)]
    assert prompts == ["Caption it.", "Caption it.", DEFAULT_PROMPTS["zh"]]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"modle": "x"}, "plugins.vlm_caption.modle: unknown key"),
        ({"instances": [{"method": "a", "endpont": "x"}]}, "instances[0].endpont: unknown key"),
        ({"instances": [{"model": "x"}]}, "instances[0]"),
        ({"language": "fr"}, "plugins.vlm_caption.language"),
        ({"backend": "cloud"}, "plugins.vlm_caption.backend"),
        ({"max_new_tokens": 0}, "plugins.vlm_caption.max_new_tokens"),
        ({"method": "bad/name"}, "plugins.vlm_caption.method"),
        ({"instances": [{"method": "a.."}]}, "plugins.vlm_caption.instances[0].method"),
        ({"backend": "api", "model": "m"}, "plugins.vlm_caption.endpoint: required"),
        (
            {"backend": "api", "endpoint": "http://h/v1"},
            "plugins.vlm_caption.model: required when backend is api",
        ),
        (
            {"instances": [{"method": "x", "backend": "api", "endpoint": "ftp://h"}]},
            "plugins.vlm_caption.instances[0].endpoint: expected an http",
        ),
        (
            {"instances": [{"method": "vlm1"}, {"method": "vlm1"}]},
            "instances[1].method: 'vlm1' is already used by plugins.vlm_caption.instances[0]",
        ),
        (
            {"instances": [{"method": "vlm_caption"}]},
            "instances[0].method: 'vlm_caption' is already used by plugins.vlm_caption",
        ),
        ({"prompt": "  "}, "plugins.vlm_caption.prompt: must not be empty"),
    ],
)
def test_bad_config_names_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(raw)
    assert message in str(info.value)


def test_yaml_example_from_the_readme() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    text = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = decode_config(text.encode(), "README.md")
    describers = build_describers(config.plugin_settings("vlm_caption"))
    assert [d.method for d in describers] == ["vlm_caption", "vlm_qwen", "vlm_openai"]
    assert [type(d).__name__ for d in describers] == ["LocalCaptioner", *["ApiCaptioner"] * 2]
    assert describers[2].settings.api_key_env == "OPENAI_API_KEY"


# --- registration through the core ----------------------------------------------------


def test_plugin_host_registers_every_instance() -> None:
    host = PluginHost(Config(plugins={"vlm_caption": THREE}))
    record = host.add("vlm_caption", imgdex_vlm_caption)
    assert record.state == "loaded", record.error
    assert record.kinds == ["describer"]
    assert [d.method for d in record.describers] == ["vlm_caption", "vlm1", "vlm2", "vlm_en"]
    assert [d.method for _, d in host.describers()] == [d.method for d in record.describers]


def test_plugin_host_stops_at_a_bad_key_naming_it() -> None:
    host = PluginHost(Config(plugins={"vlm_caption": {"instances": [{"method": "a", "x": 1}]}}))
    with pytest.raises(ConfigError, match=r"plugins\.vlm_caption\.instances\[0\]\.x: unknown key"):
        host.add("vlm_caption", imgdex_vlm_caption)


def test_entry_point_is_installed() -> None:
    (ep,) = [e for e in importlib.metadata.entry_points(group="imgdex") if e.name == "vlm_caption"]
    assert ep.value == "imgdex_vlm_caption"
    assert ep.load() is imgdex_vlm_caption
    assert ep.dist is not None and ep.dist.name == "imgdex-vlm-caption"

    others = {e.name for e in importlib.metadata.entry_points(group="imgdex")} - {"vlm_caption"}
    host = PluginHost(Config())
    host.load_entry_points(exclude=others)
    record = host.records["vlm_caption"]
    assert record.state == "loaded", record.error
    assert [d.method for d in record.describers] == ["vlm_caption"]


def test_importing_the_plugin_loads_no_model_library() -> None:
    # Registration must stay cheap: torch/transformers are imported by `load` only.
    code = (
        "import sys, imgdex_vlm_caption; print("
        "'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
