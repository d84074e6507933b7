"""One writer per data directory, and plugin config errors that stop the start, with
real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgdex.config import Config
from imgdex.datalock import acquire
from imgdex.errors import ConfigError
from imgdex.plugins import PluginHost
from imgdex.testing import ConfiguredToyPlugin, image_bytes, make_config

from .serverproc import ServerProcess

IMGDEX = [sys.executable, "-m", "imgdex.cli"]


def imgdex(*args: str, data: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--data-dir", str(data)] if data is not None else []
    return subprocess.run(
        [*IMGDEX, *args, *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


@pytest.mark.slow
def test_second_writer_refuses_naming_the_holder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config_file = tmp_path / "imgdex.yaml"
    config_file.write_text(f"data_dir: {data}\nserver:\n  admin_token: t\n")
    photo = tmp_path / "a.png"
    photo.write_bytes(image_bytes("red"))
    server = ServerProcess(config_file).start()
    try:
        assert server.proc is not None
        holder = f"process {server.proc.pid}"
        assert (data / "lock").read_text().startswith(f"{server.proc.pid}\n")

        second = imgdex("serve", "--port", "0", data=data)
        assert second.returncode == 3, second.stderr
        assert holder in second.stderr and "in use" in second.stderr
        assert "Traceback" not in second.stderr

        local = imgdex("import", "--local", "--quiet", str(photo), data=data)
        assert local.returncode == 3, local.stderr
        assert holder in local.stderr
        assert not list((data / "storage").rglob("*.png"))  # nothing written
        with server.client() as http:
            assert http.get("/health").status_code == 200  # the first one is unharmed
    finally:
        server.kill()  # SIGKILL: the kernel drops the lock with the process
    local = imgdex("import", "--local", "--quiet", str(photo), data=data)
    assert local.returncode == 0, local.stderr
    assert "1 added" in local.stdout
    assert (data / "lock").read_text() == ""  # released on exit, no stale holder


def test_the_lock_is_reentrant_within_a_process(tmp_path: Path) -> None:
    with acquire(tmp_path), acquire(tmp_path):
        pass
    with acquire(tmp_path):  # free again after both releases
        code = (
            "import sys, pathlib; from imgdex.datalock import acquire; "
            "acquire(pathlib.Path(sys.argv[1]))"
        )
        other = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True
        )
        assert other.returncode != 0 and "DataDirLocked" in other.stderr
        assert f"process {os.getpid()}" in other.stderr


def test_runtime_takes_the_lock(tmp_path: Path) -> None:
    from imgdex.index import hnsw
    from imgdex.runtime import Runtime

    config = make_config(tmp_path / "data")
    host = PluginHost(config)
    host.add("hnswlib", hnsw)
    code = (
        "import sys, pathlib; from imgdex.datalock import acquire; "
        "acquire(pathlib.Path(sys.argv[1]))"
    )
    library = Runtime(config, host)
    try:
        other = subprocess.run(
            [sys.executable, "-c", code, str(config.data_path)], capture_output=True, text=True
        )
        assert other.returncode != 0 and f"process {os.getpid()}" in other.stderr
    finally:
        library.close()
    other = subprocess.run(
        [sys.executable, "-c", code, str(config.data_path)], capture_output=True, text=True
    )
    assert other.returncode == 0, other.stderr  # released by close()


# --- plugin config errors -------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("pooling: max", "plugins.bge.pooling"),
        ("modle: BAAI/bge-small-en-v1.5", "plugins.bge.modle: unknown key"),
    ],
)
def test_serve_stops_at_a_bad_plugin_key(tmp_path: Path, section: str, message: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"plugins:\n  bge:\n    {section}\n")
    result = imgdex("serve", "--config", str(bad), "--port", "0", data=tmp_path / "data")
    assert result.returncode == 2, result.stderr
    assert f"configuration error: {message}" in result.stderr
    assert "Traceback" not in result.stderr


def test_plugin_host_raises_for_a_section_that_does_not_decode() -> None:
    config = Config(plugins={"toy": {"version": "2", "delay": "slow"}})
    with pytest.raises(ConfigError, match=r"plugins\.toy\.delay"):
        PluginHost(config).add("toy", ConfiguredToyPlugin("color"))
    config = Config(plugins={"toy": {"enabled": "maybe"}})
    with pytest.raises(ConfigError, match=r"plugins\.toy\.enabled"):
        PluginHost(config).add("toy", ConfiguredToyPlugin("color"))
    # A good section still registers.
    record = PluginHost(Config(plugins={"toy": {"version": "2"}})).add(
        "toy", ConfiguredToyPlugin("color")
    )
    assert record.state == "loaded" and record.embedders[0].index_name == "toy_color_v2"
