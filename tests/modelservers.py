"""Real model services for the tests, on free loopback ports.

`ThreadedServer` runs any app under uvicorn in a thread (fast; the test can reach into the
model it serves); `ModelProcess` runs ``imgdex.services.server`` in its own process, so it can
be SIGKILLed and restarted on the same port. Both serve `TunableColor`: the toy colour
model with knobs for delay, model name, version and dimension.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import uvicorn

from imgdex.testing import ColorEmbedder

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    # Not imported from .serverproc: the subprocess imports this file as a top-level module.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TunableColor(ColorEmbedder):
    """ColorEmbedder that can be slowed down (`delay`, or a number in `delay_file`),
    renamed, re-versioned or widened (extra zero dimensions), and that records what it saw.
    """

    def __init__(
        self,
        model: str = "imgdex-toy-color",
        version: str = "1",
        extra_dims: int = 0,
        delay_file: Path | None = None,
    ) -> None:
        super().__init__(version=version)
        self.model = model
        self.extra_dims = extra_dims
        self.delay = 0.0
        self.delay_file = delay_file
        self.batches: list[int] = []
        self.sizes: list[tuple[int, int]] = []
        self.queries: list[bool] = []

    @property
    def dimension(self) -> int:
        return super().dimension + self.extra_dims

    def _wait(self) -> None:
        delay = self.delay
        if self.delay_file is not None and self.delay_file.is_file():
            delay = float(self.delay_file.read_text() or 0)
        if delay:
            time.sleep(delay)

    def _widen(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if not self.extra_dims:
            return x
        return np.hstack([x, np.zeros((len(x), self.extra_dims), np.float32)])

    def embed_images(self, images: Sequence[Any]) -> npt.NDArray[np.float32]:
        self._wait()
        self.batches.append(len(images))
        self.sizes += [im.size for im in images]
        return self._widen(super().embed_images(images))

    def embed_texts(self, texts: Sequence[str], *, query: bool) -> npt.NDArray[np.float32]:
        self._wait()
        self.batches.append(len(texts))
        self.queries.append(query)
        return self._widen(super().embed_texts(texts, query=query))


class ThreadedServer:
    """An ASGI app under uvicorn in a daemon thread; `stop` then `start` restarts it on
    the same port."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ThreadedServer:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("model server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=20)
        self._server = self._thread = None

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


SCRIPT = """
import sys
from pathlib import Path
import uvicorn
sys.path.insert(0, sys.argv[1])
from modelservers import TunableColor
from imgdex.services.server import create_model_app
from imgdex.testing import ToyPlugin, make_config
port, model, delay_file, data = int(sys.argv[2]), sys.argv[3], Path(sys.argv[4]), sys.argv[5]
plugin = ToyPlugin(TunableColor(model=model, delay_file=delay_file))
app = create_model_app(
    make_config(Path(data)), "toy_color", plugins={"toy_color": plugin}, entry_points=False
)
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
"""


class ModelProcess:
    """``toy_color`` served by `imgdex.services.server` in a subprocess (SIGKILL-able)."""

    def __init__(self, root: Path, name: str, model: str = "imgdex-toy-color") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.delay_file = root / f"{name}.delay"
        self.argv = [
            sys.executable,
            "-c",
            SCRIPT,
            str(HERE),
            str(self.port),
            model,
            str(self.delay_file),
            str(root / f"{name}-data"),
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> ModelProcess:
        self.proc = subprocess.Popen(
            self.argv, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        return self

    def wait_ready(self, timeout: float = 60.0) -> ModelProcess:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        # One client for all polls: creating one costs ~70 ms of CPU (its SSL context),
        # which a 2-core machine would rather spend starting the service.
        with httpx.Client(timeout=2) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise RuntimeError(f"model service exited ({self.proc.returncode}):\n{err}")
                try:
                    if http.get(self.url + "/health").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        self.kill()
        raise RuntimeError("model service did not become healthy in time")

    def slow(self, seconds: float) -> None:
        self.delay_file.write_text(str(seconds))

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=30)
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.proc = None
