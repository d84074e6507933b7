"""Ingest: uploads/s of real-sized photos through the server, against a raw loop.

The photos are photo-like (smooth colour fields at several scales plus sensor noise,
`_common.photo`), 4:3, from 1 to 12 megapixels, saved as JPEG (quality 90, about 0.3
bytes per pixel like a phone photo) and PNG (about 2 bytes per pixel). Each set is
uploaded with ``POST /api/images/`` to the real server under uvicorn on a loopback port,
by one client and by two concurrent clients (multipart bodies built before the clock
starts and sent with http.client on a keep-alive connection per client; ``--client
httpx`` encodes while timed, as the first published figures were taken), with:

- ``null``: one `NullEmbedder` (an 8x8 crop hashed into a vector: the models are not
  the bottleneck, so this measures the pipeline: HTTP, hashing, decoding, thumbnail,
  fsynced writes, catalog, vector files and index);
- ``toy``: the core's test embedders (`ColorEmbedder`: a 32x32 resize of the decoded
  image, and `WordEmbedder`, which embeds no images).

The raw loop runs in its own process and does the same essential work with Pillow
directly, one image after another, the cheapest sensible way: SHA-256, decode (JPEG
draft to >= 1024 px, as the core), EXIF transpose when the file has an orientation, a
256 px LANCZOS JPEG thumbnail (quality 85, optimize) resized straight from the decoded
image, and both files written with fsync into a directory renamed into place. Between the two, the
library loop awaits `Ingest.ingest` (what the upload endpoint awaits) in its own
process with the null embedder: the core's pipeline without HTTP. Peak RSS is VmHWM of
the server's and of the loops' processes (VmHWM).

The pipelines take turns for ``--rounds`` rounds (3): the raw loop, the library loop,
then each server (a fresh data directory every time). Each row reports its median round.
Every pipeline first handles one photo of each size and format, not measured (a
process's first large image costs 30-60 ms more than the next).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from _common import (
    BenchServer,
    encode,
    multipart,
    photo,
    proc_memory,
    server_config,
    table,
    workdir,
    write_json,
)

SIZES_MP = {1: (1152, 864), 3: (2048, 1536), 6: (2832, 2124), 12: (4000, 3000)}
MEDIA = {"JPEG": ("jpg", "image/jpeg"), "PNG": ("png", "image/png")}


def make_photos(root: Path, sizes: list[int], per_size: dict[str, int], tag: str) -> list[Path]:
    """Photo files (cached in `root`), distinct across sets by `tag`."""
    folder = root / "photos-v1"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt, count in per_size.items():
        for mp in sizes:
            for i in range(count):
                ext = MEDIA[fmt][0]
                path = folder / f"{tag}-{mp}mp-{i}.{ext}"
                if not path.is_file():
                    w, h = SIZES_MP[mp]
                    seed = int(hashlib.sha256(path.name.encode()).hexdigest()[:8], 16)
                    tmp = path.with_suffix(".tmp")
                    tmp.write_bytes(encode(photo(w, h, seed), fmt))
                    tmp.replace(path)
                paths.append(path)
    return paths


# --- the raw loop (runs in its own process) ----------------------------------------------


def raw_loop(files: list[Path], out: Path, warm: list[Path]) -> dict[str, Any]:
    from PIL import Image, ImageOps

    times = []
    for path in [*warm, *files]:
        t0 = time.perf_counter()
        data = path.read_bytes()
        full = hashlib.sha256(data).hexdigest()
        im = Image.open(io.BytesIO(data))
        im.draft("RGB", (1024, 1024))
        im.load()
        if im.getexif().get(0x0112, 1) != 1:  # exif_transpose copies even when it is a no-op
            im = ImageOps.exif_transpose(im)
        if im.mode != "RGB":
            im = im.convert("RGB")
        scale = min(256 / im.width, 256 / im.height, 1.0)
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        # What Image.thumbnail does, without copying the full image first.
        thumb = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
        buf = io.BytesIO()
        thumb.save(buf, "JPEG", quality=85, optimize=True)
        final = out / full[:2] / full[2:4] / full[4:32]
        staging = out / ".tmp" / full[:32]
        staging.mkdir(parents=True)
        for name, payload in ((f"image{path.suffix}", data), ("thumbnail.jpg", buf.getvalue())):
            with open(staging / name, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, final)
        fd = os.open(final.parent, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        times.append(time.perf_counter() - t0)
    times = times[len(warm) :]  # the warm-up is not measured
    return {
        "seconds": sum(times),
        "per_image_s": times,
        "peak_rss": proc_memory()["peak_rss"],
    }


def library_loop(files: list[Path], out: Path, warm: list[Path]) -> dict[str, Any]:
    """`Ingest.ingest` (what the upload endpoint awaits) with the null embedder, no HTTP."""
    from _embedders import build_plugins

    from imgdex.config import decode_config
    from imgdex.index import flat, hnsw
    from imgdex.plugins import PluginHost
    from imgdex.runtime import Runtime

    config = decode_config(json.dumps(server_config(out)).encode(), "bench")
    host = PluginHost(config)
    host.add("hnswlib", hnsw)
    host.add("flat", flat)
    for name, plugin in build_plugins([{"kind": "null"}]).items():
        host.add(name, plugin)
    library = Runtime(config, host)

    async def ingest_all() -> float:
        for path in warm:  # opens the index, warms the decoders (not measured)
            await library.ingest.ingest(path.read_bytes())
        t0 = time.perf_counter()
        for path in files:
            response = await library.ingest.ingest(path.read_bytes())
            if response.errors or response.duplicate:
                raise RuntimeError(f"{path}: {response}")
        return time.perf_counter() - t0

    try:
        seconds = asyncio.run(ingest_all())
    finally:
        library.close()
    return {
        "seconds": seconds,
        "peak_rss": proc_memory()["peak_rss"],
    }


def run_loop(kind: str, files: list[Path], root: Path, warm: list[Path]) -> dict[str, Any]:
    """The raw loop or the library loop, in a fresh process (for its own peak RSS)."""
    out = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=root))
    listing = out / "files.json"
    listing.write_text(
        json.dumps({"files": [str(p) for p in files], "warm": [str(p) for p in warm]})
    )
    try:
        proc = subprocess.run(
            [sys.executable, __file__, f"--{kind}-loop", str(listing), str(out / "store")],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _median_round(results: list[dict[str, Any]], formats: list[str]) -> dict[str, Any]:
    """One pipeline's rounds as one result: per format the median round's seconds (and
    every round's), all errors, the highest peak RSS."""
    out: dict[str, Any] = {}
    for fmt in formats:
        out[fmt] = {
            "seconds": statistics.median(r[fmt]["seconds"] for r in results),
            "round_seconds": [r[fmt]["seconds"] for r in results],
            "errors": [e for r in results for e in r[fmt].get("errors", [])],
        }
        peaks = [r[fmt]["peak_rss"] for r in results if "peak_rss" in r[fmt]]
        if peaks:
            out[fmt]["peak_rss"] = max(peaks)
    peaks = [r["peak_rss"] for r in results if "peak_rss" in r]
    if peaks:
        out["peak_rss"] = max(peaks)
    return out


# --- the server ------------------------------------------------------------------------


class Uploads:
    """A set of files to upload, ready to send.

    With the light client (the default) each request's multipart body is built here,
    before the clock starts, and sent with `http.client` from a thread per client: the
    measured time is the server's and the transport's, not the client's encoding, which
    on two shared cores is CPU taken from the server. ``client="httpx"`` encodes while
    timed, as the figures of 2026-11-23 were taken."""

    def __init__(self, payloads: list[tuple[str, bytes]], client: str = "light") -> None:
        self.client = client
        self.payloads = payloads
        self.bodies = [] if client == "httpx" else [multipart(self._fields(*p)) for p in payloads]

    @staticmethod
    def _fields(name: str, data: bytes) -> dict[str, tuple[str, bytes, str] | str]:
        return {"file": (name, data, MEDIA["PNG" if name.endswith(".png") else "JPEG"][1])}

    async def send(self, url: str, clients: int) -> list[str]:
        """Upload everything from `clients` concurrent workers; returns the errors."""
        errors: list[str] = []
        queue = list(range(len(self.payloads)))

        def check(i: int, status: int, body: bytes) -> None:
            if status != 201 or json.loads(body)["errors"]:
                errors.append(f"{self.payloads[i][0]}: HTTP {status} {body[:200]!r}")

        if self.client == "httpx":
            async with httpx.AsyncClient(base_url=url, timeout=600) as session:

                async def httpx_worker() -> None:
                    while queue:
                        i = queue.pop(0)
                        files = self._fields(*self.payloads[i])
                        r = await session.post("/api/images/", files=files)
                        check(i, r.status_code, r.content)

                await asyncio.gather(*(httpx_worker() for _ in range(clients)))
            return errors
        host, port = url.removeprefix("http://").split(":")
        lock = threading.Lock()

        def worker() -> None:
            # http.client hands the prepared body to the kernel in one sendall; an
            # asyncio client paces a 23 MB body through its event loop, which on two
            # shared cores showed up as the server's receive time.
            conn = http.client.HTTPConnection(host, int(port), timeout=600)
            try:
                while True:
                    with lock:
                        if not queue:
                            return
                        i = queue.pop(0)
                    body, content_type = self.bodies[i]
                    conn.request("POST", "/api/images/", body, {"Content-Type": content_type})
                    answer = conn.getresponse()
                    data = answer.read()
                    with lock:
                        check(i, answer.status, data)
            finally:
                conn.close()

        threads = [threading.Thread(target=worker) for _ in range(clients)]
        for t in threads:
            t.start()
        await asyncio.to_thread(lambda: [t.join() for t in threads])
        return errors


def run_server(
    root: Path,
    plugin: str,
    clients: int,
    sets: dict[str, list[Path]],
    warm: list[Path],
    client: str = "light",
) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix=f"ingest-{plugin}-", dir=root))
    spec = {"config": server_config(data), "plugins": [{"kind": plugin}]}
    out: dict[str, Any] = {}
    try:
        with BenchServer(spec, root) as server:
            server.settle()
            # Warm-up (first-request paths, codecs, worker threads), as the loops get.
            warm_up = Uploads([(p.name, p.read_bytes()) for p in warm], client)
            asyncio.run(warm_up.send(server.url, 1))
            server.settle(timeout=120)
            for fmt, files in sets.items():
                uploads = Uploads([(p.name, p.read_bytes()) for p in files], client)
                t0 = time.perf_counter()
                errors = asyncio.run(uploads.send(server.url, clients))
                elapsed = time.perf_counter() - t0
                out[fmt] = {"seconds": elapsed, "errors": errors}
                server.settle(timeout=120)  # the enricher's follow-up work, if any
            out["peak_rss"] = server.memory()["peak_rss"]
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,3,6,12", help="megapixels (of 1,3,6,12)")
    parser.add_argument("--jpeg", type=int, default=3, help="JPEG photos per size")
    parser.add_argument("--png", type=int, default=1, help="PNG photos per size")
    parser.add_argument("--plugins", default="null,toy", help="server embedders: null, toy")
    parser.add_argument("--clients", default="1,2", help="concurrent uploaders")
    parser.add_argument("--cache", type=Path, help="keep the generated photos here")
    parser.add_argument(
        "--rounds", type=int, default=3, help="pipelines take turns this many times (medians)"
    )
    parser.add_argument(
        "--client",
        choices=("light", "httpx"),
        default="light",
        help="uploader: prepared bodies on a light connection, or httpx (encodes while timed)",
    )
    parser.add_argument("--quick", action="store_true", help="1 and 3 MP only (smoke test)")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/ingest.json)")
    parser.add_argument("--raw-loop", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--library-loop", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for loop, fn in ((args.raw_loop, raw_loop), (args.library_loop, library_loop)):
        if loop:
            listing = json.loads(Path(loop[0]).read_text())
            files, warm = ([Path(p) for p in listing[k]] for k in ("files", "warm"))
            print(json.dumps(fn(files, Path(loop[1]), warm)))
            return 0
    if args.quick:
        args.sizes, args.jpeg, args.png, args.plugins, args.clients = "1,3", 2, 1, "null", "1"
        args.rounds = 1
    sizes = [int(s) for s in args.sizes.split(",")]
    plugins = args.plugins.split(",")
    clients = [int(c) for c in args.clients.split(",")]
    runs: list[dict[str, Any]] = []
    with workdir(args.cache) as root:
        print("generating photos (cached with --cache)", flush=True)
        counts = {"JPEG": args.jpeg, "PNG": args.png}
        # Every server run gets its own photos: a repeated file would be a duplicate.
        n_sets = 2 + len(plugins) * len(clients)
        sets = [
            {fmt: make_photos(root, sizes, {fmt: c}, f"set{k}") for fmt, c in counts.items() if c}
            for k in range(n_sets)
        ]
        # One photo of each size and format, uploaded first by every pipeline and not
        # measured: the first large image a process decodes (and, in the server, the
        # first multipart part spooled to disk) costs 30-60 ms more than the next.
        warm = [
            p for fmt, c in counts.items() if c for p in make_photos(root, sizes, {fmt: 1}, "warm")
        ]
        facts = {
            fmt: {
                "images": len(files),
                "bytes": sum(p.stat().st_size for p in files),
                "megapixels": sum(sizes) * counts[fmt],
            }
            for fmt, files in sets[0].items()
        }
        # The pipelines take turns, round after round (a fresh data directory for each
        # server, so the same photos are new to it), and each reports its median round:
        # on two shared cores one pass of each, one after another, moved the ratios by
        # 0.15 between runs.
        rounds: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for r in range(args.rounds):
            rounds.setdefault(("raw loop", 1), []).append(
                {fmt: run_loop("raw", files, root, warm) for fmt, files in sets[0].items()}
            )
            rounds.setdefault(("Ingest.ingest, null", 1), []).append(
                {fmt: run_loop("library", files, root, warm) for fmt, files in sets[1].items()}
            )
            k = 2
            for plugin in plugins:
                for c in clients:
                    result = run_server(root, plugin, c, sets[k], warm, args.client)
                    rounds.setdefault((f"server, {plugin}", c), []).append(result)
                    k += 1
            print(f"  round {r + 1}/{args.rounds} done", flush=True)
        runs = [
            {"pipeline": pipeline, "clients": c, **_median_round(results, list(facts))}
            for (pipeline, c), results in rounds.items()
        ]
        raw = runs[0]
    rows = []
    for run in runs:
        for fmt, fact in facts.items():
            seconds = run[fmt]["seconds"]
            ips = fact["images"] / seconds
            raw_ips = fact["images"] / raw[fmt]["seconds"]
            run[fmt]["images_per_s"] = ips
            run[fmt]["vs_raw"] = ips / raw_ips
            rows.append(
                [
                    fmt,
                    run["pipeline"],
                    run["clients"],
                    ips,
                    fact["megapixels"] / seconds,
                    fact["bytes"] / seconds / 1e6,
                    ips / raw_ips,
                    len(run[fmt].get("errors", [])),
                    run.get("peak_rss", run[fmt].get("peak_rss", 0)) / 2**20,
                ]
            )
    counted = ", ".join(f"{fact['images']} {fmt}" for fmt, fact in facts.items())
    table(
        f"Ingest of {counted} photos ({'/'.join(map(str, sizes))} MP)",
        [
            "format",
            "pipeline",
            "clients",
            "images/s",
            "MP/s",
            "MB/s",
            "x raw",
            "errors",
            "peak RSS MiB",
        ],
        rows,
    )
    null_1 = next((r for r in runs if r["pipeline"] == "server, null" and r["clients"] == 1), None)
    targets: dict[str, Any] = {}
    if null_1 is not None:
        worst = min(null_1[fmt]["vs_raw"] for fmt in facts)
        targets = {"server_null_1_client_vs_raw_min": worst, "met": worst >= 0.8}
        table(
            "Target",
            ["target", "measured", "met"],
            [["server (null embedder, 1 client) >= 0.8 x raw loop", worst, worst >= 0.8]],
        )
    for run in runs:
        for fmt in facts:
            run[fmt].pop("per_image_s", None)
    write_json(
        "ingest",
        {
            "settings": {
                "sizes_mp": sizes,
                "per_size": counts,
                "plugins": plugins,
                "clients": clients,
                "client": args.client,
                "rounds": args.rounds,
            },
            "photos": facts,
            "runs": runs,
            "targets": targets,
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
