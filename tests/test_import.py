"""`imgdex import`: files, folders and ZIP archives, to a server or a local data dir."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import msgspec
import pytest
from litestar.testing import TestClient

from imgdex.importer import looks_like_image
from imgdex.testing import image_bytes, make_config

from .serverproc import ServerProcess

IMGDEX = [sys.executable, "-m", "imgdex.cli"]


def photo_tree(root: Path) -> int:
    """A folder of mixed files; returns how many distinct images it holds."""
    (root / "trip" / "day2").mkdir(parents=True)
    (root / "trip" / "a.jpg").write_bytes(image_bytes("red", (320, 240), "JPEG", pattern=1))
    (root / "trip" / "b.png").write_bytes(image_bytes("green", (200, 200), "PNG", pattern=2))
    (root / "trip" / "day2" / "c.webp").write_bytes(
        image_bytes("blue", (300, 200), "WEBP", pattern=3)
    )
    (root / "trip" / "day2" / "copy-of-a.jpg").write_bytes((root / "trip" / "a.jpg").read_bytes())
    (root / "trip" / "notes.txt").write_text("not a picture")
    (root / "trip" / "broken.jpg").write_bytes(
        image_bytes("red", (320, 240), "JPEG", pattern=9)[:300]
    )
    (root / "trip" / ".hidden.jpg").write_bytes(image_bytes("yellow"))
    with zipfile.ZipFile(root / "archive.zip", "w") as archive:
        archive.writestr("inside/d.png", image_bytes("purple", pattern=4))
        archive.writestr("inside/e.jpg", image_bytes("orange", (100, 80), "JPEG", pattern=5))
        archive.writestr("readme.md", "# hello")
    return 5


def run_import(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [*IMGDEX, "import", "--quiet", *args], capture_output=True, text=True, timeout=300, env=env
    )


def test_signatures() -> None:
    assert looks_like_image(image_bytes("red", fmt="JPEG")[:16])
    assert looks_like_image(image_bytes("red", fmt="PNG")[:16])
    assert looks_like_image(image_bytes("red", fmt="WEBP")[:16])
    assert looks_like_image(image_bytes("red", fmt="GIF")[:16])
    assert not looks_like_image(b"%PDF-1.7\n")
    assert not looks_like_image(b"")


@pytest.mark.slow
def test_import_to_running_server_and_resume(tmp_path: Path) -> None:
    expected = photo_tree(tmp_path / "photos")
    config = make_config(tmp_path / "data")
    config_file = tmp_path / "imgdex.yaml"
    config_file.write_bytes(msgspec.yaml.encode(msgspec.to_builtins(config)))
    server = ServerProcess(config_file).start()
    try:
        first = run_import(str(tmp_path / "photos"), "--server", server.url, "--source", "trip")
        assert first.returncode == 0, first.stderr
        assert "9 files: 5 added, 1 duplicate, 1 rejected, 2 skipped, 0 failed" in first.stdout
        assert "notes.txt: not an image" in first.stderr
        assert "readme.md: not an image" in first.stderr
        assert "broken.jpg" in first.stderr
        with server.client() as http:
            listing = http.get("/api/images", params={"limit": 100}).json()
            assert listing["total"] == expected
            assert {i["source"] for i in listing["images"]} == {"trip"}
        # Re-running (as after an interruption) uploads nothing again.
        again = run_import(str(tmp_path / "photos"), "--server", server.url)
        assert "0 added, 6 duplicate, 1 rejected, 2 skipped" in again.stdout
        with server.client() as http:
            assert http.get("/api/images").json()["total"] == expected
    finally:
        server.stop()
    down = run_import(str(tmp_path / "photos" / "trip" / "a.jpg"), "--server", server.url)
    assert down.returncode == 1 and "1 failed" in down.stdout


def test_import_into_local_data_dir(tmp_path: Path, imgdex_app_factory: object) -> None:
    expected = photo_tree(tmp_path / "photos")
    data = tmp_path / "data"
    result = run_import(
        str(tmp_path / "photos"), "--local", "--data-dir", str(data), "--workers", "2"
    )
    assert result.returncode == 0, result.stderr
    assert "5 added" in result.stdout
    # A server started on that data dir serves them; the toy models embed them.
    config = make_config(data)
    with TestClient(imgdex_app_factory(config)) as client:  # type: ignore[operator]
        assert client.get("/api/images").json()["total"] == expected
        image = client.get("/api/images", params={"limit": 1}).json()["images"][0]
        assert client.get(f"/api/images/{image['sha256']}/file").status_code == 200
