"""`imgdex plugins` asks the running server of its data directory, else reads the files;
checked with a real server process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .serverproc import ServerProcess

IMGDEX = [sys.executable, "-m", "imgdex.cli"]


def plugins(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("IMGDEX_ADMIN_TOKEN", None)
    return subprocess.run(
        [*IMGDEX, "plugins", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def write_config(path: Path, data: Path, port: int, token: str | None) -> Path:
    server = f"  port: {port}\n" + (f"  admin_token: {token}\n" if token else "")
    path.write_text(f"data_dir: {data}\nserver:\n{server}")
    return path


def test_plugins_shows_the_running_server_of_its_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "imgdex.yaml"
    # The server runs the toy plugins only: the CLI, with the installed ones, could not
    # list them from files, so seeing them proves the server answered.
    server = ServerProcess(config)
    write_config(config, data, server.port, token=None)  # the server generates one
    server.start()
    try:
        result = plugins(config, "--json")
        assert result.returncode == 0, result.stderr
        assert f"from the running server at {server.url}" in result.stderr
        names = {p["name"] for p in json.loads(result.stdout)}
        assert {"toy_color", "toy_words"} <= names and "siglip2" not in names
        with server.client() as http:
            token = (data / "admin_token").read_text().strip()
            r = http.post(
                "/api/admin/plugins/toy_words/disable",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 200
        text = plugins(config)
        assert text.stdout.startswith(f"(from the running server at {server.url})")
        line = next(ln for ln in text.stdout.splitlines() if ln.startswith("toy_words"))
        assert "disabled" in line

        # Same address, another data directory: that server's view is not this one's.
        other = write_config(tmp_path / "other.yaml", tmp_path / "other", server.port, token)
        text = plugins(other)
        assert text.returncode == 0, text.stderr
        assert f"(from files, the server at {server.url} serves another data directory)" in (
            text.stdout
        )
        assert "siglip2" in text.stdout and "toy_words" not in text.stdout
    finally:
        server.stop()

    text = plugins(config)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"(from files, no server running at {server.url})")
    assert "siglip2" in text.stdout
