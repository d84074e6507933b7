"""Near-duplicate review at N images (10,000): ``GET /api/duplicates`` and ``/duplicates``.

The library is the one `web_firstpaint.py` builds (its 320x240 colour-field JPEGs, the
core's toy colour embedder, whose crude histograms make many images alike: thousands of
pairs and some large chained groups), written straight through the core instead of
uploaded: placeholder image rows and files (`Catalog.insert_image`, `BlobStore.put_image`)
and each image's real toy vector (`VectorWriter.store`). The server then runs its own
background duplicate finder over all of them (the backfill), exactly as after an upgrade
or a bulk import; meanwhile ``GET /api/stats`` is timed (is the server still answering?).
Once the finder is done, each URL is requested ``--runs`` times, one at a time:

- the API with its defaults, a later page (``offset``), a larger page, the lowest
  threshold (the most pairs);
- the web page, its second page;
- the lowest threshold again, each time right after an image with pairs went to the
  trash and came back (the kept groups are out of date: they are grouped again).

The first request of each URL is shown apart from the repeats: the groups of a threshold
are computed on the first listing after a change and kept until the next one.

Usage: ``python bench/duplicates.py [--size 10000] [--runs 30] [--quick] [--workdir D]``
(``--quick``: 1,000 images, 10 runs, under 30 s). Not a timed test: prints a table and writes
``bench/results/duplicates.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
from _common import BenchServer, server_config, stats_ms, table, write_json
from _common import workdir as make_workdir
from web_firstpaint import make_images

INDEX = "toy_color_v1"
HEADERS = {"Authorization": "Bearer bench-admin-token"}


def toy_vectors(n: int, cache: Path) -> npt.NDArray[np.float32]:
    """The toy colour embedder's vectors of `web_firstpaint.make_images(n)` (cached)."""
    if cache.exists():
        return np.load(cache)
    from PIL import Image

    from imgdex.testing import ColorEmbedder

    embedder = ColorEmbedder()
    images = make_images(n, seed=1)
    rows = [
        embedder.embed_images([Image.open(io.BytesIO(b)) for b in images[i : i + 256]])
        for i in range(0, n, 256)
    ]
    vectors = np.concatenate(rows).astype(np.float32)
    np.save(cache, vectors)
    return vectors


def build(data: Path, vectors: npt.NDArray[np.float32]) -> dict[str, Any]:
    """Image rows, placeholder files and toy vectors in a new data directory."""
    from imgdex.config import decode_config
    from imgdex.index import flat, hnsw
    from imgdex.plugins import PluginHost
    from imgdex.runtime import Runtime
    from imgdex.testing import toy_plugins

    config = decode_config(json.dumps(server_config(data)).encode(), "bench")
    host = PluginHost(config)
    host.add("hnswlib", hnsw)
    host.add("flat", flat)
    for name, plugin in toy_plugins().items():
        host.add(name, plugin)
    runtime = Runtime(config, host)
    ids = [f"{i:032x}" for i in range(len(vectors))]
    t0 = time.perf_counter()
    try:
        catalog = runtime.catalog
        with catalog.transaction() as db:
            for i, id_ in enumerate(ids):
                catalog.insert_image(
                    db,
                    id_=id_,
                    full=id_ * 2,
                    width=320,
                    height=240,
                    file_size=100,
                    fmt="JPEG",
                    filename=f"image-{i}.jpg",
                    source="bench",
                    status="ready",
                )
        for i, id_ in enumerate(ids):  # a vector is only kept for an image whose files exist
            runtime.blobs.put_image(id_, f"image-{i}.jpg", b"placeholder", b"placeholder")
        slot = runtime.registry.embedders[INDEX]
        for start in range(0, len(ids), 2000):
            end = min(start + 2000, len(ids))
            runtime.vectors.store(
                slot, [(ids[i], "image", vectors[i], None) for i in range(start, end)]
            )
    finally:
        runtime.close()
    return {"images": len(ids), "build_s": time.perf_counter() - t0}


def backfill(server: BenchServer, timeout: float = 1800) -> dict[str, Any]:
    """Wait for the finder to check every image, timing ``/api/stats`` meanwhile."""
    stats: list[float] = []
    seen = False
    t0 = time.perf_counter()
    with httpx.Client(base_url=server.url, timeout=120, headers=HEADERS) as client:
        while time.perf_counter() - t0 < timeout:
            t = time.perf_counter()
            client.get("/api/stats").raise_for_status()
            stats.append(time.perf_counter() - t)
            jobs = client.get("/api/admin/jobs").json()["jobs"].get("find_duplicates", {})
            pending = jobs.get("queued", 0) + jobs.get("running", 0)
            seen = seen or pending > 0
            if seen and not pending:
                break
            time.sleep(0.25)
    return {"backfill_s": time.perf_counter() - t0, "stats_during": stats_ms(stats)}


