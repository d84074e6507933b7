"""The `imgdex` command line, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from imgdex.testing import image_bytes

from .serverproc import ServerProcess, free_port

IMGDEX = [sys.executable, "-m", "imgdex.cli"]
OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1"}


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*IMGDEX, *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=OFFLINE
    )


def test_plugins_json_lists_installed_plugins(tmp_path: Path) -> None:
    result = run("plugins", "--json", "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["hnswlib"]["kinds"] == ["index_backend"]
    assert plugins["hnswlib"]["distribution"] == "imgdex"
    for name, index in [
        ("siglip2", "siglip2_image_v1"),
        ("bge", "bge_text_v1"),
        ("qwen3", "qwen3_text_v1"),
    ]:
        assert plugins[name]["state"] == "loaded"
        assert plugins[name]["indexes"][0]["index"] == index
    assert plugins["vlm_caption"]["describers"][0]["method"] == "vlm_caption"
    # No weights here: each model says it is missing and why, without loading anything.
    siglip2 = plugins["siglip2"]["indexes"][0]
    assert siglip2["state"] == "missing"
    assert "google/siglip2-base-patch16-224" in siglip2["error"]
    assert "not in the Hugging Face cache" in siglip2["error"]
    text = run("plugins", "--data-dir", str(tmp_path / "data"))
    assert "siglip2_image_v1" in text.stdout and "hnswlib" in text.stdout
    assert "missing: model 'BAAI/bge-small-zh-v1.5' is not in the Hugging Face cache" in text.stdout
    local = tmp_path / "cfg.yaml"
    local.write_text(f"plugins:\n  bge:\n    model: {tmp_path / 'nowhere'}\n")
    text = run("plugins", "--config", str(local), "--data-dir", str(tmp_path / "data"))
    assert f"model directory {tmp_path / 'nowhere'} does not exist" in text.stdout


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  prot: 7000\n")
    result = run("serve", "--config", str(bad))
    assert result.returncode == 2
    assert "server.prot: unknown key" in result.stderr
    bad.write_text("server:\n  port: seventy\n")
    result = run("plugins", "--config", str(bad))
    assert result.returncode == 2 and "server.port" in result.stderr
    result = run("serve", "--config", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and "not found" in result.stderr


def test_serve_starts_with_real_plugins_and_no_weights(tmp_path: Path) -> None:
    """Offline, with no model weights: the server starts, stores images and says why."""
    port = free_port()
    data = tmp_path / "data"
    server = ServerProcess(
        Path("config/imgdex.yaml"),
        argv=[*IMGDEX, "serve", "--port", str(port), "--data-dir", str(data)],
        env={"HF_HUB_OFFLINE": "1", "IMGDEX_ADMIN_TOKEN": "cli-token"},
    )
    server.port, server.url = port, f"http://127.0.0.1:{port}"
    server.start()
    try:
        with server.client() as http:
            r = http.post(
                "/api/images",
                files={"file": ("a.jpg", image_bytes("red", (300, 200), "JPEG"), "image/jpeg")},
            )
            assert r.status_code == 201
            assert r.json()["status"] == "pending"
            assert http.get(f"/api/images/{r.json()['sha256']}/thumbnail").status_code == 200

            def reported() -> bool:
                models = http.get("/health").json()["models"]
                # The ocr plugin's models ship inside the rapidocr wheel: it loads offline.
                downloaded = [m for m in models if m["name"] != "describer ocr"]
                return all(m["state"] == "failed" and m["error"] for m in downloaded)

            deadline = time.monotonic() + 60
            while not reported():
                assert time.monotonic() < deadline, http.get("/health").json()
                time.sleep(0.5)
            health = http.get("/health").json()
            assert health["status"] == "degraded"
            errors = {m["name"]: m["error"] for m in health["models"]}
            assert "google/siglip2-base-patch16-224" in errors["siglip2_image_v1"]
            assert "BAAI/bge-small-zh-v1.5" in errors["bge_text_v1"]
            admin = http.get("/api/admin/plugins", headers={"Authorization": "Bearer cli-token"})
            assert admin.status_code == 200
            assert http.get("/docs").status_code == 200
            # The image's work waits as jobs, no attempt burnt, until the models load.
            jobs = http.get("/api/admin/jobs", headers={"Authorization": "Bearer cli-token"})
            assert jobs.json()["indexes"]["siglip2_image_v1"]["queued"] == 1
    finally:
        server.stop()
    assert not (data / "storage" / ".tmp").exists() or not list(
        (data / "storage" / ".tmp").iterdir()
    )
    # `imgdex plugins` reads the same job counts from the catalog.
    listed = run("plugins", "--json", "--data-dir", str(data))
    plugins = {p["name"]: p for p in json.loads(listed.stdout)}
    siglip2 = plugins["siglip2"]["indexes"][0]
    assert siglip2["progress"] == {
        "done": 0,
        "total": 1,
        "failed": 0,
        "queued": 1,
        "running": 0,
    }
    assert siglip2["role"] == "active"
    text = run("plugins", "--data-dir", str(data)).stdout
    assert "jobs: 0/1 done, 1 queued, 0 failed" in text
