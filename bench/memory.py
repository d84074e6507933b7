"""Memory and disk per 100k vectors per index, against hnswlib's own footprint.

The library is built through the core like ``bench/search.py`` does (placeholder image
rows, `VectorWriter.store`, clustered vectors; a build made by ``search.py --cache``
with the same size and seed is reused). Then, for each index:

- server RSS: the real server (uvicorn, in its own process) with that one index open,
  after start-up has settled and ``--queries`` searches have run, minus the same server
  on the same data directory with no index open; both all of RSS and its anonymous part
  (RssAnon), since RSS also counts the pages of the catalog that SQLite maps
  (``PRAGMA mmap_size``): page cache, shared and droppable, not the index's memory. The
  target compares anonymous memory;
- hnswlib RSS: a fresh process that imports hnswlib, loads the same graph file with the
  same capacity, sets the same ef and runs the same number of queries (RSS after minus
  before), and the size of that graph file (hnswlib's own index size);
- disk: the index directory (graph, hidden labels, state), and the per-vector ``.npy``
  files the core keeps under ``storage/`` (the record the graph is rebuilt from), both
  as bytes in files and as disk blocks allocated.

Figures are scaled to 100k vectors (measured at ``--n``; linear in n).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from _common import (
    BenchServer,
    clustered_vectors,
    dir_size,
    proc_memory,
    server_config,
    table,
    workdir,
    write_json,
)
from _embedders import table_index_name
from _library import dataset, graph_file

PER = 100_000


def raw_rss(graph: Path, dim: int, capacity: int, ef: int, queries: int) -> dict[str, Any]:
    """Runs in a fresh process: RSS of hnswlib loading and querying the graph."""
    import hnswlib

    qs = clustered_vectors(queries, dim, seed=4242)
    before = proc_memory()
    index = hnswlib.Index(space="cosine", dim=dim)
    index.load_index(str(graph), max_elements=capacity)
    index.set_ef(ef)
    for q in qs:
        index.knn_query(q, k=10)
    after = proc_memory()
    return {
        "rss_before": before["rss"],
        "rss_after": after["rss"],
        "anon_before": before["anon"],
        "anon_after": after["anon"],
        "count": index.get_current_count(),
    }


def run_raw(graph: Path, dim: int, capacity: int, ef: int, queries: int) -> dict[str, Any]:
    args = [str(graph), str(dim), str(capacity), str(ef), str(queries)]
    proc = subprocess.run(
        [sys.executable, __file__, "--raw-rss", *args], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def server_rss(
    data: Path, root: Path, dims: list[int], queries: int, tables: dict[int, Path]
) -> dict[str, Any]:
    spec = {
        "config": server_config(data),
        "plugins": [{"kind": "table", "dim": d, "table": str(tables[d])} for d in dims],
    }
    with BenchServer(spec, root) as server:
        server.settle()
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for d in dims:
                for i in range(queries):
                    body = {"query": f"q{i}", "index": table_index_name(d)}
                    http.post("/api/search/text", json=body).raise_for_status()
        time.sleep(0.5)
        return server.memory()


def storage_of_index(storage: Path, index: str) -> dict[str, int]:
    """Bytes of the per-vector ``.npy`` files of one index, and the directories holding them."""
    apparent = allocated = files = 0
    for level1 in os.scandir(storage):
        if not level1.is_dir() or level1.name.startswith("."):
            continue
        for level2 in os.scandir(level1.path):
            for image in os.scandir(level2.path):
                folder = os.path.join(image.path, "embedding", index)
                try:
                    st = os.stat(folder)
                except FileNotFoundError:
                    continue
                allocated += st.st_blocks * 512
                for entry in os.scandir(folder):
                    est = entry.stat()
                    apparent += est.st_size
                    allocated += est.st_blocks * 512
                    files += 1
    return {"apparent": apparent, "allocated": allocated, "files": files}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000, help="vectors per index")
    parser.add_argument("--dims", default="384", help="indexes to measure (e.g. 384,768,1152)")
    parser.add_argument("--queries", type=int, default=200, help="searches before measuring")
    parser.add_argument("--ef", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache", type=Path, help="reuse data directories built here")
    parser.add_argument("--quick", action="store_true", help="3,000 vectors (smoke test)")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/memory.json)")
    parser.add_argument("--raw-rss", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.raw_rss:
        graph, dim, capacity, ef, queries = args.raw_rss
        print(json.dumps(raw_rss(Path(graph), int(dim), int(capacity), int(ef), int(queries))))
        return 0
    if args.quick:
        args.n, args.queries = 3000, 50
    dims = [int(d) for d in args.dims.split(",")]
    n, scale = args.n, PER / args.n
    rows, results = [], []
    with workdir(args.cache) as root:
        ds = dataset(root, n, dims, args.seed)
        tables = {}
        for d in dims:
            tables[d] = root / f"queries-mem-{d}.npy"
            np.save(tables[d], clustered_vectors(args.queries, d, seed=args.seed + 7919))
        base = server_rss(ds.data, root, [], 0, tables)
        print(
            f"  server with no index open: {base['rss'] / 2**20:.0f} MiB "
            f"({base['anon'] / 2**20:.0f} MiB anonymous)",
            flush=True,
        )
        for d in dims:
            name = table_index_name(d)
            state = json.loads((ds.data / "vector_index" / name / "state.json").read_text())
            graph = graph_file(ds.data, d)
            server = server_rss(ds.data, root, [d], args.queries, tables)
            raw = run_raw(graph, d, int(state["capacity"]), args.ef, args.queries)
            server_delta = server["rss"] - base["rss"]
            server_anon = server["anon"] - base["anon"]
            raw_delta = raw["rss_after"] - raw["rss_before"]
            raw_anon = raw["anon_after"] - raw["anon_before"]
            index_dir = dir_size(ds.data / "vector_index" / name)
            npy = storage_of_index(ds.data / "storage", name)
            result = {
                "dim": d,
                "n": n,
                "capacity": state["capacity"],
                "server_rss_base": base["rss"],
                "server_rss": server["rss"],
                "server_anon_base": base["anon"],
                "server_anon": server["anon"],
                "server_index_rss": server_delta,
                "server_index_anon": server_anon,
                "hnswlib_rss": raw_delta,
                "hnswlib_anon": raw_anon,
                "hnswlib_file": graph.stat().st_size,
                "index_dir": index_dir,
                "vector_files": npy,
                "vector_bytes": n * d * 4,
            }
            results.append(result)
            rows.append(
                [
                    d,
                    d * 4 * PER / 2**20,
                    graph.stat().st_size * scale / 2**20,
                    raw_delta * scale / 2**20,
                    server_delta * scale / 2**20,
                    server_delta / raw_delta,
                    raw_anon * scale / 2**20,
                    server_anon * scale / 2**20,
                    server_anon / raw_anon,
                    index_dir["allocated"] * scale / 2**20,
                    npy["apparent"] * scale / 2**20,
                    npy["allocated"] * scale / 2**20,
                    (index_dir["allocated"] + npy["allocated"]) / graph.stat().st_size,
                ]
            )
            print(
                f"  d={d}: server +{server_delta / 2**20:.0f} MiB "
                f"(+{server_anon / 2**20:.0f} MiB anonymous)",
                flush=True,
            )
        catalog = dir_size(ds.data)["allocated"] - sum(
            r["index_dir"]["allocated"] + r["vector_files"]["allocated"] for r in results
        )
    table(
        f"Memory and disk per 100k vectors per index (measured at {n:,}, M=16, ef={args.ef})",
        [
            "d",
            "raw f32 MiB",
            "hnsw file MiB",
            "hnswlib RSS MiB",
            "server RSS MiB",
            "x hnswlib",
            "hnswlib anon MiB",
            "server anon MiB",
            "anon x hnswlib",
            "index dir MiB",
            ".npy bytes MiB",
            ".npy on disk MiB",
            "disk x hnsw file",
        ],
        rows,
    )
    worst = max(r["server_index_anon"] / r["hnswlib_anon"] for r in results)
    worst_rss = max(r["server_index_rss"] / r["hnswlib_rss"] for r in results)
    table(
        "Target",
        ["target", "measured", "met"],
        [
            ["server memory (anonymous) per vector <= 1.2 x hnswlib's", worst, worst <= 1.2],
            ["(for reference: all of RSS, mapped catalog pages included)", worst_rss, None],
        ],
    )
    write_json(
        "memory",
        {
            "settings": {"n": n, "dims": dims, "queries": args.queries, "ef": args.ef},
            "indexes": results,
            "rest_of_data_dir_allocated": catalog,
            "targets": {
                "server_over_hnswlib_max": worst,
                "met": worst <= 1.2,
                "server_rss_over_hnswlib_rss_max": worst_rss,
            },
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
