"""Unit tests for imgdex.config: decoding, error messages and load precedence."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from imgdex.config import (
    Config,
    ImagesConfig,
    IndexConfig,
    PluginConfig,
    PluginSettings,
    SearchConfig,
    ServerConfig,
    decode_config,
    load_config,
)
from imgdex.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "imgdex.yaml"
ENV_VARS = ("IMGDEX_CONFIG", "IMGDEX_DATA_DIR", "IMGDEX_ADMIN_TOKEN")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No IMGDEX_* variables, and a working directory without ./config/imgdex.yaml."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return workdir


def names_key(message: str, key: str) -> bool:
    """True when `message` names `key` as a whole path (not as the tail of a longer one)."""
    return re.search(rf"(?<![\w.$]){re.escape(key)}(?![\w.])", message) is not None


# --- defaults and decoding ---------------------------------------------------------


def test_defaults() -> None:
    config = Config()
    assert config.data_dir == "./data"
    assert config.server == ServerConfig()
    assert (config.server.host, config.server.port, config.server.admin_token) == (
        "127.0.0.1",
        6060,
        None,
    )
    assert config.images.max_pixels == 178_956_970
    assert config.images.thumbnail_size == 256
    assert config.images.decode_min_side == 1024
    assert {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"} <= set(config.images.formats)
    assert config.index.backend == "hnswlib"
    assert (config.index.m, config.index.ef_construction, config.index.ef_search) == (16, 200, 64)
    assert config.search.fusion == "rrf"
    assert config.search.rrf_k == 60
    assert config.search.weights == {}
    assert config.plugins == {}
    assert config.services == {}


def test_data_path_is_absolute_and_expands_user(tmp_path: Path) -> None:
    assert Config(data_dir=str(tmp_path / "d")).data_path == (tmp_path / "d").resolve()
    assert Config(data_dir="~/imgdex").data_path == (Path.home() / "imgdex").resolve()


def test_decode_yaml_file(tmp_path: Path) -> None:
    text = """
data_dir: /srv/imgdex
server:
  host: 0.0.0.0
  port: 8080
  admin_token: s3cret
images:
  max_pixels: 1000000
  formats: [JPEG, PNG]
index:
  backend: flat
  ef_search: 128
search:
  fusion: max
  rrf_k: 10
  weights: {siglip2_image_v1: 1.0, bge_text_v1: 0.5}
plugins:
  bge:
    enabled: false
    pooling: cls
services:
  remote:
    plugin: http
    endpoint: http://localhost:9000
