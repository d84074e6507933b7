"""Work per search request, counted rather than timed: Python calls made by the server.

On a loaded machine two runs of the same code differ by up to 2 x in latency (see
docs/benchmarks.md), so a small regression cannot be told from noise by timing. This
counts instead: the real app (`imgdex.api.create_app`, the benchmark's `TableEmbedder`
per index, the same data directory as ``search.py``) is driven in process through
Litestar's `AsyncTestClient` (no socket; the event loop runs in this thread), and a
profile hook in every thread, the model and index pools included, counts each Python
function call and each call into C. The counts of N searches do not depend on load;
what little does (a lock that spins, a timeout that fires) shows up as the difference
between two runs of the same core, printed as ``noise``.

With ``--baseline DIR`` the same requests go to another version of the core (the
``imgdex`` package in DIR) on its own copy of the data directory, and the functions
whose calls per request changed most are listed: an added executor hop, catalog query
or lost cache shows up there by name. Each core runs in its own process, without
background tasks (their polling depends on time), after a warm-up.

    bench/callcount.py --baseline /tmp/base/core           # 2,000 vectors x 3 indexes
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
Key = tuple[str, str]


def _short(filename: str) -> str:
    """A file name both cores share: from ``imgdex/`` or ``site-packages/`` on."""
    for marker in ("/core/imgdex/", "/site-packages/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    if (stdlib := re.search(r"/lib/python3\.\d+/(.*)", filename)) is not None:
        return stdlib[1]
    return filename.rsplit("/", 1)[-1]


class Counter:
    """Calls per function in every thread while `active`; threads started later too."""

    def __init__(self) -> None:
        self.active = False
        self.counts: dict[int, collections.Counter[Key]] = {}
        self.names: dict[int, str] = {}

    def hook(self, frame: FrameType, event: str, arg: Any) -> None:
        if not self.active or event not in ("call", "c_call"):
            return
        ident = threading.get_ident()
        counts = self.counts.get(ident)
        if counts is None:
            counts = self.counts[ident] = collections.Counter()
            self.names[ident] = threading.current_thread().name
        if event == "call":
            code = frame.f_code
            counts[(_short(code.co_filename), code.co_qualname)] += 1
        else:
            module = (
                getattr(arg, "__module__", None) or type(getattr(arg, "__self__", None)).__name__
            )
            counts[(f"<C {module}>", getattr(arg, "__qualname__", repr(arg)))] += 1

    def install(self) -> None:
        threading.setprofile(self.hook)  # type: ignore[arg-type]
        sys.setprofile(self.hook)  # type: ignore[arg-type]

    def take(self) -> tuple[collections.Counter[Key], dict[str, int]]:
        total: collections.Counter[Key] = collections.Counter()
        by_thread: dict[str, int] = collections.Counter()
        for ident, counts in self.counts.items():
            total.update(counts)
            # Pool threads are named like "imgdex-model_0" (anyio's "asyncio-portal-7f3a..."):
            # group them by pool.
            pool = re.sub(r"[-_]?([0-9a-f]{6,}|[0-9]+)$", "", self.names[ident])
            by_thread[pool] += sum(counts.values())
        self.counts, self.names = {}, {}
        return total, dict(by_thread)


async def drive(spec: dict[str, Any], queries: int, rounds: int) -> dict[str, Any]:
    from _common import multipart
    from _embedders import build_plugins, key_image, table_index_name
    from litestar.testing import AsyncTestClient

    from imgdex.api import create_app
    from imgdex.config import decode_config

    counter = Counter()
    counter.install()
    config = decode_config(json.dumps(spec["config"]).encode(), "bench config")
    app = create_app(
        config,
        plugins=build_plugins(spec["plugins"]),
        entry_points=False,
        background=False,
        preload=True,
    )
    pngs = [key_image(i) for i in range(queries)]
    cases: list[tuple[str, str | None]] = [
        (modality, index)
        for modality in ("text", "image")
        for index in [*(table_index_name(d) for d in spec["dims"]), None]
    ]
    out: dict[str, Any] = {}
    async with AsyncTestClient(app=app, timeout=60) as client:

        async def one(modality: str, index: str | None, i: int) -> None:
            if modality == "text":
                body: dict[str, Any] = {"query": f"q{i}", "top_k": 10}
                if index is not None:
                    body["index"] = index
                r = await client.post("/api/search/text", json=body)
            else:
                fields: dict[str, Any] = {"file": ("q.png", pngs[i], "image/png"), "top_k": "10"}
                if index is not None:
                    fields["index"] = index
                content, ctype = multipart(fields)
                r = await client.post(
                    "/api/search/image", content=content, headers={"Content-Type": ctype}
                )
            r.raise_for_status()
            if not r.json()["results"]:
                raise RuntimeError(f"{modality} {index}: no results")

        for modality, index in cases:  # warm-up: first-call paths, caches, lazy loads
            for i in range(min(10, queries)):
                await one(modality, index, i)
        for modality, index in cases:
            # CPU seconds of the whole process, unhooked: steadier than latency under
            # load (time spent waiting for a core is not counted), not as steady as calls
            # (a busy neighbour still slows caches); the cores take turns, least kept.
            cpu0 = time.process_time()
            for i in range(queries):
                await one(modality, index, i)
            cpu_ms = (time.process_time() - cpu0) * 1000 / queries
            runs = []
            for _ in range(rounds):
                counter.active = True
                for i in range(queries):
                    await one(modality, index, i)
                counter.active = False
                total, by_thread = counter.take()
                runs.append({"total": total, "by_thread": by_thread})
            key = f"{modality} {index or 'fused'}"
            out[key] = {
                "per_request": [sum(r["total"].values()) / queries for r in runs],
                "cpu_ms": cpu_ms,
                "by_thread": {k: v / queries for k, v in runs[0]["by_thread"].items()},
                "functions": {
                    f"{f} {name}": n / queries for (f, name), n in runs[0]["total"].items()
                },
            }
    return out


def child(spec_file: Path, out_file: Path, queries: int, rounds: int) -> None:
    sys.path.insert(0, str(HERE))
    spec = json.loads(spec_file.read_text())
    result = asyncio.run(drive(spec, queries, rounds))
    out_file.write_text(json.dumps(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", type=Path, help="another version's imgdex package dir")
    parser.add_argument("--n", type=int, default=2000, help="vectors per index")
    parser.add_argument("--dims", default="384,768,1152")
    parser.add_argument("--queries", type=int, default=30, help="requests counted per case")
    parser.add_argument("--rounds", type=int, default=2, help="counted runs per case")
    parser.add_argument(
        "--passes", type=int, default=2, help="runs of each core, taking turns (least CPU kept)"
    )
    parser.add_argument("--top", type=int, default=25, help="functions listed")
    parser.add_argument("--cache", type=Path, help="keep the built data directory here")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/callcount.json)")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], args.queries, args.rounds)
        return 0

    import numpy as np
    from _common import clustered_vectors, server_config, table, workdir, write_json
    from _library import baseline_copy, dataset

    dims = [int(d) for d in args.dims.split(",")]
    results: dict[str, Any] = {}
    with workdir(args.cache) as root:
        ds = dataset(root, args.n, dims, seed=1)
        cores: dict[str, tuple[Path, dict[str, str]]] = {"server": (ds.data, {})}
        if args.baseline is not None:
            env = {"PYTHONPATH": str(args.baseline.resolve())}
            cores["baseline"] = (baseline_copy(ds.data, args.baseline), env)
        try:
            for name, (data, env) in [*cores.items()] * args.passes:
                spec = {
                    "config": server_config(data),
                    "dims": dims,
                    "plugins": [{"kind": "table", "dim": d} for d in dims],
                }
                # Query tables: the same rows search.py uses.
                for p, d in zip(spec["plugins"], dims, strict=True):
                    table_file = root / f"cc-queries-{d}.npy"
                    np.save(table_file, clustered_vectors(args.queries, d, seed=1 + 7919))
                    p["table"] = str(table_file)
                spec_file, out_file = root / f"cc-{name}.json", root / f"cc-{name}-out.json"
                spec_file.write_text(json.dumps(spec))
                print(f"  counting {name} ...", flush=True)
                subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--queries",
                        str(args.queries),
                        "--rounds",
                        str(args.rounds),
                        "--child",
                        str(spec_file),
                        str(out_file),
                    ],
                    env={**os.environ, **env},
                    check=True,
                    cwd=HERE.parent,
                )
                result = json.loads(out_file.read_text())
                if name in results:  # a later pass: keep its counts, the least CPU
                    for case, res in result.items():
                        res["cpu_ms"] = min(res["cpu_ms"], results[name][case]["cpu_ms"])
                results[name] = result
        finally:
            if args.baseline is not None:
                shutil.rmtree(cores["baseline"][0], ignore_errors=True)
    report(results, args.top, table)
    write_json(
        "callcount", {"settings": vars(args) | {"child": None}, "results": results}, args.out
    )
    return 0


HOPS = ("BaseEventLoop.run_in_executor",)
SQL = ("<C Connection> Connection.execute", "<C Cursor> Cursor.execute")


def moved(key: str) -> str:
    """A function's name without its module and class, so that code moved between
    modules (``search.py`` to ``ops/search.py``, ``Library`` to ``Pools``) compares equal."""
    where, _, qualname = key.partition(" ")
    parts = qualname.split(".")
    if len(parts) > 1 and parts[0].lstrip("_")[:1].isupper() and parts[1] != "<locals>":
        parts = parts[1:]
    name = ".".join(parts)
    return f"{where} {name}" if where.startswith("<C") else name


def report(results: dict[str, Any], top: int, table: Any) -> None:
    names = list(results)
    cases = list(results[names[0]])
    rows = []
    for case in cases:
        row: list[Any] = [case]
        for name in names:
            res = results[name][case]
            per, functions = res["per_request"], res["functions"]
            row += [
                per[0],
                max(per) - min(per),
                sum(n for f, n in functions.items() if f.endswith(HOPS)),
                sum(n for f, n in functions.items() if f.endswith(SQL)),
                res["cpu_ms"],
            ]
        if len(names) == 2:
            row.append(
                results["server"][case]["per_request"][0]
                / results["baseline"][case]["per_request"][0]
            )
        rows.append(row)
    headers = ["case"]
    for name in names:
        headers += [f"{name} calls", "noise", "executor hops", "SQL", "CPU ms"]
    if len(names) == 2:
        headers.append("calls x baseline")
    table("Calls per search request (Python and C, all threads)", headers, rows)
    for name in names:
        threads = sorted({t for c in cases for t in results[name][c]["by_thread"]})
        table(
            f"{name}: calls per request by thread",
            ["case", *threads],
            [[c, *(results[name][c]["by_thread"].get(t, 0) for t in threads)] for c in cases],
        )
    if len(names) != 2:
        return
    for case in cases:
        after: collections.Counter[str] = collections.Counter()
        before: collections.Counter[str] = collections.Counter()
        for f, n in results["server"][case]["functions"].items():
            after[moved(f)] += n
        for f, n in results["baseline"][case]["functions"].items():
            before[moved(f)] += n
        diff = {f: after[f] - before[f] for f in set(after) | set(before)}
        biggest = [kv for kv in sorted(diff.items(), key=lambda kv: -abs(kv[1])) if kv[1]]
        table(
            f"{case}: calls per request that changed most, moved code folded together "
            "(server - baseline)",
            ["function", "baseline", "server", "change"],
            [[f, before[f], after[f], d] for f, d in biggest[:top]],
        )


if __name__ == "__main__":
    sys.exit(main())
