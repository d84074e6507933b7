"""Shared helpers of the benchmark scripts: tables, JSON results, timing statistics,
machine facts, process memory and CPU, clustered test vectors, and a real imgdex server
run with uvicorn in a subprocess on a loopback port.

Standard library plus the project's own dependencies only.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
SERVER_SCRIPT = BENCH / "_server.py"
TOKEN = "bench-admin-token"

_PACKAGES = (
    "imgdex",
    "litestar",
    "uvicorn",
    "httptools",
    "uvloop",
    "httpx",
    "msgspec",
    "hnswlib",
    "numpy",
    "pillow",
    "torch",
    "transformers",
    "onnxruntime-gpu",
)


# --- statistics and output -----------------------------------------------------------


def stats_ms(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/mean/min/max in milliseconds of durations given in seconds."""
    if not samples_s:
        return {"n": 0}
    ms = sorted(x * 1000.0 for x in samples_s)

    def pct(p: float) -> float:
        # Nearest-rank on sorted samples: p99 of 500 samples is the 495th.
        return ms[min(len(ms) - 1, max(0, round(p / 100.0 * len(ms)) - 1))]

    return {
        "n": len(ms),
        "p50": pct(50),
        "p90": pct(90),
        "p99": pct(99),
        "mean": statistics.fmean(ms),
        "min": ms[0],
        "max": ms[-1],
    }


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.{digits}f}"
    return str(value)


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An aligned plain-text table (numbers right-aligned), printed and returned."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    numeric = [
        all(isinstance(r[i], int | float) or r[i] is None for r in rows) if rows else False
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]) for i, v in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    out = [title, line(headers), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    text = "\n".join(out)
    print(text + "\n", flush=True)
    return text


def write_json(name: str, payload: dict[str, Any], out: Path | None = None) -> Path:
    """Write ``bench/results/<name>.json`` (or `out`) with the machine and command line."""
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        **payload,
    }
    path.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
    print(f"results written to {path}", flush=True)
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_total = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) * 1024
    versions = {}
    for package in _PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_bytes": mem_total,
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "packages": versions,
    }


# --- processes --------------------------------------------------------------------------


def proc_memory(pid: int | None = None) -> dict[str, int]:
    """``{"rss", "peak_rss", "anon", "file"}`` of a process in bytes (VmRSS, VmHWM,
    RssAnon, RssFile), Linux only. ``anon`` is the process's own memory; ``file`` counts
    pages of mapped files (the catalog under ``PRAGMA mmap_size``, libraries), which are
    page cache the kernel may drop."""
    out = {"rss": 0, "peak_rss": 0, "anon": 0, "file": 0}
    fields = {"VmRSS:": "rss", "VmHWM:": "peak_rss", "RssAnon:": "anon", "RssFile:": "file"}
    path = Path(f"/proc/{pid or 'self'}/status")
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key = line.split(maxsplit=1)[0] if line else ""
            if key in fields:
                out[fields[key]] = int(line.split()[1]) * 1024
    return out


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time a process has used so far."""
    try:
        fields = Path(f"/proc/{pid or 'self'}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def wait_idle(pid: int, *, below: float = 0.05, window: float = 1.0, timeout: float = 300) -> float:
    """Wait until a process uses less than `below` of a core over `window` seconds
    (start-up reconciliation, model loading and index opening have finished).
    Returns the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        before = cpu_seconds(pid)
        time.sleep(window)
        if (cpu_seconds(pid) - before) / window < below:
            break
    return time.monotonic() - start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dir_size(path: Path) -> dict[str, int]:
    """``{"apparent": bytes in files, "allocated": bytes of disk blocks, "files": count}``."""
    apparent = allocated = files = 0
    for root, dirs, names in os.walk(path):
        for name in [*names, *dirs]:
            with contextlib.suppress(FileNotFoundError):
                st = os.lstat(os.path.join(root, name))
                allocated += st.st_blocks * 512
                if name in names:
                    apparent += st.st_size
                    files += 1
    return {"apparent": apparent, "allocated": allocated, "files": files}


