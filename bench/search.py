"""Search latency and recall: the real server against raw hnswlib on the same graph.

For each size, three indexes (one per dimension, 384/768/1152 by default) are filled with
the same number of clustered unit vectors (`_common.clustered_vectors`: clusters in a
64-d latent space mapped into d dimensions plus noise, shaped like real embeddings; random
Gaussian vectors are HNSW's worst case and no model produces them).

Loading: the data directory is built through the core's own classes, not HTTP. Placeholder
image rows (16x16 PNG facts, no file) go into the catalog with `Catalog.insert_image`, and
the vectors go in with `Library.store_vectors`, which writes each vector's ``.npy`` file,
its catalog entry and the hnswlib graph exactly as an upload would; `Library.close` saves
the graph. The server is then started on that directory with a `TableEmbedder` per index,
whose query vector is looked up by key (text query ``"q17"``, or a 16x16 PNG whose pixels
encode 17), so no model runs and every measured millisecond is the server's.

Measured, query by query and interleaved so both see the same machine:
- server: ``POST /api/search/text`` and ``/api/search/image`` (multipart) through uvicorn on
  a loopback port with a keep-alive httpx client, one index (``index``) and all three
  fused (no ``index``), p50/p99;
- raw: ``hnswlib.Index.knn_query`` in this process on the very graph file the server
  loaded, with the same ``ef``, and an exact NumPy search for reference;
- recall@k of both against exact search;
- a floor: the same HTTP client against a bare ASGI app and a Litestar handler with
  imgdex's request type returning a canned response of the same size, to split the
  overhead into transport, framework and imgdex.

The first default run (10k and 100k vectors x 3 indexes) spends 10 to 20 minutes on this
2-core machine building the library (hnswlib graphs with the server's M=16 and
ef_construction=200, and one ``.npy`` file per vector); ``--cache DIR`` keeps the built
data directories (4.7 GB for 100k x 3) and later runs take about 90 seconds.
``--sizes 1000000 --dims 384`` is the manual million-vector run: about 2 GB of RAM for
the server's index, as much again for the raw copy, ~8 GB of disk and an hour or more to
build here.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

# The exact-search reference is one single-threaded query at a time, like hnswlib's; a
# multi-threaded BLAS on two shared cores only adds scheduling noise to it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import httpx
import numpy as np
import numpy.typing as npt
from _common import (
    BenchServer,
    clustered_vectors,
    exact_topk,
    recall,
    server_config,
    stats_ms,
    table,
    workdir,
    write_json,
)
from _embedders import key_image, table_index_name
from _library import GENERATOR, dataset, image_ids, load_raw

# --- measuring --------------------------------------------------------------------------


class Client:
    """The same keep-alive httpx client for every HTTP measurement."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)

    def text(self, key: int, index: str | None, top_k: int) -> tuple[float, dict[str, Any]]:
        body: dict[str, Any] = {"query": f"q{key}", "top_k": top_k}
        if index is not None:
            body["index"] = index
        t0 = time.perf_counter()
        r = self.http.post("/api/search/text", json=body)
        elapsed = time.perf_counter() - t0
        r.raise_for_status()
        return elapsed, r.json()

    def image(self, png: bytes, index: str | None, top_k: int) -> tuple[float, dict[str, Any]]:
        form = {"top_k": str(top_k)}
        if index is not None:
            form["index"] = index
        t0 = time.perf_counter()
        r = self.http.post(
            "/api/search/image", files={"file": ("q.png", png, "image/png")}, data=form
        )
        elapsed = time.perf_counter() - t0
        r.raise_for_status()
        return elapsed, r.json()

    def close(self) -> None:
        self.http.close()


