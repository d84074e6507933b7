"""Hostile clients against a real server on loopback: big heads, stalls, big and deep JSON.

Each attack is bounded in size and time; the server runs in its own process with short
timeouts (``server:`` section) so a stall is detected in about a second.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from imgdex.config import decode_config
from imgdex.errors import ConfigError
from imgdex.testing import image_bytes, make_config

from .serverproc import ServerProcess

TIMEOUT = 1.0  # header_timeout and body_timeout of the test server
KEEP_ALIVE = 1
MAX_CONNECTIONS = 40


def start_server(tmp_path: Path) -> ServerProcess:
    config = make_config(
        tmp_path / "data",
        server={
            "admin_token": "test-admin-token",
            "header_timeout": TIMEOUT,
            "body_timeout": TIMEOUT,
            "keep_alive_timeout": KEEP_ALIVE,
            "max_connections": MAX_CONNECTIONS,
        },
    )
    path = tmp_path / "imgdex.yaml"
    path.write_bytes(msgspec.yaml.encode(msgspec.to_builtins(config)))
    return ServerProcess(path).start()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path_factory.mktemp("http"))
    try:
        yield proc
    finally:
        proc.stop()


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed (or `limit`)."""
    start = time.monotonic()
    sock.settimeout(limit)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data, time.monotonic() - start


def health_time(server: ServerProcess) -> float:
    start = time.monotonic()
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200
    return time.monotonic() - start


def test_huge_head_gets_431_at_once_and_health_stays_fast(server: ServerProcess) -> None:
    sock = connect(server)
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"

    def send() -> None:
        # The server closes after answering 431, as it should: the send then fails.
        with contextlib.suppress(OSError):
            sock.sendall(head)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert health_time(server) < 1.0
        data, took = read_until_closed(sock, 10)
    finally:
        sender.join()
        sock.close()
    assert data.startswith(b"HTTP/1.1 431"), data[:200]
    assert b'"error":"headers_too_large"' in data
    assert took < 5
    # A head under the limit is still served.
    r = httpx.get(server.url + "/health", headers={"X-Fair": "a" * 32_000}, timeout=10)
    assert r.status_code == 200