class BenchServer:
    """imgdex under uvicorn in its own process, on a free loopback port.

    `spec` is what ``bench/_server.py`` reads: ``config`` (a config mapping), ``plugins``
    (see ``bench/_embedders.build_plugins``), ``background`` and ``preload``.
    """

    def __init__(self, spec: dict[str, Any], workdir: Path, env: dict[str, str] | None = None):
        self.spec = spec
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"server-{self.port}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 600, lazy: bool = False) -> BenchServer:
        """Start and wait until every model is loaded (`lazy`: or not loaded yet, for a
        server without background tasks, whose models load on first use)."""
        ready = {"ready", "not_loaded"} if lazy else {"ready"}
        spec_file = self.workdir / f"server-{self.port}.json"
        spec_file.write_text(json.dumps(self.spec))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(SERVER_SCRIPT), str(spec_file), str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited early:\n{self.log_tail()}")
                try:
                    health = client.get("/health").json()
                    states = [m["state"] for m in health["models"]]
                    if all(s in ready for s in states):
                        return self
                    if any(s == "failed" for s in states):
                        raise RuntimeError(f"a model failed to load: {health['models']}")
                except (httpx.HTTPError, ValueError, KeyError):
                    pass
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.log_tail()}")

    def settle(self, timeout: float = 600) -> float:
        """Wait until start-up work (storage reconciliation, index opening) is done."""
        return wait_idle(self.pid, timeout=timeout)

    def memory(self) -> dict[str, int]:
        return proc_memory(self.pid)

    def log_tail(self, chars: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.proc = None

    def __enter__(self) -> BenchServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def server_config(data_dir: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A config mapping with the shipped defaults except the data dir and admin token."""
    config: dict[str, Any] = {"data_dir": str(data_dir), "server": {"admin_token": TOKEN}}
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    return config


@contextlib.contextmanager
def workdir(keep: Path | None = None, prefix: str = "imgdex-bench-") -> Iterator[Path]:
    """`keep` (created, never deleted) or a temporary directory removed afterwards."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- vectors -----------------------------------------------------------------------------


def clustered_vectors(
    n: int,
    dim: int,
    *,
    seed: int,
    clusters: int | None = None,
    latent: int = 64,
    noise: float = 0.5,
) -> npt.NDArray[np.float32]:
    """Unit vectors shaped like real embeddings rather than random Gaussians.

    Points are drawn around `clusters` centres in a `latent`-dimensional space (real
    embeddings have a low intrinsic dimension), mapped into `dim` dimensions by a fixed
    random linear map, and given isotropic noise in all `dim` dimensions. The map is
    seeded by `dim` alone, so corpus and queries generated with different seeds share it.
    """
    clusters = clusters or max(8, n // 200)
    space = np.random.default_rng(1000 + dim)
    basis = space.standard_normal((latent, dim), dtype=np.float32) / np.sqrt(latent)
    centres = space.standard_normal((4096, latent), dtype=np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    chunk = 20_000
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        which = rng.integers(0, min(clusters, len(centres)), m)
        spread = rng.uniform(0.3, 1.0, (m, 1)).astype(np.float32)
        z = centres[which] + spread * rng.standard_normal((m, latent), dtype=np.float32)
        x = z @ basis
        x += noise * rng.standard_normal((m, dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start : start + m] = x
    return out


def exact_topk(
    corpus: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], k: int
) -> npt.NDArray[np.int64]:
    """Row numbers of the k highest inner products (cosine on unit vectors), exactly."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 256):
        sims = queries[start : start + 256] @ corpus.T
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.take_along_axis(sims, part, axis=1).argsort(axis=1)[:, ::-1]
        out[start : start + 256] = np.take_along_axis(part, order, axis=1)
    return out


def recall(found: Sequence[Sequence[int]], truth: npt.NDArray[np.int64], k: int) -> float:
    """Mean share of the true k nearest rows among the first k found, per query."""
    pairs = zip(found, truth, strict=True)
    hits = [len(set(list(f)[:k]) & set(t[:k].tolist())) / k for f, t in pairs]
    return float(np.mean(hits)) if hits else 0.0


# --- photo-like images -------------------------------------------------------------------


def photo(width: int, height: int, seed: int) -> Any:
    """A photo-like RGB image: smooth colour fields at several scales plus sensor noise,
    so JPEG and PNG files come out about as large as real photos of that size."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    acc = np.zeros((height, width, 3), dtype=np.float32)
    for cells, weight in ((3, 1.0), (12, 0.5), (48, 0.25), (192, 0.15), (768, 0.1)):
        grid = rng.uniform(0, 255, (max(2, cells * height // width), cells, 3)).astype(np.uint8)
        layer = Image.fromarray(grid, "RGB").resize((width, height), Image.Resampling.BICUBIC)
        acc += weight * np.asarray(layer, dtype=np.float32)
    acc *= 1.0 / 2.0
    acc += rng.normal(0.0, 5.0, (height, width, 1)).astype(np.float32)  # luminance grain
    acc += rng.normal(0.0, 3.0, (height, width, 3)).astype(np.float32)  # chroma noise
    return Image.fromarray(np.clip(acc, 0, 255).astype(np.uint8), "RGB")


def encode(image: Any, fmt: str, **kwargs: Any) -> bytes:
    import io

    buf = io.BytesIO()
    if fmt == "JPEG":
        kwargs.setdefault("quality", 90)
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


# --- a light HTTP/1.1 client for load generation ----------------------------------------


class LightConnection:
    """One keep-alive HTTP/1.1 connection on asyncio streams.

    A load generator on the same two cores as the server must cost little per request:
    httpx's async client spends a few ms of CPU per request at 32 connections, enough to
    make the client, not the server, the bottleneck. This sends prepared bytes and reads
    a Content-Length (or chunked) response, nothing more.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: Any = None
        self.writer: Any = None

    async def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        import asyncio

        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            parts = []
            while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                parts.append(await self.reader.readexactly(size + 2))
            await self.reader.readuntil(b"\r\n")
            data = b"".join(p[:-2] for p in parts)
        else:
            data = await self.reader.read()
        if headers.get("connection") == "close":
            await self.close()
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
            self.reader = self.writer = None


def multipart(fields: dict[str, tuple[str, bytes, str] | str]) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type (file fields: name, bytes, type)."""
    boundary = "imgdexbench" + os.urandom(8).hex()
    out = []
    for name, value in fields.items():
        if isinstance(value, tuple):
            filename, data, media = value
            head = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: {media}\r\n\r\n'
            )
            out += [head.encode(), data, b"\r\n"]
        else:
            disposition = f'Content-Disposition: form-data; name="{name}"'
            out.append(f"--{boundary}\r\n{disposition}\r\n\r\n{value}\r\n".encode())
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"
