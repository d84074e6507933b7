"""Run a real imgdex server in a subprocess on a free loopback port (for kill tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

SCRIPT = """
import sys, msgspec
from imgdex.api import create_app
from imgdex.config import decode_config
from imgdex.server import serve
from imgdex.testing import toy_plugins
config = decode_config(open(sys.argv[1], "rb").read(), sys.argv[1])
app = create_app(config, plugins=toy_plugins(), entry_points=False, preload=False)
serve(app, config.server, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``imgdex`` with the toy plugins (or any argv) in its own process."""

    def __init__(
        self, config_file: Path, argv: list[str] | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.config_file = config_file
        self.argv = argv or [sys.executable, "-c", SCRIPT, str(config_file), str(self.port)]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.stop()
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{out}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("server did not become healthy in time")

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no index save, nothing flushed by us."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=30)
            if self.proc.stdout is not None and not self.proc.stdout.closed:
                self.proc.stdout.close()

    def stop(self) -> str:
        out = ""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.kill()
            if self.proc.stdout is not None and not self.proc.stdout.closed:
                out = self.proc.stdout.read().decode(errors="replace")
                self.proc.stdout.close()
        return out
