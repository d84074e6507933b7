"""Filtered search end to end: ``POST /api/search/text`` with ``min_rating`` filters
through the real server, against the same server unfiltered.

The library is `search.py`'s (`_library.dataset`: placeholder image rows and clustered
unit vectors stored through the core, one index of ``--dim`` dimensions), and the server
is started the same way, with a `TableEmbedder` answering the text query ``"q17"`` with
row 17 of a query table, so no model runs. Before the server starts, the images' ratings
are set in its catalog so that ``min_rating`` 1..5 match 90%, 50%, 10%, 1% and 0.1% of
them (`filtered.py`'s draw); only ratings that differ are written, so a cached library
is reused as it is.

Two figures per filter, because the server keeps what a filter allows between searches
(`imgdex.filter_sets`): a set is built, in the background, on a filter's second search
at one catalog *facts revision*, and used by the searches after it.

- **first search** (cold): the first search of each filter at a facts revision, with no
  kept set: what a filter's first search costs, and every search while the library is
  being written to. Each round writes once (``PATCH /api/images/<id>`` toggling the
  favourite flag of an unrated image: the revision moves, no filter's matches change),
  waits for the server to be idle, then searches once with every filter (and once
  unfiltered), in a rotating order. ``--cold-rounds`` samples per filter.
- **kept** (steady state): each filter searched twice, the server left to finish the
  builds (idle), then ``--queries`` searches per filter and unfiltered, in turns of
  ``--block`` queries, the order rotating. The facts revision is read from the catalog
  before and after, to show no write intervened.

Recall@10 is scored against exact search over the matching vectors. Writes
``bench/results/filtered_http.json``.

    python bench/filtered_http.py [--n 100000] [--dim 384] [--cache DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as search.py: one core's reference

import numpy as np
import numpy.typing as npt
from _common import (
    TOKEN,
    BenchServer,
    clustered_vectors,
    server_config,
    stats_ms,
    table,
    wait_idle,
    workdir,
    write_json,
)
from _embedders import table_index_name
from _library import GENERATOR, dataset, image_ids
from search import JSON, Client

SHARES = (0.9, 0.5, 0.1, 0.01, 0.001)  # P(rating >= r) for r = 1..5, as filtered.py


def ratings_for(n: int) -> npt.NDArray[np.int64]:
    draw = np.random.default_rng(2).random(n)
    ratings: npt.NDArray[np.int64] = sum((draw < s).astype(np.int64) for s in SHARES)  # type: ignore[assignment]
    return ratings


def apply_ratings(data: Path, ids: list[str], ratings: npt.NDArray[np.int64]) -> int:
    """Give the catalog's images these ratings (before the server opens it); returns how
    many rows changed, 0 on a cached library rated by an earlier run."""
    from imgdex.catalog import Catalog

    with sqlite3.connect(data / "imgdex.db") as db:
        current = dict(db.execute("SELECT sha256, rating FROM images").fetchall())
    catalog = Catalog(data / "imgdex.db")
    try:
        changed = [(i, int(r)) for i, r in zip(ids, ratings, strict=True) if current[i] != r]
        with catalog.transaction() as db:
            for image, rating in changed:
                catalog.images.update_image(db, image, rating=rating)
    finally:
        catalog.close()
    return len(changed)


def facts_revision(data: Path) -> int:
    """Read from the catalog beside the server (reads only; WAL lets it)."""
    with sqlite3.connect(data / "imgdex.db") as db:
        row = db.execute("SELECT COALESCE(MAX(rev), 0) FROM facts_changes").fetchone()
        return int(row[0])


class Cases:
    """Prepared request bodies and the samples of every case (None: unfiltered)."""

    def __init__(self, args: argparse.Namespace, index: str) -> None:
        self.keys: list[int | None] = [None, *range(1, len(SHARES) + 1)]
        self.index = index
        self.top_k = args.top_k
        self.times: dict[int | None, list[float]] = {k: [] for k in self.keys}
        self.found: dict[int | None, list[tuple[int, list[str]]]] = {k: [] for k in self.keys}

    def body(self, key: int | None, query: int) -> bytes:
        request: dict[str, Any] = {"query": f"q{query}", "index": self.index, "top_k": self.top_k}
        if key is not None:
            request["filters"] = {"min_rating": key}
        return json.dumps(request).encode()

    def run(self, client: Client, key: int | None, query: int) -> None:
        body = self.body(key, query)
        elapsed, data = client._post("/api/search/text", body, JSON)
        self.times[key].append(elapsed)
        self.found[key].append((query, [r["sha256"] for r in json.loads(data)["results"]]))


def measure(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    n, dim, q = args.n, args.dim, args.queries
    print(f"== {n:,} vectors, d = {dim} ==", flush=True)
    ds = dataset(root, n, [dim], args.seed)
    ids = image_ids(n)
    ratings = ratings_for(n)
    changed = apply_ratings(ds.data, ids, ratings)
    print(f"  ratings: {changed:,} rows written", flush=True)
    queries = clustered_vectors(q, dim, seed=args.seed + 7919)
    table_path = root / f"queries-{n}-{dim}.npy"
    np.save(table_path, queries)
    index = table_index_name(dim)
    spec = {
        # The near-duplicate finder's first pass over a new 100k library keeps a core
        # busy for 20 minutes here and has no part in search: off.
        "config": server_config(
            ds.data, index={"ef_search": args.ef}, duplicates={"enabled": False}
        ),
        "plugins": [{"kind": "table", "dim": dim, "table": str(table_path)}],
    }
    cold, steady = Cases(args, index), Cases(args, index)
    server = BenchServer(spec, root)
    server.start()
    settle = server.settle()
    print(f"  server idle after {settle:.1f} s more", flush=True)
    client = Client(server.url)
    unrated = [ids[i] for i in np.flatnonzero(ratings == 0)[: args.cold_rounds]]
    try:
        for i in range(min(20, q)):  # connections, caches, first-call paths
            client._post("/api/search/text", cold.body(None, i), JSON)
        for rnd in range(args.cold_rounds):
            patch = json.dumps({"favorite": rnd % 2 == 0}).encode()
            conn = client.conn
            conn.request(
                "PATCH",
                f"/api/images/{unrated[rnd % len(unrated)]}",
                body=patch,
                headers={"Content-Type": JSON, "Authorization": f"Bearer {TOKEN}"},
            )
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"PATCH: {response.status}")
            wait_idle(server.pid, window=0.3, timeout=30)
            order = cold.keys[rnd % len(cold.keys) :] + cold.keys[: rnd % len(cold.keys)]
            for key in order:
                cold.run(client, key, (rnd * 7 + (key or 0)) % q)
        for key in steady.keys[1:]:
            for i in range(2):  # the second search at this revision starts the build
                client._post("/api/search/text", steady.body(key, i), JSON)
        waited = wait_idle(server.pid, timeout=120)
        print(f"  kept sets built; idle after {waited:.1f} s", flush=True)
        revision = facts_revision(ds.data)
        for b, start in enumerate(range(0, q, args.block)):
            shift = b % len(steady.keys)
            for key in steady.keys[shift:] + steady.keys[:shift]:
                for i in range(start, min(q, start + args.block)):
                    steady.run(client, key, i)
        revision_after = facts_revision(ds.data)
        memory = server.memory()
    finally:
        client.close()
        server.stop()
    truth = exact_truth(ds.corpora[dim], queries, ratings, args.top_k)
    row = {image: i for i, image in enumerate(ids)}
    return {
        "n": n,
        "dim": dim,
        "build": ds.build,
        "ratings_written": changed,
        "server_settle_s": settle,
        "build_wait_s": waited,
        "facts_revision": [revision, revision_after],
        "server_memory": memory,
        "cold": summarize(cold, truth, row, ratings),
        "steady": summarize(steady, truth, row, ratings),
    }


def exact_truth(
    corpus: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    ratings: npt.NDArray[np.int64],
    k: int,
) -> dict[int | None, list[set[int]]]:
    truth: dict[int | None, list[set[int]]] = {}
    for key in [None, *range(1, len(SHARES) + 1)]:
        chosen = np.arange(len(corpus)) if key is None else np.flatnonzero(ratings >= key)
        scores = queries @ corpus[chosen].T
        top = np.argsort(-scores, axis=1)[:, :k]
        truth[key] = [set(chosen[t].tolist()) for t in top]
    return truth


def summarize(
    cases: Cases,
    truth: dict[int | None, list[set[int]]],
    row: dict[str, int],
    ratings: npt.NDArray[np.int64],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in cases.keys:
        recalls = []
        for query, found in cases.found[key]:
            want = truth[key][query]
            got = {row[s] for s in found}
            recalls.append(len(want & got) / len(want))
        out["unfiltered" if key is None else f"min_rating {key}"] = {
            **stats_ms(cases.times[key]),
            "samples_ms": [t * 1000 for t in cases.times[key]] if len(recalls) <= 50 else None,
            "matching": len(ratings) if key is None else int((ratings >= key).sum()),
            "recall": float(np.mean(recalls)),
        }
    return out


def report(res: dict[str, Any], args: argparse.Namespace) -> None:
    base, cold_base = res["steady"]["unfiltered"]["p50"], res["cold"]["unfiltered"]["p50"]
    rows = []
    for name, steady in res["steady"].items():
        cold = res["cold"][name]
        rows.append(
            [
                name,
                steady["matching"],
                cold["p50"],
                cold["max"],
                cold["p50"] / cold_base,
                cold["p50"] / base,
                cold["recall"],
                steady["p50"],
                steady["p99"],
                steady["p50"] / base,
                steady["recall"],
            ]
        )
    table(
        f"Filtered text search through HTTP, {res['n']:,} x {res['dim']}, top_k {args.top_k}, "
        f"ef {args.ef}; first search: {args.cold_rounds} per filter, kept: {args.queries} "
        "(ms; x: over the unfiltered p50 of the same phase; x kept: of the kept phase)",
        [
            "filter",
            "matching",
            "first p50",
            "first max",
            "x",
            "x kept",
            "recall",
            "kept p50",
            "kept p99",
            "x",
            "recall",
        ],
        rows,
    )
    print(f"  facts revision during the kept phase: {res['facts_revision']}", flush=True)
    print(f"  load average at the end: {os.getloadavg()}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000, help="vectors (default %(default)s)")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200, help="kept-phase queries per case")
    parser.add_argument("--cold-rounds", type=int, default=20, help="first searches per filter")
    parser.add_argument("--block", type=int, default=10, help="queries per turn")
    parser.add_argument("--ef", type=int, default=64, help="the default config's ef_search")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache", type=Path, help="keep the built data directory here")
    parser.add_argument("--quick", action="store_true", help="10,000 vectors, 60 queries")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/...)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.queries, args.cold_rounds = 10_000, 60, min(args.cold_rounds, 10)
    load_before = os.getloadavg()
    with workdir(args.cache) as root:
        result = measure(args, root)
    report(result, args)
    settings = {k: v for k, v in vars(args).items() if k not in ("cache", "out")}
    write_json(
        "filtered_http",
        {
            "settings": {**settings, "generator": GENERATOR, "shares": SHARES},
            "load_average": {"before": load_before, "after": os.getloadavg()},
            "result": result,
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
