"""`imgdex models [download]` as a real process, on model folders and hub-cache layouts
the tests build (the network is not used: downloads go to an endpoint that refuses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .serverproc import free_port

IMGDEX = [sys.executable, "-m", "imgdex.cli"]


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return subprocess.run(
        [*IMGDEX, *args], capture_output=True, text=True, timeout=120, env={**clean, **env}
    )


def cache_repo(hub: Path, repo: str, files: dict[str, bytes]) -> Path:
    """The Hugging Face cache layout: blobs, a snapshot of symlinks, refs/main."""
    root = hub / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (root / "blobs").mkdir()
    for i, (name, data) in enumerate(files.items()):
        blob = root / "blobs" / f"blob{i}"
        blob.write_bytes(data)
        (snapshot / name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    return snapshot


def write_config(path: Path, bge_model: Path | str, siglip2_model: str) -> Path:
    path.write_text(
        f"data_dir: {path.parent / 'data'}\n"
        "plugins:\n"
        f"  bge: {{enabled: true, model: '{bge_model}'}}\n"
        f"  siglip2: {{enabled: true, model: '{siglip2_model}'}}\n"
        "  qwen3: {enabled: false}\n"
        "  vlm_caption: {enabled: false}\n"
    )
    return path


def test_models_lists_local_cached_and_missing(tmp_path: Path) -> None:
    local = tmp_path / "minilm"
    local.mkdir()
    (local / "config.json").write_text("{}")
    (local / "model.safetensors").write_bytes(b"w" * 5000)
    hub = tmp_path / "hub"
    snapshot = cache_repo(
        hub, "acme/siglip", {"config.json": b"{}", "model.safetensors": b"x" * 7000}
    )
    config = write_config(tmp_path / "imgdex.yaml", local, "acme/siglip")
    env = {"HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}

    result = run("models", "--json", "--config", str(config), env=env)
    assert result.returncode == 0, result.stderr
    models = {m["role"]: m for m in json.loads(result.stdout)}
    plugins = {m["plugin"] for m in models.values()}
    assert {"bge", "siglip2"} <= plugins and not {"qwen3", "vlm_caption"} & plugins  # disabled
    bge, siglip = models["bge_text_v1"], models["siglip2_image_v1"]
    assert (bge["location"], bge["source"], bge["path"]) == ("local", "directory", str(local))
    assert bge["size_bytes"] == 5002
    assert (siglip["location"], siglip["source"]) == ("hub_cache", "hub")
    assert siglip["path"] == str(snapshot) and siglip["size_bytes"] == 7002

    text = run("models", "--config", str(config), env=env)
    assert text.returncode == 0
    assert (
        "siglip2_image_v1" in text.stdout and "hub_cache" in text.stdout and "7.0 KB" in text.stdout
    )

    # Configs without weights (a download cut short) and a directory that is gone: missing.
    (snapshot / "model.safetensors").unlink()
    config = write_config(tmp_path / "imgdex.yaml", tmp_path / "gone", "acme/siglip")
    result = run("models", "--json", "--config", str(config), env=env)
    assert result.returncode == 1
    models = {m["role"]: m for m in json.loads(result.stdout)}
    assert models["siglip2_image_v1"]["location"] == "missing"
    assert "only partly in the Hugging Face cache" in models["siglip2_image_v1"]["problem"]
    assert models["bge_text_v1"]["location"] == "missing"
    assert f"model directory {tmp_path / 'gone'} does not exist" in models["bge_text_v1"]["problem"]


def test_models_download_reports_an_unreachable_hub(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    config = write_config(tmp_path / "imgdex.yaml", tmp_path / "gone", "acme/no-such-siglip")
    # A loopback port nobody listens on: the hub's connection is refused at once.
    env = {
        "HF_HUB_CACHE": str(hub),
        "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "HF_HUB_OFFLINE": "0",  # other test modules set it for the whole session
    }
    result = run("models", "download", "--config", str(config), env=env)
    assert result.returncode == 1
    assert "siglip2_image_v1: downloading acme/no-such-siglip" in result.stdout
    assert "siglip2_image_v1: cannot download 'acme/no-such-siglip'" in result.stderr
    assert "ConnectError" in result.stderr
    assert "a local directory cannot be downloaded" in result.stderr
    assert " is in " not in result.stdout  # nothing claims success
    assert not list(hub.glob("models--*/snapshots/*/*"))


def test_models_download_with_everything_present_does_nothing(tmp_path: Path) -> None:
    local = tmp_path / "minilm"
    local.mkdir()
    (local / "config.json").write_text("{}")
    hub = tmp_path / "hub"
    cache_repo(hub, "acme/siglip", {"config.json": b"{}", "model.safetensors": b"x"})
    config = write_config(tmp_path / "imgdex.yaml", local, "acme/siglip")
    env = {
        "HF_HUB_CACHE": str(hub),
        "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "HF_HUB_OFFLINE": "0",  # other test modules set it for the whole session
    }
    result = run("models", "download", "--config", str(config), env=env)
    assert result.returncode == 0, result.stderr
    assert "already on this machine" in result.stdout