"""
    file = tmp_path / "imgdex.yaml"
    file.write_text(text)
    config = decode_config(file.read_bytes(), str(file))
    assert config.data_dir == "/srv/imgdex"
    assert config.server == ServerConfig(host="0.0.0.0", port=8080, admin_token="s3cret")
    assert config.images.max_pixels == 1_000_000
    assert config.images.formats == ("JPEG", "PNG")
    assert config.images.thumbnail_size == 256  # untouched keys keep their defaults
    assert config.index == IndexConfig(backend="flat", ef_search=128)
    assert config.search.fusion == "max"
    assert config.search.rrf_k == 10
    assert config.search.weights == {"siglip2_image_v1": 1.0, "bge_text_v1": 0.5}
    assert config.plugins == {"bge": {"enabled": False, "pooling": "cls"}}
    assert config.services["remote"].endpoint == "http://localhost:9000"
    assert config.services["remote"].enabled is True


def test_shipped_config_decodes() -> None:
    config = decode_config(SHIPPED.read_bytes(), str(SHIPPED))
    assert config.index.backend in ("hnswlib", "flat")
    assert config.search.fusion in ("rrf", "max")
    assert config.plugins["siglip2"]["enabled"] is True
    # Every plugin section's `enabled` is a real boolean.
    for name in config.plugins:
        assert isinstance(config.plugin_settings(name).enabled, bool)


@pytest.mark.parametrize("text", [b"", b"   \n", b"# only a comment\n", b"~\n"])
def test_empty_document_gives_defaults(text: bytes) -> None:
    assert decode_config(text) == Config()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (b"colour: red\n", "colour"),
        (b"server:\n  prot: 1\n", "server.prot"),
        (b"search:\n  fusoin: rrf\n", "search.fusoin"),
        (b"services:\n  a:\n    plugin: p\n    endpoint: e\n    timeot: 3\n", "services.a.timeot"),
    ],
)
def test_unknown_key_names_full_path(text: bytes, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        decode_config(text, "my.yaml")
    message = str(info.value)
    assert message.startswith("my.yaml: ")
    assert "unknown" in message
    # The key path as a user writes it in YAML: `server.prot`, not `.server.prot`.
    assert names_key(message, key), message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (b"server:\n  port: abc\n", "server.port"),
        (b"index:\n  m: [1, 2]\n", "index.m"),
        (b"search:\n  fusion: sum\n", "search.fusion"),
        # msgspec reports dict values as `weights[...]`: the section is what it can name.
        (b"search:\n  weights: {a: heavy}\n", "search.weights"),
        (b"data_dir: [1]\n", "data_dir"),
        (b"worker:\n  max_attempts: 0\n", "worker.max_attempts"),
        (b"worker:\n  retry_delay: -1\n", "worker.retry_delay"),
        (b"worker:\n  concurrency: {vlm_caption: 0}\n", "worker.concurrency"),
    ],
)
def test_wrong_type_names_key(text: bytes, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        decode_config(text, "my.yaml")
    message = str(info.value)
    assert message.startswith("my.yaml: ")
    assert names_key(message, key), message


def test_not_a_mapping_or_not_yaml() -> None:
    with pytest.raises(ConfigError, match="mapping"):
        decode_config(b"- a\n- b\n", "list.yaml")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        decode_config(b"server: [unclosed\n", "bad.yaml")


def test_config_structs_are_frozen() -> None:
    config = Config()
    with pytest.raises(AttributeError):
        config.data_dir = "elsewhere"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        config.search.rrf_k = 1  # type: ignore[misc]
    assert SearchConfig().weights == {}
    assert ImagesConfig(max_pixels=100).max_pixels == 100


# --- load_config precedence --------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


FILE_TEXT = """
data_dir: /from/file
server:
  host: 10.0.0.1
  port: 1111
  admin_token: file-token
index:
  ef_search: 99
