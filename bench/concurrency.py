"""Concurrency: 1, 8 and 32 concurrent clients on search and on upload, real HTTP.

Two servers, each the real app under uvicorn on a loopback port, in its own process:

- search: a library of ``--n`` clustered vectors in one ``--dim`` index (built through
  the core like ``bench/search.py`` does, with a `TableEmbedder` answering the query
  ``"q17"`` from a table), hit with ``POST /api/search/text``;
- upload: an empty library with the core's toy embedders (`ColorEmbedder` and
  `WordEmbedder`, a few ms of CPU per image), hit with ``POST /api/images/`` multipart
  uploads of distinct photo-like JPEGs (``--upload-size``, quality 90).

Each level runs a fixed number of requests from N asyncio workers, each with its own
keep-alive connection. The default load generator is a minimal HTTP/1.1 client on
asyncio streams (`_common.LightConnection`): client and server share the machine's two
cores, and httpx's async client costs several ms of CPU per request at 32 connections,
which made the client the bottleneck (``--client httpx`` measures that).

Reported: requests/s, latency p50/p99, errors (any exception, any status >= 400, any
upload whose response lists embedding errors, or a search with fewer results than
asked), and the CPU used by server and client. After the upload levels the library must
hold exactly the images that were acknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from _common import (
    BenchServer,
    LightConnection,
    clustered_vectors,
    cpu_seconds,
    encode,
    multipart,
    photo,
    server_config,
    stats_ms,
    table,
    workdir,
    write_json,
)
from _embedders import table_index_name
from _library import dataset


class Client:
    """What a worker sends with: the light client (default) or httpx (``--client httpx``)."""

    def __init__(self, kind: str, url: str, http: httpx.AsyncClient | None) -> None:
        self.kind, self.http = kind, http
        host, port = url.removeprefix("http://").split(":")
        self.conn = LightConnection(host, int(port))

    async def post_json(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        if self.http is not None:
            r = await self.http.post(path, json=body)
            return r.status_code, r.content
        return await self.conn.request("POST", path, json.dumps(body).encode())

    async def post_file(self, path: str, name: str, data: bytes, media: str) -> tuple[int, bytes]:
        if self.http is not None:
            r = await self.http.post(path, files={"file": (name, data, media)})
            return r.status_code, r.content
        body, content_type = multipart({"file": (name, data, media)})
        return await self.conn.request("POST", path, body, content_type)


Request = Callable[[Client, int], Awaitable[str | None]]


async def run_level(
    url: str, pid: int, clients: int, requests: int, send: Request, kind: str
) -> dict[str, Any]:
    """`requests` calls of `send` from `clients` concurrent workers, one connection each."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    latencies: list[float] = []
    errors: list[str] = []
    counter = itertools.count()
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300) as http:

        async def worker() -> None:
            client = Client(kind, url, http if kind == "httpx" else None)
            while (i := next(counter)) < requests:
                t0 = time.perf_counter()
                try:
                    problem = await send(client, i)
                except Exception as exc:  # counted, never raised: errors are the result
                    problem = f"{type(exc).__name__}: {exc}"
                    await client.conn.close()
                latencies.append(time.perf_counter() - t0)
                if problem is not None:
                    errors.append(problem)
            await client.conn.close()

        server_cpu, client_cpu = cpu_seconds(pid), cpu_seconds()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - t0
        server_cpu, client_cpu = cpu_seconds(pid) - server_cpu, cpu_seconds() - client_cpu
    return {
        "clients": clients,
        "requests": requests,
        "elapsed_s": elapsed,
        "requests_per_s": requests / elapsed,
        "latency_ms": stats_ms(latencies),
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "server_cores": server_cpu / elapsed,
        "client_cores": client_cpu / elapsed,
    }


