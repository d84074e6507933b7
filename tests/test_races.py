"""Races against a real server: deletes, re-uploads, reads and rebuilds at the same time.

Eight threads hammer a handful of images for a bounded time, each doing one kind of
work, while the background workers embed what is uploaded. Nothing may answer 5xx, no
body may name a path on the server, and the server log may hold no uncaught exception.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import httpx
import msgspec

from imgdex.testing import image_bytes, make_config

from .conftest import ADMIN
from .serverproc import ServerProcess

SECONDS = 10.0
IMAGES = [image_bytes(c, (96, 72), "JPEG", pattern=i) for i, c in enumerate(("red", "blue"))]


def _drain(stream: IO[bytes], into: list[str]) -> None:
    # The server's output is read as it comes, so a full pipe never blocks the server.
    for line in iter(stream.readline, b""):
        into.append(line.decode(errors="replace"))


def test_eight_threads_racing_deletes_reads_and_rebuilds(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data", worker={"interval": 0.05, "retry_delay": 0.05})
    config_file = tmp_path / "imgdex.yaml"
    config_file.write_bytes(msgspec.yaml.encode(msgspec.to_builtins(config)))
    server = ServerProcess(config_file).start()
    assert server.proc is not None and server.proc.stdout is not None
    log: list[str] = []
    reader = threading.Thread(target=_drain, args=(server.proc.stdout, log), daemon=True)
    reader.start()
    data_dir = str((tmp_path / "data").resolve())
    failures: list[str] = []
    counts: dict[str, int] = {}
    lock = threading.Lock()
    stop = time.monotonic() + SECONDS
    try:
        with server.client() as http:
            ids = [
                http.post("/api/images", files={"file": ("a.jpg", p)}).json()["sha256"]
                for p in IMAGES
            ]

        def check(what: str, r: httpx.Response) -> None:
            with lock:
                counts[what] = counts.get(what, 0) + 1
                if r.status_code >= 500 or data_dir in r.text or str(tmp_path) in r.text:
                    failures.append(f"{what}: {r.status_code} {r.text[:300]}")

        def upload(http: httpx.Client, i: int) -> None:
            check("upload", http.post("/api/images", files={"file": ("a.jpg", IMAGES[i])}))

        def describe(http: httpx.Client, i: int) -> None:
            text = random.choice(["a red square", "blue sky", "green grass"])
            r = http.post(
                f"/api/images/{ids[i]}/descriptions", json={"method": "human", "content": text}
            )
            check("describe", r)

        def search(http: httpx.Client, i: int) -> None:
            check("search", http.post("/api/search/text", json={"query": "red", "top_k": 5}))

        def soft_delete(http: httpx.Client, i: int) -> None:
            check("soft delete", http.delete(f"/api/images/{ids[i]}"))
            upload(http, i)

        def hard_delete(http: httpx.Client, i: int) -> None:
            r = http.delete(f"/api/images/{ids[i]}", params={"hard": "true"}, headers=ADMIN)
            check("hard delete", r)
            upload(http, i)

        def read_file(http: httpx.Client, i: int) -> None:
            check("file", http.get(f"/api/images/{ids[i]}/file"))

        def read_thumbnail(http: httpx.Client, i: int) -> None:
            check("thumbnail", http.get(f"/api/images/{ids[i]}/thumbnail"))
            check("head", http.head(f"/api/images/{ids[i]}/thumbnail"))

        def rebuild(http: httpx.Client, i: int) -> None:
            for name in ("toy_color_v1", "toy_words_v1"):
                check("rebuild", http.post(f"/api/admin/indexes/{name}/rebuild", headers=ADMIN))

        def worker(action: Callable[[httpx.Client, int], None]) -> None:
            with server.client() as http:
                while time.monotonic() < stop:
                    try:
                        action(http, random.randrange(len(ids)))
                    except httpx.HTTPError as exc:  # a dropped connection is a failure too
                        with lock:
                            failures.append(f"{action.__name__}: {exc!r}")

        actions = [
            describe,
            search,
            soft_delete,
            hard_delete,
            read_file,
            read_thumbnail,
            rebuild,
            hard_delete,
        ]
        threads = [threading.Thread(target=worker, args=(a,)) for a in actions]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=SECONDS + 120)
        assert not any(t.is_alive() for t in threads)
    finally:
        log.append(server.stop())
        reader.join(timeout=30)
    assert not failures, f"{len(failures)} failures, first ones:\n" + "\n".join(failures[:10])
    assert all(counts.get(k, 0) > 5 for k in ("file", "thumbnail", "hard delete", "rebuild"))
    output = "".join(log)
    for sign in ("Traceback", "Exception in ASGI", "background batch failed", "IntegrityError"):
        assert sign not in output, output[-5000:]