def measure(server: BenchServer, runs: int) -> dict[str, Any]:
    """Each URL `runs` times in a row: the first request (grouping the pairs when no
    earlier URL asked for its threshold since the last change) and the repeats."""
    paths = {
        "api default": "/api/duplicates",
        "api offset=50": "/api/duplicates?offset=50",
        "api limit=200": "/api/duplicates?limit=200",
        "api threshold=min_score": "/api/duplicates?threshold=0.9",
        "page": "/duplicates",
        "page offset=20": "/duplicates?offset=20",
    }
    out: dict[str, Any] = {}
    with httpx.Client(base_url=server.url, timeout=300, headers=HEADERS) as client:
        for name, path in paths.items():
            samples, size, status = [], 0, 0
            for _ in range(runs):
                t = time.perf_counter()
                r = client.get(path)
                samples.append(time.perf_counter() - t)
                size, status = len(r.content), r.status_code
            out[name] = row(samples, r)
            print(f"  {name}: p50 {out[name]['p50']:.1f} ms, {status}, {size:,} bytes", flush=True)
        out["api threshold=min_score, after a change"] = after_change(client, runs)
    return out


def after_change(client: httpx.Client, runs: int) -> dict[str, Any]:
    """``threshold=0.9`` right after an image with pairs went to the trash and came back
    (each a change the groups depend on): what every listing cost before they were kept."""
    path = "/api/duplicates?threshold=0.9&per_group=1"
    image = client.get(path).json()["groups"][0]["images"][0]["sha256"]
    samples = []
    for _ in range(runs):
        client.delete(f"/api/images/{image}").raise_for_status()
        client.post(f"/api/images/{image}/restore").raise_for_status()
        t = time.perf_counter()
        r = client.get(path)
        samples.append(time.perf_counter() - t)
    return row(samples, r, repeats=False)


def row(samples: list[float], last: httpx.Response, repeats: bool = True) -> dict[str, Any]:
    """The first sample, p50/p99 of the others (of all when not `repeats`), the last body."""
    body = (
        last.json() if last.headers.get("content-type", "").startswith("application/json") else {}
    )
    return {
        "first_ms": samples[0] * 1000,
        **stats_ms(samples[1:] if repeats and len(samples) > 1 else samples),
        "status": last.status_code,
        "bytes": len(last.content),
        "groups": len(body.get("groups", [])) if last.status_code == 200 else 0,
        "total": body.get("total"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=10_000, help="images in the library")
    parser.add_argument("--runs", type=int, default=30, help="requests per URL")
    parser.add_argument("--quick", action="store_true", help="1,000 images, 10 runs")
    parser.add_argument("--workdir", type=Path, help="keep the vectors here")
    parser.add_argument("--out", type=Path, help="JSON results path")
    args = parser.parse_args()
    if args.quick:
        args.size, args.runs = 1000, 10
    with make_workdir(args.workdir, prefix="imgdex-bench-dup-") as root:
        vectors = toy_vectors(args.size, root / f"toy-vectors-{args.size}.npy")
        data = root / f"data-{args.size}-{os.getpid()}"
        built = build(data, vectors)
        print(f"  built {built['images']} images in {built['build_s']:.1f}s", flush=True)
        spec = {"config": server_config(data), "plugins": [{"kind": "toy"}]}
        with BenchServer(spec, root) as server:
            during = backfill(server)
            print(f"  finder done in {during['backfill_s']:.1f}s", flush=True)
            load_before = os.getloadavg()[0]
            results = measure(server, args.runs)
            load_after = os.getloadavg()[0]
        rows = [
            [name, r["first_ms"], r.get("p50"), r.get("p99"), r["status"], r["bytes"], r["groups"],
             r["total"]]
            for name, r in results.items()
        ]  # fmt: skip
        table(
            f"\nNear-duplicates, {args.size} images, {args.runs} runs each (p50 and p99 of "
            f"the repeats), load average {load_before:.1f} -> {load_after:.1f} (ms)",
            ["request", "first", "p50", "p99", "status", "bytes", "groups", "total"],
            rows,
        )
        stats = during["stats_during"]
        print(
            f"GET /api/stats while the finder ran ({during['backfill_s']:.0f}s): "
            f"p50 {stats.get('p50', 0):.1f} ms, p99 {stats.get('p99', 0):.1f} ms, "
            f"max {stats.get('max', 0):.1f} ms"
        )
        write_json(
            "duplicates",
            {"size": args.size, "runs": args.runs, "build": built, "backfill": during,
             "load_average_1m": [load_before, load_after], "results": results},
            args.out,
        )  # fmt: skip


if __name__ == "__main__":
    main()