def run_size(
    args: argparse.Namespace, root: Path, n: int, dims: list[int]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build (or reuse), then measure every case at one size. Returns (results, a response)."""
    q = args.queries
    print(f"== {n:,} vectors per index, d = {dims} ==", flush=True)
    ds = dataset(root, n, dims, args.seed)
    data, corpora, labels, build = ds.data, ds.corpora, ds.labels, ds.build
    queries = {d: clustered_vectors(q, d, seed=args.seed + 7919) for d in dims}
    truth = {d: exact_topk(corpora[d], queries[d], args.top_k) for d in dims}
    row_of_image = {image: i for i, image in enumerate(image_ids(n))}
    raw = {d: load_raw(data, d, args.ef) for d in dims}

    tables = {}
    for d in dims:
        tables[d] = root / f"queries-{n}-{d}.npy"
        np.save(tables[d], queries[d])
    spec = {
        "config": server_config(data, index={"ef_search": args.ef}),
        "plugins": [{"kind": "table", "dim": d, "table": str(tables[d])} for d in dims],
    }
    cases: list[dict[str, Any]] = []
    sample: dict[str, Any] = {}
    server = BenchServer(spec, root)
    t0 = time.perf_counter()
    server.start()
    ready = time.perf_counter() - t0
    settle = server.settle()
    print(f"  server ready in {ready:.1f} s, idle after {settle:.1f} s more", flush=True)
    client = Client(server.url)
    pngs = [key_image(i) for i in range(q)]
    try:
        for i in range(min(20, q)):  # warm-up: connections, caches, first-call paths
            client.text(i, None, args.top_k)
            client.image(pngs[i], None, args.top_k)
        for modality in ("text", "image"):
            for d in [*dims, None]:
                cases.append(
                    measure_case(
                        args,
                        client,
                        modality,
                        d,
                        dims,
                        queries,
                        raw,
                        labels,
                        truth,
                        row_of_image,
                        pngs,
                    )
                )
                if modality == "text" and d == dims[0]:
                    sample = cases[-1].pop("_response")
                cases[-1].pop("_response", None)
        memory = server.memory()
    finally:
        client.close()
        server.stop()
    exact = {d: exact_time(corpora[d], queries[d], args.top_k) for d in dims}
    for case in cases:
        if case["dim"] is not None:
            case["exact_numpy"] = exact[case["dim"]]
    result = {
        "n": n,
        "dims": dims,
        "build": build,
        "server_start_s": ready,
        "server_settle_s": settle,
        "server_memory": memory,
        "cases": cases,
    }
    return result, sample


def measure_case(
    args: argparse.Namespace,
    client: Client,
    modality: str,
    dim: int | None,
    dims: list[int],
    queries: dict[int, npt.NDArray[np.float32]],
    raw: dict[int, Any],
    labels: dict[int, npt.NDArray[np.int64]],
    truth: dict[int, npt.NDArray[np.int64]],
    row_of_image: dict[str, int],
    pngs: list[bytes],
) -> dict[str, Any]:
    """One case: the server (one index or fused) and, for one index, raw hnswlib."""
    index = table_index_name(dim) if dim is not None else None
    server_t: list[float] = []
    raw_t: list[float] = []
    server_found: list[list[int]] = []
    raw_found: list[list[int]] = []
    response: dict[str, Any] = {}
    for i in range(args.queries):
        if dim is not None:
            vector = queries[dim][i : i + 1]
            t0 = time.perf_counter()
            found, _ = raw[dim].knn_query(vector, k=args.top_k)
            raw_t.append(time.perf_counter() - t0)
            raw_found.append(np.searchsorted(labels[dim], found[0]).tolist())
        if modality == "text":
            elapsed, response = client.text(i, index, args.top_k)
        else:
            elapsed, response = client.image(pngs[i], index, args.top_k)
        server_t.append(elapsed)
        server_found.append([row_of_image[r["sha256"]] for r in response["results"]])
        if dim is None and len(response["indexes_searched"]) != len(dims):
            raise RuntimeError(f"fused search answered by {response['indexes_searched']}")
    case: dict[str, Any] = {
        "modality": modality,
        "dim": dim,
        "index": index or "fused (all)",
        "server": stats_ms(server_t),
        "_response": response,
    }
    if dim is not None:
        case["raw_hnswlib"] = stats_ms(raw_t)
        case["recall_server"] = recall(server_found, truth[dim], args.top_k)
        case["recall_raw"] = recall(raw_found, truth[dim], args.top_k)
        case["overhead_ms"] = case["server"]["p50"] - case["raw_hnswlib"]["p50"]
        case["overhead_ratio"] = case["server"]["p50"] / case["raw_hnswlib"]["p50"]
    label = f"d={dim}" if dim is not None else "fused"
    print(f"  {modality:5} {label:7} p50 {case['server']['p50']:.3f} ms", flush=True)
    return case


def exact_time(
    corpus: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], k: int
) -> dict[str, float]:
    times = []
    corpus @ queries[0]  # warm-up
    for i in range(min(100, len(queries))):
        t0 = time.perf_counter()
        sims = corpus @ queries[i]
        np.argpartition(-sims, k)[:k]
        times.append(time.perf_counter() - t0)
    return stats_ms(times)


def measure_floor(args: argparse.Namespace, root: Path, canned: dict[str, Any]) -> dict[str, Any]:
    """HTTP + client (bare ASGI) and HTTP + Litestar + msgspec, with no search inside."""
    server = BenchServer({"floor": canned}, root)
    server.start()
    out: dict[str, Any] = {}
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            body = {"query": "q1", "top_k": args.top_k, "index": "bench"}
            for path, name in (("/raw", "bare_asgi"), ("/api/search/text", "litestar")):
                for _ in range(20):
                    http.post(path, json=body).raise_for_status()
                times = []
                for _ in range(args.queries):
                    t0 = time.perf_counter()
                    r = http.post(path, json=body)
                    times.append(time.perf_counter() - t0)
                    r.raise_for_status()
                    r.json()
                out[name] = stats_ms(times)
    finally:
        server.stop()
    return out


# --- report -------------------------------------------------------------------------------


def report(results: list[dict[str, Any]], floor: dict[str, Any], ef: int) -> dict[str, Any]:
    for res in results:
        rows = []
        for c in res["cases"]:
            raw = c.get("raw_hnswlib", {})
            rows.append(
                [
                    c["modality"],
                    c["index"],
                    c["server"]["p50"],
                    c["server"]["p99"],
                    c["server"]["p99"] / c["server"]["p50"],
                    raw.get("p50"),
                    raw.get("p99"),
                    c.get("overhead_ms"),
                    c.get("overhead_ratio"),
                    c.get("recall_server"),
                    c.get("recall_raw"),
                    c.get("exact_numpy", {}).get("p50"),
                ]
            )
        table(
            f"Search, {res['n']:,} vectors per index, ef={ef}, top_k=10 (ms)",
            [
                "query",
                "index",
                "server p50",
                "p99",
                "p99/p50",
                "raw p50",
                "raw p99",
                "overhead ms",
                "x raw",
                "recall srv",
                "recall raw",
                "exact p50",
            ],
            rows,
        )
        fused_rows = []
        for modality in ("text", "image"):
            mine = [c for c in res["cases"] if c["modality"] == modality]
            singles = [c["server"]["p50"] for c in mine if c["dim"] is not None]
            fused = next(c["server"]["p50"] for c in mine if c["dim"] is None)
            fused_rows.append(
                [modality, fused, max(singles), fused / max(singles), fused / np.mean(singles)]
            )
            res[f"fused_{modality}"] = {
                "fused_p50": fused,
                "slowest_single_p50": max(singles),
                "ratio_vs_slowest": fused / max(singles),
                "ratio_vs_mean": fused / float(np.mean(singles)),
            }
        table(
            f"Fused search over {len(res['dims'])} indexes vs one index, {res['n']:,} vectors",
            ["query", "fused p50", "slowest one p50", "x slowest", "x mean of one"],
            fused_rows,
        )
    table(
        "Floor: the same client against servers that do no search (ms)",
        ["server", "p50", "p99"],
        [[name, s["p50"], s["p99"]] for name, s in floor.items()],
    )
    return targets(results)


def targets(results: list[dict[str, Any]]) -> dict[str, Any]:
    big = max(results, key=lambda r: r["n"])
    singles = [c for c in big["cases"] if c["dim"] is not None]
    worst_overhead = max(c["overhead_ms"] for c in singles)
    worst_recall = min(c["recall_server"] for c in singles)
    fused = max(big[f"fused_{m}"]["ratio_vs_slowest"] for m in ("text", "image"))
    tail = max(c["server"]["p99"] / c["server"]["p50"] for r in results for c in r["cases"])
    out = {
        "at_n": big["n"],
        "overhead_p50_ms_max": worst_overhead,
        "overhead_met": worst_overhead <= 1.5,
        "recall_min": worst_recall,
        "recall_met": worst_recall >= 0.95,
        "fused_ratio_max": fused,
        "fused_met": fused <= 1.3,
        "p99_over_p50_max": tail,
        "tail_met": tail < 10,
    }
    table(
        f"Targets at {big['n']:,} vectors",
        ["target", "measured", "met"],
        [
            ["server p50 - raw p50 <= 1.5 ms", worst_overhead, out["overhead_met"]],
            ["recall@10 >= 0.95", worst_recall, out["recall_met"]],
            ["fused p50 <= 1.3 x one index", fused, out["fused_met"]],
            ["p99 < 10 x p50 (all sizes)", tail, out["tail_met"]],
        ],
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="10000,100000", help="vectors per index (default %(default)s)"
    )
    parser.add_argument("--dims", default="384,768,1152", help="one index per dimension")
    parser.add_argument("--queries", type=int, default=300, help="timed queries per case")
    parser.add_argument(
        "--ef", type=int, default=64, help="ef of server and raw (the default config's)"
    )
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--cache", type=Path, help="keep the built data directories here, reuse them"
    )
    parser.add_argument(
        "--quick", action="store_true", help="2,000 vectors, 60 queries (smoke test)"
    )
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/search.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.queries = "2000", min(args.queries, 60)
    sizes = [int(s) for s in args.sizes.split(",")]
    dims = [int(d) for d in args.dims.split(",")]
    results = []
    with workdir(args.cache) as root:
        sample: dict[str, Any] = {}
        for n in sizes:
            result, sample = run_size(args, root, n, dims)
            results.append(result)
        floor = measure_floor(args, root, sample)
    summary = report(results, floor, args.ef)
    write_json(
        "search",
        {
            "settings": {
                "sizes": sizes,
                "dims": dims,
                "queries": args.queries,
                "ef": args.ef,
                "top_k": args.top_k,
                "seed": args.seed,
                "generator": GENERATOR,
                "hnsw": {"M": 16, "ef_construction": 200},
            },
            "results": results,
            "floor": floor,
            "targets": summary,
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