def search_levels(args: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    ds = dataset(root, args.n, [args.dim], args.seed)
    queries = clustered_vectors(1000, args.dim, seed=args.seed + 7919)
    np.save(root / f"queries-{args.dim}.npy", queries)
    spec = {
        "config": server_config(ds.data),
        "plugins": [
            {"kind": "table", "dim": args.dim, "table": str(root / f"queries-{args.dim}.npy")}
        ],
    }
    index = table_index_name(args.dim)

    async def send(client: Client, i: int) -> str | None:
        body = {"query": f"q{i % len(queries)}", "index": index, "top_k": 10}
        status, data = await client.post_json("/api/search/text", body)
        if status != 200:
            return f"HTTP {status}: {data[:200]!r}"
        if len(json.loads(data)["results"]) != 10:
            return "fewer than 10 results"
        return None

    out = []
    with BenchServer(spec, root) as server:
        server.settle()
        asyncio.run(run_level(server.url, server.pid, 1, 50, send, args.client))  # warm-up
        for clients in args.clients:
            level = asyncio.run(
                run_level(server.url, server.pid, clients, args.search_requests, send, args.client)
            )
            out.append({"workload": "search", **level})
            print(f"  search  x{clients:<3} {level['requests_per_s']:.0f} req/s", flush=True)
        out[-1]["server_memory"] = server.memory()
    return out


def upload_levels(args: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    width, height = (int(x) for x in args.upload_size.split("x"))
    total = args.upload_requests * len(args.clients) + 8
    print(f"  generating {total} distinct {width}x{height} JPEGs", flush=True)
    bases = [photo(width, height, seed=s) for s in range(4)]
    files = []
    for i in range(total):
        im = bases[i % len(bases)].copy()
        # A unique 8x8 patch makes every file (and its id) distinct.
        x, y = 8 * (i % 64), 8 * (i // 64 % 64)
        im.paste((i % 251, i // 251 % 251, 7), (x, y, x + 8, y + 8))
        files.append(encode(im, "JPEG"))
    data = Path(tempfile.mkdtemp(prefix="upload-", dir=root))  # always a fresh library
    spec = {"config": server_config(data), "plugins": [{"kind": "toy"}]}
    offset = 0

    async def send(client: Client, i: int) -> str | None:
        status, data = await client.post_file(
            "/api/images/", "photo.jpg", files[offset + i], "image/jpeg"
        )
        if status != 201:
            return f"HTTP {status}: {data[:200]!r}"
        if errors := json.loads(data)["errors"]:
            return f"embedding errors: {errors}"
        return None

    out = []
    with BenchServer(spec, root) as server:
        server.settle()
        asyncio.run(run_level(server.url, server.pid, 1, 8, send, args.client))  # warm-up
        offset = 8
        acknowledged = 8
        for clients in args.clients:
            level = asyncio.run(
                run_level(server.url, server.pid, clients, args.upload_requests, send, args.client)
            )
            acknowledged += args.upload_requests - level["errors"]
            offset += args.upload_requests
            out.append({"workload": "upload", **level})
            print(f"  upload  x{clients:<3} {level['requests_per_s']:.1f} req/s", flush=True)
        stats = httpx.get(server.url + "/api/stats").json()
        out[-1]["server_memory"] = server.memory()
    shutil.rmtree(data, ignore_errors=True)
    if stats["image_count"] != acknowledged:
        raise SystemExit(
            f"library holds {stats['image_count']} images, {acknowledged} acknowledged"
        )
    out[-1]["stored_images"] = stats["image_count"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--clients", default="1,8,32", help="concurrency levels (default %(default)s)"
    )
    parser.add_argument("--search-requests", type=int, default=1500, help="per level")
    parser.add_argument("--upload-requests", type=int, default=240, help="per level")
    parser.add_argument("--n", type=int, default=10_000, help="vectors in the search index")
    parser.add_argument("--dim", type=int, default=384, help="dimension of the search index")
    parser.add_argument("--upload-size", default="1024x768", help="WxH of uploaded photos")
    parser.add_argument(
        "--client", choices=("light", "httpx"), default="light", help="load generator"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache", type=Path, help="reuse data directories built here")
    parser.add_argument("--quick", action="store_true", help="small counts (smoke test)")
    parser.add_argument(
        "--out", type=Path, help="JSON path (default bench/results/concurrency.json)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.search_requests, args.upload_requests, args.n = 200, 40, 2000
        args.upload_size = "640x480"
    args.clients = [int(c) for c in str(args.clients).split(",")]
    with workdir(args.cache) as root:
        levels = search_levels(args, root) + upload_levels(args, root)
    rows = [
        [
            lv["workload"],
            lv["clients"],
            lv["requests"],
            lv["requests_per_s"],
            lv["latency_ms"]["p50"],
            lv["latency_ms"]["p99"],
            lv["latency_ms"]["p99"] / lv["latency_ms"]["p50"],
            lv["errors"],
            lv["server_cores"],
            lv["client_cores"],
        ]
        for lv in levels
    ]
    table(
        f"Concurrency (search: {args.n:,} x {args.dim}-d vectors; "
        f"upload: {args.upload_size} JPEG, toy embedders; {args.client} client)",
        [
            "workload",
            "clients",
            "requests",
            "req/s",
            "p50 ms",
            "p99 ms",
            "p99/p50",
            "errors",
            "server cores",
            "client cores",
        ],
        rows,
    )
    errors = sum(lv["errors"] for lv in levels)
    tail = max(lv["latency_ms"]["p99"] / lv["latency_ms"]["p50"] for lv in levels)
    targets = {
        "errors": errors,
        "errors_met": errors == 0,
        "p99_over_p50_max": tail,
        "tail_met": tail < 10,
    }
    table(
        "Targets",
        ["target", "measured", "met"],
        [
            ["zero errors up to 32 clients", errors, errors == 0],
            ["p99 < 10 x p50", tail, tail < 10],
        ],
    )
    write_json(
        "concurrency",
        {
            "settings": {k: v for k, v in vars(args).items() if k not in ("cache", "out")},
            "levels": levels,
            "targets": targets,
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
