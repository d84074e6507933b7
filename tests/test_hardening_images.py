"""Hostile images and uploads against a real server process, its memory read from /proc.

Small files that decode to hundreds of megapixels (16-bit and 1-bit PNG bombs), image
searches with bad options, and parallel large uploads: each answer is clear, the server's
peak memory (VmHWM) stays bounded, and its resident memory returns near its start.
"""

from __future__ import annotations

import base64
import concurrent.futures
import functools
import hashlib
import io
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from .serverproc import ServerProcess

MiB = 1024 * 1024


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int, bits: int, seed: int = 0) -> bytes:
    """A greyscale PNG of `bits` per pixel, all zero: a few hundred kB that decode to
    ``width x height`` pixels. `seed` goes in a text chunk, so the files differ."""
    header = struct.pack(">IIBBBBB", width, height, bits, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"tEXt", b"seed\x00" + str(seed).encode())
        + _chunk(b"IDAT", _zero_rows(width, height, bits))
        + _chunk(b"IEND", b"")
    )


@functools.cache
def _zero_rows(width: int, height: int, bits: int) -> bytes:
    row = bytes(1 + (width * bits + 7) // 8)  # filter byte 0, then the pixels
    z = zlib.compressobj(6)
    parts = [z.compress(row) for _ in range(height)]
    parts.append(z.flush())
    return b"".join(parts)


def noise_png(side: int, seed: int) -> bytes:
    """An incompressible RGB PNG of about ``3 x side^2`` bytes."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def start(tmp_path: Path, images: dict[str, Any], server: dict[str, Any] | None = None) -> Any:
    import msgspec

    config = {"data_dir": str(tmp_path / "data"), "images": images, "server": server or {}}
    path = tmp_path / "imgdex.yaml"
    path.write_bytes(msgspec.yaml.encode(config))
    return ServerProcess(path).start()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Any]:
    servers: list[ServerProcess] = []

    def run(images: dict[str, Any], server: dict[str, Any] | None = None) -> ServerProcess:
        proc = start(tmp_path, images, server)
        servers.append(proc)
        return proc

    yield run
    for proc in servers:
        proc.stop()


def upload(client: httpx.Client, data: bytes, name: str = "bomb.png") -> httpx.Response:
    return client.post("/api/images", files={"file": (name, data, "image/png")})


def pid_of(server: ServerProcess) -> int:
    assert server.proc is not None
    return server.proc.pid


def test_a_16_bit_png_bomb_decodes_in_bounded_memory_or_is_refused(served: Any) -> None:
    # 8000 x 8000 16-bit grey: 128 MB as decoded; the float64 path took over 1 GB.
    server = served({"decode_budget_bytes": 200 * MiB, "max_pixels": 150_000_000})
    pid = pid_of(server)
    bomb = png_bomb(8000, 8000, 16)
    assert len(bomb) < 400_000
    with server.client() as client:
        start_hwm = memory_kb(pid, "VmHWM")
        r = upload(client, bomb)
        assert r.status_code == 201, r.text
        assert (r.json()["width"], r.json()["height"]) == (8000, 8000)
        grown = (memory_kb(pid, "VmHWM") - start_hwm) / 1024
        assert grown < 350, f"peak memory grew {grown:.0f} MiB for a 128 MB raster"
        thumb = client.get(f"/api/images/{r.json()['sha256']}/thumbnail")
        assert thumb.status_code == 200
        assert Image.open(io.BytesIO(thumb.content)).size == (256, 256)

        # Twice the pixels (under max_pixels) cost more than the whole budget: a 422.
        r = upload(client, png_bomb(11000, 11000, 16))
        assert r.status_code == 422, r.text
        assert r.json()["error"] == "image_too_expensive"
        assert "decode budget of 200 MiB" in r.json()["detail"]

        # Above twice max_pixels Pillow's own message quotes twice our limit: ours is quoted.
        r = upload(client, png_bomb(18000, 18000, 1))
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert "limit of 150000000 pixels" in detail and "300000000" not in detail, detail


def test_a_one_row_1_bit_png_of_100m_pixels_costs_its_raster_only(served: Any) -> None:
    server = served({"decode_budget_bytes": 400 * MiB})
    pid = pid_of(server)
    bomb = png_bomb(100_000_000, 1, 1)
    assert len(bomb) < 100_000
    with server.client() as client:
        start_hwm = memory_kb(pid, "VmHWM")
        r = upload(client, bomb)
        assert r.status_code == 201, r.text
        assert (r.json()["width"], r.json()["height"]) == (100_000_000, 1)
        grown = (memory_kb(pid, "VmHWM") - start_hwm) / 1024
        # Pillow keeps 1 byte per 1-bit pixel: 95 MiB; an RGB copy alone was 380 MiB.
        assert grown < 200, f"peak memory grew {grown:.0f} MiB"


def test_parallel_bombs_share_one_budget_and_memory_returns(served: Any) -> None:
    # Each bomb costs about 85 MiB to decode; the budget lets two decode at once.
    budget = 180
    server = served({"decode_budget_bytes": budget * MiB})
    pid = pid_of(server)
    bombs = [png_bomb(6000, 6000, 16, seed=i + 1) for i in range(6)]
    with server.client() as client:
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            # Warm up: the worker threads, their database connections, the code paths.
            small = [png_bomb(64, 64, 16, seed=-i - 1) for i in range(6)]
            assert {r.status_code for r in pool.map(lambda b: upload(client, b), small)} == {201}
            start_hwm, start_rss = memory_kb(pid, "VmHWM"), memory_kb(pid, "VmRSS")
            answers = list(pool.map(lambda b: upload(client, b), bombs))
        assert [r.status_code for r in answers] == [201] * 6, [r.text for r in answers]
        grown = (memory_kb(pid, "VmHWM") - start_hwm) / 1024
        # Unbounded, six at once took over 500 MiB (and gigabytes before 8-bit decoding).
        assert grown < budget + 100, f"six parallel bombs grew peak memory by {grown:.0f} MiB"
        # Everything freed goes back to the system (malloc arenas trimmed), once the
        # background work the uploads queued (captions of the toy describer) is done.
        deadline = time.monotonic() + 10
        while True:
            kept = (memory_kb(pid, "VmRSS") - start_rss) / 1024
            if kept < 40 or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        assert kept < 40, f"resident memory stayed {kept:.0f} MiB above its start"


def test_image_search_checks_its_options_before_the_image(served: Any) -> None:
    # The query image would cost more than the budget to decode: had it been decoded
    # first, the answer would be its 422, not the option's error.
    server = served({"decode_budget_bytes": 64 * MiB})
    pid = pid_of(server)
    bomb = png_bomb(9000, 9000, 16)
    encoded = base64.b64encode(bomb).decode()
    with server.client() as client:
        start_hwm = memory_kb(pid, "VmHWM")
        files = {"file": ("q.png", bomb, "image/png")}
        began = time.monotonic()
        r = client.post("/api/search/image", files=files, data={"index": "nope"})
        assert (r.status_code, r.json()["error"]) == (404, "unknown_index"), r.text
        r = client.post("/api/search/image/base64", json={"image": encoded, "index": "nope"})
        assert (r.status_code, r.json()["error"]) == (404, "unknown_index"), r.text
        r = client.post("/api/search/image/base64", json={"image": encoded, "weights": {"x": 1}})
        assert (r.status_code, r.json()["error"]) == (400, "unknown_index"), r.text
        r = client.post("/api/search/image", files=files, data={"top_k": "0"})
        assert r.status_code == 400, r.text
        assert time.monotonic() - began < 5
        assert (memory_kb(pid, "VmHWM") - start_hwm) / 1024 < 60
        # With good options the same image is decoded and refused for its cost.
        r = client.post("/api/search/image", files=files)
        assert (r.status_code, r.json()["error"]) == (422, "image_too_expensive"), r.text


def _slow_body(body: bytes, seconds: float) -> Iterator[bytes]:
    step = max(1, len(body) // 10)
    for i in range(0, len(body), step):
        yield body[i : i + step]
        time.sleep(seconds / 10)


def test_parallel_large_uploads_are_staged_bounded_and_refused_past_the_budget(
    served: Any,
) -> None:
    server = served(
        {},
        {"upload_spool_bytes": MiB, "uploads_in_flight_bytes": 40 * MiB, "upload_wait": 0.3},
    )
    pid = pid_of(server)
    images = [noise_png(1800, seed) for seed in range(5)]  # about 9.7 MB each
    boundary = "bombsboundary"

    def post(data: bytes) -> httpx.Response:
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="n.png"\r\n'
                f"Content-Type: image/png\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(body)),
        }
        with server.client() as client:
            # Each body takes about 1.5 s to arrive: the uploads overlap for sure.
            return client.post("/api/images", content=_slow_body(body, 1.5), headers=headers)

    start_hwm = memory_kb(pid, "VmHWM")
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(post, images))
    codes = sorted(r.status_code for r in answers)
    assert codes == [201] * 4 + [503], [r.text for r in answers]  # 4 x 9.7 MB fit in 40 MiB
    busy = next(r for r in answers if r.status_code == 503)
    assert busy.json()["error"] == "busy" and int(busy.headers["Retry-After"]) >= 1
    grown = (memory_kb(pid, "VmHWM") - start_hwm) / 1024
    assert grown < 150, f"four 9.7 MB uploads grew peak memory by {grown:.0f} MiB"
    with server.client() as client:
        for data, r in zip(images, answers, strict=True):
            if r.status_code != 201:
                continue
            assert r.json()["sha256"] == hashlib.sha256(data).hexdigest()[:32]
            stored = client.get(f"/api/images/{r.json()['sha256']}/file")
            assert stored.content == data  # the staged file itself, stored whole
        # The one refused is accepted once the others are done.
        refused = images[[r.status_code for r in answers].index(503)]
        assert upload(client, refused).status_code == 201
    staging = Path(server.config_file).parent / "data" / "storage" / ".tmp"
    assert not any(staging.iterdir()), "no staged upload is left behind"