def test_stalled_head_is_dropped(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        data, took = read_until_closed(sock, TIMEOUT + 10)
    assert took < TIMEOUT + 3, "the half-sent head was kept open"
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    with connect(server) as sock:  # the second request on a kept-alive connection
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        _, took = read_until_closed(sock, TIMEOUT + 10)
    assert took < max(TIMEOUT, KEEP_ALIVE) + 3
    with connect(server) as silent:
        data, took = read_until_closed(silent, TIMEOUT + 10)
    assert data == b"" and took < TIMEOUT + 3, "a connection that sends nothing was kept open"


def test_slow_head_is_dropped_at_the_deadline(server: ServerProcess) -> None:
    """A head trickled a byte at a time (slowloris) has one deadline, not one per byte."""
    with connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        start = time.monotonic()
        answer = None
        while answer is None and time.monotonic() - start < TIMEOUT + 5:
            time.sleep(0.2)
            try:
                sock.sendall(b"a")
                sock.settimeout(0.01)
                answer = sock.recv(4096)  # the 408, or b"" once closed
            except TimeoutError:
                continue
            except OSError:
                answer = b""
    assert answer is not None and time.monotonic() - start < TIMEOUT + 3


def test_stalled_body_is_dropped(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"POST /api/search/text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"query": "re'
        )
        _, took = read_until_closed(sock, TIMEOUT + 10)
    assert took < TIMEOUT + 3, "the half-sent body was kept open"
    assert health_time(server) < 1.0


def test_idle_keep_alive_connection_is_closed(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        data, took = read_until_closed(sock, KEEP_ALIVE + 10)
    assert data.startswith(b"HTTP/1.1 200")
    assert took < KEEP_ALIVE + 2.5, "the idle keep-alive connection was kept open"


def test_connections_past_the_cap_get_503(server: ServerProcess) -> None:
    socks = [connect(server) for _ in range(MAX_CONNECTIONS + 5)]
    try:
        refused = []
        for sock in socks[MAX_CONNECTIONS - 5 :]:
            sock.settimeout(0.5)
            try:
                first = sock.recv(4096)
            except TimeoutError:
                continue
            if first.startswith(b"HTTP/1.1 503"):
                assert b"retry-after: 1" in first.lower()
                refused.append(first)
        assert len(refused) >= 5, "no connection past max_connections was refused"
    finally:
        for sock in socks:
            sock.close()
    time.sleep(0.2)
    assert health_time(server) < 1.0


def test_json_bodies_over_max_json_bytes_get_413(server: ServerProcess) -> None:
    big = msgspec.json.encode({"query": "red", "methods": ["human"] * 300_000})  # ~2.7 MB
    with server.client() as client:
        r = client.post(
            "/api/search/text", content=big, headers={"content-type": "application/json"}
        )
        assert r.status_code == 413, r.text
        assert r.json()["error"] == "payload_too_large"
        assert "max_json_bytes" in r.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
            for i in range(0, len(big), 65536):
                yield big[i : i + 65536]

        r = client.post(
            "/api/search/text", content=chunks(), headers={"content-type": "application/json"}
        )
        assert r.status_code == 413, r.text
        # Base64 image search is JSON with an image inside: bounded like an upload.
        photo = image_bytes("red", size=(900, 900), fmt="BMP")
        assert len(photo) > 1 << 20
        r = client.post(
            "/api/search/image/base64", json={"image": base64.b64encode(photo).decode()}
        )
        assert r.status_code == 200, r.text
    assert health_time(server) < 1.0


@pytest.mark.parametrize("depth", [5_000, 200_000])
def test_deeply_nested_json_is_400_on_every_json_endpoint(
    server: ServerProcess, depth: int
) -> None:
    with server.client() as client:
        sha = client.post(
            "/api/images", files={"file": ("a.png", image_bytes("blue"), "image/png")}
        ).json()["sha256"]
        deep = b"[" * depth + b"]" * depth
        inside = b'{"query": ' + deep + b"}"
        for path in (
            "/api/search/text",
            "/api/search/image/base64",
            f"/api/images/{sha}/descriptions",
        ):
            for body in (deep, inside):
                r = client.post(path, content=body, headers={"content-type": "application/json"})
                assert r.status_code == 400, (path, r.status_code, r.text[:200])
                assert r.json()["error"] in ("bad_json", "invalid_request"), r.text[:200]
        assert client.post("/api/search/text", content=deep).json()["error"] == "bad_json"


def test_client_disconnect_is_counted_not_logged_as_error(tmp_path: Path) -> None:
    proc = start_server(tmp_path)
    try:
        for _ in range(3):
            with connect(proc) as sock:
                sock.sendall(
                    b"POST /api/search/text HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                    + b'{"query": "re'
                )
                time.sleep(0.1)
        deadline = time.monotonic() + 10
        disconnects = 0
        while time.monotonic() < deadline and disconnects < 3:
            stats = httpx.get(proc.url + "/api/stats", timeout=10).json()
            disconnects = stats.get("http", {}).get("client_disconnects", 0)
            time.sleep(0.1)
    finally:
        out = proc.stop()
    assert "disconnected prematurely" not in out
    assert "500" not in out and "Traceback" not in out, out[-2000:]
    assert disconnects == 3


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_header_bytes", 10),
        ("max_json_bytes", 0),
        ("header_timeout", 0),
        ("max_connections", 0),
    ],
)
def test_limits_that_would_refuse_everything_are_config_errors(key: str, value: int) -> None:
    with pytest.raises(ConfigError, match=f"server.{key}"):
        decode_config(msgspec.yaml.encode({"server": {key: value}}), "test")