"""


def test_load_without_any_file_gives_defaults(clean_env: Path) -> None:
    assert load_config() == Config()


def test_load_picks_up_default_path_in_cwd(clean_env: Path) -> None:
    write(clean_env / "config" / "imgdex.yaml", "index:\n  ef_search: 77\n")
    assert load_config().index.ef_search == 77


def test_load_empty_file_gives_defaults(clean_env: Path) -> None:
    file = write(clean_env / "empty.yaml", "")
    assert load_config(file) == Config()


def test_load_missing_config_flag_is_error(clean_env: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(clean_env / "nope.yaml")


def test_load_missing_config_env_is_error(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGDEX_CONFIG", str(clean_env / "nope.yaml"))
    with pytest.raises(ConfigError, match="not found"):
        load_config()


def test_load_missing_flag_does_not_fall_back_to_default(clean_env: Path) -> None:
    write(clean_env / "config" / "imgdex.yaml", "index:\n  ef_search: 77\n")
    with pytest.raises(ConfigError):
        load_config("missing.yaml")


def test_load_errors_name_the_file(clean_env: Path) -> None:
    file = write(clean_env / "broken.yaml", "server:\n  port: abc\n")
    with pytest.raises(ConfigError) as info:
        load_config(file)
    assert str(file) in str(info.value)
    assert names_key(str(info.value), "server.port")


def test_file_values_over_defaults(clean_env: Path) -> None:
    config = load_config(write(clean_env / "c.yaml", FILE_TEXT))
    assert config.data_dir == "/from/file"
    assert config.server.admin_token == "file-token"
    assert (config.server.host, config.server.port) == ("10.0.0.1", 1111)
    assert config.index.ef_search == 99
    assert config.index.m == 16


def test_env_over_file(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = write(clean_env / "c.yaml", FILE_TEXT)
    monkeypatch.setenv("IMGDEX_CONFIG", str(file))
    monkeypatch.setenv("IMGDEX_DATA_DIR", "/from/env")
    monkeypatch.setenv("IMGDEX_ADMIN_TOKEN", "env-token")
    config = load_config()
    assert config.data_dir == "/from/env"
    assert config.server.admin_token == "env-token"
    # Keys the environment does not cover still come from the file.
    assert (config.server.host, config.server.port) == ("10.0.0.1", 1111)
    assert config.index.ef_search == 99


def test_config_env_over_default_path(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(clean_env / "config" / "imgdex.yaml", "index:\n  ef_search: 77\n")
    env_file = write(clean_env / "other.yaml", "index:\n  ef_search: 55\n")
    monkeypatch.setenv("IMGDEX_CONFIG", str(env_file))
    assert load_config().index.ef_search == 55


def test_flags_over_env_and_file(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = write(clean_env / "env.yaml", "index:\n  ef_search: 55\n")
    flag_file = write(clean_env / "flag.yaml", FILE_TEXT)
    monkeypatch.setenv("IMGDEX_CONFIG", str(env_file))
    monkeypatch.setenv("IMGDEX_DATA_DIR", "/from/env")
    monkeypatch.setenv("IMGDEX_ADMIN_TOKEN", "env-token")
    config = load_config(flag_file, data_dir="/from/flag", host="::1", port=2222)
    assert config.index.ef_search == 99  # --config beats IMGDEX_CONFIG
    assert config.data_dir == "/from/flag"
    assert (config.server.host, config.server.port) == ("::1", 2222)
    assert config.server.admin_token == "env-token"  # no flag for the token: env wins


def test_env_without_file(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGDEX_DATA_DIR", "/from/env")
    monkeypatch.setenv("IMGDEX_ADMIN_TOKEN", "env-token")
    config = load_config()
    assert config.data_dir == "/from/env"
    assert config.server.admin_token == "env-token"
    assert config.server.port == 6060


# --- plugin sections ---------------------------------------------------------------


class BgeConfig(PluginConfig, kw_only=True, frozen=True):
    pooling: str = "mean"
    batch_size: int = 8


def test_plugin_settings_decode() -> None:
    settings = PluginSettings("bge", {"model": "BAAI/bge", "pooling": "cls", "batch_size": 4})
    assert settings.decode(BgeConfig) == BgeConfig(model="BAAI/bge", pooling="cls", batch_size=4)
    assert PluginSettings("bge", {}).decode(BgeConfig) == BgeConfig()
    assert PluginSettings("bge", {}).enabled is True


def test_plugin_settings_unknown_key_names_path() -> None:
    with pytest.raises(ConfigError) as info:
        PluginSettings("bge", {"poolin": "cls"}).decode(BgeConfig)
    assert names_key(str(info.value), "plugins.bge.poolin"), str(info.value)


def test_plugin_settings_wrong_type_names_path() -> None:
    with pytest.raises(ConfigError) as info:
        PluginSettings("bge", {"batch_size": "many"}).decode(BgeConfig)
    assert names_key(str(info.value), "plugins.bge.batch_size"), str(info.value)


@pytest.mark.parametrize("value", ["yes", "maybe", 1, None, [True]])
def test_plugin_enabled_must_be_bool(value: object) -> None:
    with pytest.raises(ConfigError, match=r"plugins\.bge\.enabled"):
        _ = PluginSettings("bge", {"enabled": value}).enabled


def test_plugin_enabled_non_bool_refused_by_decode() -> None:
    with pytest.raises(ConfigError) as info:
        PluginSettings("bge", {"enabled": "maybe"}).decode(BgeConfig)
    assert names_key(str(info.value), "plugins.bge.enabled"), str(info.value)


def test_plugin_settings_from_config(tmp_path: Path) -> None:
    config = decode_config(
        f"data_dir: {tmp_path}\nplugins:\n  bge:\n    enabled: false\n".encode(), "c.yaml"
    )
    settings = config.plugin_settings("bge")
    assert settings.enabled is False
    assert settings.cache_dir == tmp_path.resolve() / "cache" / "bge"
    assert not settings.cache_dir.exists()  # created only when a plugin uses it
    # A section that is absent reads as empty: enabled, defaults.
    assert config.plugin_settings("absent").decode(BgeConfig) == BgeConfig()
    # The raw dict is a copy: a plugin mutating it never alters the config.
    settings.raw["enabled"] = True
    assert config.plugins["bge"]["enabled"] is False


def test_plugin_config_base_is_strict() -> None:
    assert msgspec.convert({"enabled": False}, PluginConfig) == PluginConfig(enabled=False)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"other": 1}, PluginConfig)
