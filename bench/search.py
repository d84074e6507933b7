"""Search latency and recall: the real server against raw hnswlib on the same graph.

For each size, three indexes (one per dimension, 384/768/1152 by default) are filled with
the same number of clustered unit vectors (`_common.clustered_vectors`: clusters in a
64-d latent space mapped into d dimensions plus noise, shaped like real embeddings; random
Gaussian vectors are HNSW's worst case and no model produces them).

Loading: the data directory is built through the core's own classes, not HTTP. Placeholder
image rows (16x16 PNG facts, no file) go into the catalog with `Catalog.insert_image`, and
the vectors go in with `VectorWriter.store`, which writes each vector's ``.npy`` file,
its catalog entry and the hnswlib graph exactly as an upload would; `Runtime.close` saves
the graph. The server is then started on that directory with a `TableEmbedder` per index,
whose query vector is looked up by key (text query ``"q17"``, or a 16x16 PNG whose pixels
encode 17), so no model runs and every measured millisecond is the server's.

Measured interleaved in blocks of ``--block`` (10) queries, so that every figure compared
with another was taken side by side on the same machine (the cases of one modality take
turns, each index and the fused search, and within a case each server):
- server: ``POST /api/search/text`` and ``/api/search/image`` (multipart) through uvicorn on
  a loopback port with a keep-alive client (``--client``: `http.client` with prepared
  bodies, or httpx), one index (``index``) and all three fused (no ``index``), p50/p99;
- raw: ``hnswlib.Index.knn_query`` in this process on the very graph file the server
  loaded, with the same ``ef``, and an exact NumPy search for reference;
- recall@k of both against exact search;
- a floor: the same HTTP client against a no-op Litestar handler with imgdex's request
  type (JSON body, or the multipart form) returning a canned response of the same size,
  queried in the same interleaving, so "server p50 - floor p50" is imgdex's own time;
  and at the end a bare ASGI app against the Litestar handler, to split the floor into
  transport and framework;
- with ``--baseline DIR``, a second server running another version of the core (the
  ``imgdex`` package in DIR, e.g. ``git worktree add /tmp/base COMMIT`` then
  ``--baseline /tmp/base/core``) in the same interleaving: before/after figures from one
  run. Each server holds its data directory's lock, so the baseline gets its own data
  directory (`_library.baseline_copy`: the same rows and vectors written by the baseline
  core itself, so its catalog schema is its own, and copies of the very graph files the
  server loads), made before either starts and removed afterwards. Both run with
  their background tasks, as ``imgdex serve`` does.

The first default run (10k and 100k vectors x 3 indexes) spends 10 to 20 minutes on this
2-core machine building the library (hnswlib graphs with the server's M=16 and
ef_construction=200, and one ``.npy`` file per vector); ``--cache DIR`` keeps the built
data directories (4.7 GB for 100k x 3) and later runs take about 3 minutes.
``--sizes 1000000 --dims 384`` is the manual million-vector run: a 3 GB server (1.9 GB of
it anonymous), about 2 GB more for the raw copy, 18 GB of disk and 15 minutes to build
here (2026-11-30).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
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
    multipart,
    recall,
    server_config,
    stats_ms,
    table,
    workdir,
    write_json,
)
from _embedders import key_image, table_index_name
from _library import GENERATOR, baseline_copy, dataset, image_ids, load_raw

# --- measuring --------------------------------------------------------------------------


class Client:
    """The same keep-alive client for every HTTP measurement.

    ``stdlib`` (the default) is `http.client` with the request bodies prepared before the
    clock starts: it costs about 0.1 ms a request, so the figures are the server's.
    ``httpx`` is what a Python application would typically use; it spends 0.4-0.6 ms a
    request of its own here (more for multipart), which ends up in every figure.
    The clock covers sending the request and reading the whole response; decoding the
    JSON follows.
    """

    def __init__(self, url: str, kind: str = "stdlib") -> None:
        self.kind = kind
        if kind == "httpx":
            self.http = httpx.Client(base_url=url, timeout=60)
        else:
            host, port = url.removeprefix("http://").rstrip("/").split(":")
            self.address = (host, int(port))
            self._connect()

    def _connect(self) -> None:
        self.conn = http.client.HTTPConnection(*self.address, timeout=60)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _post(self, path: str, body: bytes, content_type: str) -> tuple[float, bytes]:
        headers = {"Content-Type": content_type}
        t0 = time.perf_counter()
        if self.kind == "httpx":
            r = self.http.post(path, content=body, headers=headers)
            elapsed = time.perf_counter() - t0
            r.raise_for_status()
            return elapsed, r.content
        try:
            self.conn.request("POST", path, body=body, headers=headers)
            response = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closes a keep-alive connection left idle past its timeout (while
            # another server starts, on a loaded machine): connect again, time the retry.
            self._connect()
            t0 = time.perf_counter()
            self.conn.request("POST", path, body=body, headers=headers)
            response = self.conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - t0
        if response.status >= 400:
            raise RuntimeError(f"POST {path}: {response.status} {data[:300]!r}")
        return elapsed, data

    def text(self, key: int, index: str | None, top_k: int) -> tuple[float, dict[str, Any]]:
        request: dict[str, Any] = {"query": f"q{key}", "top_k": top_k}
        if index is not None:
            request["index"] = index
        elapsed, data = self._post("/api/search/text", json.dumps(request).encode(), JSON)
        return elapsed, json.loads(data)

    def image(self, png: bytes, index: str | None, top_k: int) -> tuple[float, dict[str, Any]]:
        fields: dict[str, tuple[str, bytes, str] | str] = {
            "file": ("q.png", png, "image/png"),
            "top_k": str(top_k),
        }
        if index is not None:
            fields["index"] = index
        body, content_type = multipart(fields)
        elapsed, data = self._post("/api/search/image", body, content_type)
        return elapsed, json.loads(data)

    def close(self) -> None:
        if self.kind == "httpx":
            self.http.close()
        else:
            self.conn.close()


JSON = "application/json"


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
    servers = {"server": BenchServer(spec, root)}
    baseline_data = None
    if args.baseline is not None:
        baseline_data = baseline_copy(data, args.baseline)
        env = {"PYTHONPATH": str(args.baseline.resolve())}
        # The same spec, background tasks included: with a directory of its own the
        # baseline is a server like the other, and the two differ only in their core.
        baseline_spec = {
            **spec,
            "config": server_config(baseline_data, index={"ef_search": args.ef}),
        }
        servers["baseline"] = BenchServer(baseline_spec, root, env=env)
    clients: dict[str, Client] = {}
    info: dict[str, Any] = {}
    try:
        for name, server in servers.items():
            t0 = time.perf_counter()
            server.start()
            ready = time.perf_counter() - t0
            settle = server.settle()
            info[name] = {"start_s": ready, "settle_s": settle}
            print(f"  {name} ready in {ready:.1f} s, idle after {settle:.1f} s more", flush=True)
            clients[name] = Client(server.url, args.client)
        pngs = [key_image(i) for i in range(q)]
        for client in clients.values():
            for i in range(min(20, q)):  # warm-up: connections, caches, first-call paths
                client.text(i, None, args.top_k)
                client.image(pngs[i], None, args.top_k)
        _, sample = clients["server"].text(0, table_index_name(dims[0]), args.top_k)
        servers["floor"] = BenchServer({"floor": sample}, root).start()
        clients["floor"] = Client(servers["floor"].url, args.client)
        for i in range(min(20, q)):
            clients["floor"].text(i, None, args.top_k)
            clients["floor"].image(pngs[i], None, args.top_k)
        for modality in ("text", "image"):
            cases += measure_modality(
                args, clients, modality, dims, queries, raw, labels, truth, row_of_image, pngs
            )
        memory = servers["server"].memory()
    finally:
        for client in clients.values():
            client.close()
        for server in servers.values():
            server.stop()
        if baseline_data is not None:
            shutil.rmtree(baseline_data, ignore_errors=True)
    exact = {d: exact_time(corpora[d], queries[d], args.top_k) for d in dims}
    for case in cases:
        if case["dim"] is not None:
            case["exact_numpy"] = exact[case["dim"]]
    result = {
        "n": n,
        "dims": dims,
        "build": build,
        "server_start_s": info["server"]["start_s"],
        "server_settle_s": info["server"]["settle_s"],
        "servers": info,
        "server_memory": memory,
        "cases": cases,
    }
    return result, sample


class Case:
    """The samples of one case: one index (`dim`) or all of them fused (`dim` None)."""

    def __init__(self, modality: str, dim: int | None, endpoints: list[str]) -> None:
        self.modality, self.dim = modality, dim
        self.index = table_index_name(dim) if dim is not None else None
        self.times: dict[str, list[float]] = {name: [] for name in endpoints}
        self.found: dict[str, list[list[int]]] = {n: [] for n in endpoints if n != "floor"}
        self.raw_t: list[float] = []
        self.raw_found: list[list[int]] = []


def measure_modality(
    args: argparse.Namespace,
    clients: dict[str, Client],
    modality: str,
    dims: list[int],
    queries: dict[int, npt.NDArray[np.float32]],
    raw: dict[int, Any],
    labels: dict[int, npt.NDArray[np.int64]],
    truth: dict[int, npt.NDArray[np.int64]],
    row_of_image: dict[str, int],
    pngs: list[bytes],
) -> list[dict[str, Any]]:
    """Every case of one modality (each index, then all fused), interleaved in blocks of
    `args.block` queries so that the fused/single ratios compare samples taken side by
    side. Within a case: raw hnswlib (one index), then the server, the no-op floor and
    the baseline if any, in alternating order, each answering a whole block in a row.

    Blocks rather than single queries: a server process that has just been idle while
    two others answered pays a wake-up (scheduler, cold caches) of 0.3-0.6 ms here on its
    next request, which a client querying one server does not see. In a block only the
    first query pays it; ``--block 1`` measures query by query."""
    cases = [Case(modality, d, list(clients)) for d in [*dims, None]]
    order = list(clients)
    fan_out = ThreadPoolExecutor(max_workers=len(dims))  # as the server's model pool
    for b, start in enumerate(range(0, args.queries, args.block)):
        block = range(start, min(start + args.block, args.queries))
        shift = b % len(cases)
        for case in cases[shift:] + cases[:shift]:
            if case.dim is not None:
                for i in block:
                    vector = queries[case.dim][i : i + 1]
                    t0 = time.perf_counter()
                    nearest, _ = raw[case.dim].knn_query(vector, k=args.top_k)
                    case.raw_t.append(time.perf_counter() - t0)
                    found = np.searchsorted(labels[case.dim], nearest[0]).tolist()
                    case.raw_found.append(found)
            else:
                # The library's own fan-out: every index's knn_query at once, one
                # thread each (hnswlib releases the GIL), as the server runs them.
                for i in block:
                    t0 = time.perf_counter()
                    futures = [
                        fan_out.submit(raw[d].knn_query, queries[d][i : i + 1], k=args.top_k)
                        for d in dims
                    ]
                    for future in futures:
                        future.result()
                    case.raw_t.append(time.perf_counter() - t0)
            for name in order if b % 2 == 0 else order[::-1]:
                client = clients[name]
                for i in block:
                    if modality == "text":
                        elapsed, response = client.text(i, case.index, args.top_k)
                    else:
                        elapsed, response = client.image(pngs[i], case.index, args.top_k)
                    case.times[name].append(elapsed)
                    if name == "floor":
                        continue
                    rows = [row_of_image[r["sha256"]] for r in response["results"]]
                    case.found[name].append(rows)
                    # The keyword index answers fused text searches too (finding nothing
                    # for "q17"); every vector index must have answered.
                    searched = response["indexes_searched"]
                    vector = [s for s in searched if s["index"] != "keyword" and not s["error"]]
                    if case.dim is None and len(vector) != len(dims):
                        raise RuntimeError(f"fused search answered by {searched}")
    fan_out.shutdown()
    return [summarize(args, case, truth) for case in cases]


def summarize(
    args: argparse.Namespace, c: Case, truth: dict[int, npt.NDArray[np.int64]]
) -> dict[str, Any]:
    case: dict[str, Any] = {
        "modality": c.modality,
        "dim": c.dim,
        "index": c.index or "fused (all)",
        **{name: stats_ms(t) for name, t in c.times.items()},
    }
    case["above_floor_ms"] = case["server"]["p50"] - case["floor"]["p50"]
    if "baseline" in case:
        case["server_over_baseline"] = case["server"]["p50"] / case["baseline"]["p50"]
    if c.dim is None:
        case["raw_hnswlib_fan_out"] = stats_ms(c.raw_t)
    else:
        case["raw_hnswlib"] = stats_ms(c.raw_t)
        case["recall_server"] = recall(c.found["server"], truth[c.dim], args.top_k)
        case["recall_raw"] = recall(c.raw_found, truth[c.dim], args.top_k)
        if "baseline" in c.found:
            case["recall_baseline"] = recall(c.found["baseline"], truth[c.dim], args.top_k)
        raw_p50 = case["raw_hnswlib"]["p50"]
        case["overhead_ms"] = case["server"]["p50"] - raw_p50
        case["overhead_ratio"] = case["server"]["p50"] / raw_p50
        case["above_floor_overhead_ms"] = case["above_floor_ms"] - raw_p50
    label = f"d={c.dim}" if c.dim is not None else "fused"
    line = f"  {c.modality:5} {label:7} p50 {case['server']['p50']:.3f} ms"
    line += f", floor {case['floor']['p50']:.3f} ms"
    if "baseline" in case:
        line += f", baseline {case['baseline']['p50']:.3f} ms"
    print(line, flush=True)
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
    client = Client(server.url, args.client)
    try:
        body = json.dumps({"query": "q1", "top_k": args.top_k, "index": "bench"}).encode()
        for path, name in (("/raw", "bare_asgi"), ("/api/search/text", "litestar")):
            for _ in range(20):
                client._post(path, body, JSON)
            times = []
            for _ in range(args.queries):
                elapsed, data = client._post(path, body, JSON)
                times.append(elapsed)
                json.loads(data)
            out[name] = stats_ms(times)
    finally:
        client.close()
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
                    c.get("overhead_ms"),
                    c.get("overhead_ratio"),
                    c["floor"]["p50"],
                    c["above_floor_ms"],
                    c.get("above_floor_overhead_ms"),
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
                "overhead ms",
                "x raw",
                "no-op p50",
                "above no-op",
                "above no-op - raw",
                "recall srv",
                "recall raw",
                "exact p50",
            ],
            rows,
        )
        if any("baseline" in c for c in res["cases"]):
            table(
                f"This server against the baseline core, {res['n']:,} vectors (ms)",
                ["query", "index", "baseline p50", "p99", "server p50", "p99", "x baseline"],
                [
                    [
                        c["modality"],
                        c["index"],
                        c["baseline"]["p50"],
                        c["baseline"]["p99"],
                        c["server"]["p50"],
                        c["server"]["p99"],
                        c["server_over_baseline"],
                    ]
                    for c in res["cases"]
                ],
            )
        fused_rows = []
        for modality in ("text", "image"):
            for name in ("server", "baseline"):
                mine = [c for c in res["cases"] if c["modality"] == modality and name in c]
                if not mine:
                    continue
                singles = [c[name]["p50"] for c in mine if c["dim"] is not None]
                fused_case = next(c for c in mine if c["dim"] is None)
                fused = fused_case[name]["p50"]
                ratio, ratio_mean = fused / max(singles), fused / float(np.mean(singles))
                raw_singles = [c["raw_hnswlib"]["p50"] for c in mine if c["dim"] is not None]
                raw_fan_out = fused_case["raw_hnswlib_fan_out"]["p50"]
                raw_ratio = raw_fan_out / max(raw_singles)
                fused_rows.append(
                    [
                        modality,
                        name,
                        fused,
                        max(singles),
                        ratio,
                        ratio_mean,
                        fused - max(singles),
                        raw_fan_out,
                        max(raw_singles),
                        raw_ratio,
                        raw_fan_out - max(raw_singles),
                    ]
                )
                key = f"fused_{modality}" if name == "server" else f"fused_{modality}_{name}"
                res[key] = {
                    "fused_p50": fused,
                    "slowest_single_p50": max(singles),
                    "ratio_vs_slowest": ratio,
                    "ratio_vs_mean": ratio_mean,
                    "added_ms": fused - max(singles),
                    "raw_fan_out_p50": raw_fan_out,
                    "raw_slowest_single_p50": max(raw_singles),
                    "raw_ratio_vs_slowest": raw_ratio,
                    "raw_added_ms": raw_fan_out - max(raw_singles),
                }
        table(
            f"Fused search over {len(res['dims'])} indexes vs one index, {res['n']:,} vectors "
            "(raw: hnswlib's knn_query of every index at once on a thread each, in process)",
            [
                "query",
                "server",
                "fused p50",
                "slowest one p50",
                "x slowest",
                "x mean of one",
                "fused adds ms",
                "raw fan-out p50",
                "raw slowest one",
                "raw x slowest",
                "raw fan-out adds ms",
            ],
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
    worst_above_floor = max(c["above_floor_overhead_ms"] for c in singles)
    worst_recall = min(c["recall_server"] for c in singles)
    fused = max(big[f"fused_{m}"]["ratio_vs_slowest"] for m in ("text", "image"))
    tail = max(c["server"]["p99"] / c["server"]["p50"] for r in results for c in r["cases"])
    out = {
        "at_n": big["n"],
        "overhead_p50_ms_max": worst_overhead,
        "overhead_met": worst_overhead <= 1.5,
        "above_noop_overhead_p50_ms_max": worst_above_floor,
        "above_noop_overhead_met": worst_above_floor <= 1.5,
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
            [
                "server p50 - no-op handler p50 - raw p50 <= 1.5 ms",
                worst_above_floor,
                out["above_noop_overhead_met"],
            ],
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
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a directory holding another version's imgdex package, served side by side",
    )
    parser.add_argument(
        "--block",
        type=int,
        default=10,
        help="queries each server answers in a row before the next takes over (default 10)",
    )
    parser.add_argument(
        "--client",
        choices=("stdlib", "httpx"),
        default="stdlib",
        help="HTTP client: http.client with prepared bodies (default) or httpx",
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
                "client": args.client,
                "block": args.block,
                "baseline": str(args.baseline) if args.baseline else None,
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
