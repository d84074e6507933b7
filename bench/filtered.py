"""Filtered vector search: latency and recall against exact filtered search.

One hnswlib index (the core's `HnswIndex` behind a `ManagedIndex` and its label map, as
the server searches it) of N clustered unit vectors (`_common.clustered_vectors`), one
image per vector. For filters matching 100% (unfiltered), 90%, 10%, 1% and 0.1% of the
images, each query runs what a filtered search runs per index: the matching images'
labels from the label map (`LabelMap.labels_of`) and `ManagedIndex.search(..., among)`,
which walks the graph skipping the others or, for few labels, compares their stored
vectors exactly. Prints p50/p99 (label lookup included) and recall@10 against exact
search over the matching vectors, and writes ``bench/results/filtered.json``.

    python bench/filtered.py [--n 100000] [--dim 384] [--queries 200] [--quick]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import clustered_vectors, stats_ms, table, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="10k vectors, 50 queries")
    args = parser.parse_args()
    if args.quick:
        args.n, args.queries = 10_000, 50

    from imgdex.index import IndexInfo, ManagedIndex
    from imgdex.index.hnsw import HnswBackend
    from imgdex.providers import IndexLocation

    vectors = clustered_vectors(args.n + args.queries, args.dim, seed=1)
    data, queries = vectors[: args.n], vectors[args.n :]
    ids = random.Random(3)
    images = [f"{ids.getrandbits(128):032x}" for _ in range(args.n)]  # like SHA-256 prefixes
    rng = np.random.default_rng(2)
    with tempfile.TemporaryDirectory(prefix="imgdex-bench-filtered-") as tmp:
        path = Path(tmp)
        info = IndexInfo("bench_v1", "m", "1", args.dim, "cosine", "image", "hnswlib", "now")
        index = ManagedIndex(
            info,
            path,
            HnswBackend().open(IndexLocation.at(path), dimension=args.dim, metric="cosine"),
        )
        started = time.monotonic()
        for start in range(0, args.n, 10_000):
            stop = min(args.n, start + 10_000)
            keys = [(images[i], "image", 1, 1) for i in range(start, stop)]
            index.add(list(range(start + 1, stop + 1)), data[start:stop], keys)
        print(f"built {args.n} x {args.dim} in {time.monotonic() - started:.0f} s", flush=True)
        rows, payload = [], {}
        for share in (1.0, 0.9, 0.1, 0.01, 0.001):
            chosen = np.sort(rng.choice(args.n, max(1, int(args.n * share)), replace=False))
            allowed = {images[i] for i in chosen.tolist()}
            times, recalls = [], []
            for q in queries:
                t0 = time.perf_counter()
                if share < 1.0:
                    among = index.labels.labels_of(allowed)
                    labels, _ = index.search(q, args.k, among)
                else:
                    labels, _ = index.search(q, args.k)
                times.append(time.perf_counter() - t0)
                scores = data[chosen] @ q
                truth = set((chosen[np.argsort(-scores)[: args.k]] + 1).tolist())
                recalls.append(len(truth & set(labels.tolist())) / args.k)
            stats = stats_ms(times)
            label = "unfiltered" if share == 1.0 else f"{share:.1%} match"
            rows.append([label, len(chosen), stats["p50"], stats["p99"], float(np.mean(recalls))])
            payload[label] = {**stats, "matching": len(chosen), "recall": float(np.mean(recalls))}
    table(
        f"filtered search, {args.n} x {args.dim}, k {args.k}, {args.queries} queries",
        ["filter", "matching", "p50 ms", "p99 ms", "recall@10"],
        rows,
    )
    write_json("filtered", {"n": args.n, "dim": args.dim, "results": payload})


if __name__ == "__main__":
    main()
