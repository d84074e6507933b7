"""Building a benchmark data directory through the core's own classes, not HTTP.

Placeholder image rows (the facts of a 16x16 PNG, no file) are inserted with
`Catalog.insert_image`; vectors go in with `VectorWriter.store`, which writes each
vector's ``.npy`` file, its ``vector_entries`` row and the hnswlib graph exactly as the
enrichment of an upload does; `Runtime.close` saves the graphs. A server started on the
directory afterwards opens it like any other library.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from _common import clustered_vectors, server_config
from _embedders import build_plugins, table_index_name

GENERATOR = {"latent": 64, "noise": 0.5, "clusters": "n/200", "version": 1}
LOAD_BATCH = 2000


def image_ids(n: int) -> list[str]:
    """The id of placeholder image i (so results map back to rows of the corpus)."""
    return [full_hash(i)[:32] for i in range(n)]


def full_hash(i: int) -> str:
    return hashlib.sha256(f"bench-{i}".encode()).hexdigest()


@dataclass
class Dataset:
    data: Path
    n: int
    dims: list[int]
    corpora: dict[int, npt.NDArray[np.float32]]
    labels: dict[int, npt.NDArray[np.int64]]  # row i of corpora[d] has label labels[d][i]
    build: dict[str, Any]


def dataset(root: Path, n: int, dims: list[int], seed: int) -> Dataset:
    """Vectors for `dims` and a data directory holding them: an earlier build in `root`
    with the same n, seed and generator and at least these indexes, or a new one."""
    corpora = {d: clustered_vectors(n, d, seed=seed) for d in dims}
    data = _find(root, n, dims, seed)
    if data is not None:
        print(f"  reusing the data directory {data}", flush=True)
        build = dict(json.loads((data / "bench_meta.json").read_text())["build"], reused=True)
    else:
        data = root / f"data-{n}-{'-'.join(map(str, dims))}-s{seed}"
        build = _build(data, n, dims, corpora, seed)
    labels = {d: np.load(data / f"bench_labels_{d}.npy") for d in dims}
    return Dataset(data, n, dims, corpora, labels, build)


def _meta(n: int, dims: list[int], seed: int) -> dict[str, Any]:
    return {"n": n, "dims": dims, "seed": seed, "generator": GENERATOR}


def _find(root: Path, n: int, dims: list[int], seed: int) -> Path | None:
    for meta_file in sorted(root.glob("data-*/bench_meta.json")):
        meta = json.loads(meta_file.read_text()).get("meta", {})
        if (
            meta.get("n") == n
            and meta.get("seed") == seed
            and meta.get("generator") == GENERATOR
            and set(dims) <= set(meta.get("dims", []))
        ):
            return meta_file.parent
    return None


def _build(
    data: Path, n: int, dims: list[int], corpora: dict[int, npt.NDArray[np.float32]], seed: int
) -> dict[str, Any]:
    from imgdex.config import decode_config
    from imgdex.index import flat, hnsw
    from imgdex.plugins import PluginHost

    try:
        from imgdex.runtime import Runtime
    except ImportError:  # a core from before the structural pass (issue 13), as a baseline
        from imgdex.library import Library as Runtime  # type: ignore[no-redef]

    if data.exists() and any(data.iterdir()):
        raise SystemExit(f"{data} exists but holds no matching build: remove it first")
    config = decode_config(json.dumps(server_config(data)).encode(), "bench")
    host = PluginHost(config)
    host.add("hnswlib", hnsw)
    host.add("flat", flat)
    for name, plugin in build_plugins([{"kind": "table", "dim": d} for d in dims]).items():
        host.add(name, plugin)
    ids = image_ids(n)
    library = Runtime(config, host)
    build: dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        catalog = library.catalog
        for start in range(0, n, 10_000):
            with catalog.transaction() as db:
                for i in range(start, min(n, start + 10_000)):
                    catalog.insert_image(
                        db,
                        id_=ids[i],
                        full=full_hash(i),
                        width=16,
                        height=16,
                        file_size=100,
                        fmt="PNG",
                        filename="image.png",
                        source="bench",
                        status="ready",
                    )
        # A vector is only kept for an image whose files exist (a late vector never
        # revives a deleted image): give every placeholder row its placeholder files.
        blobs = library.blobs if hasattr(library, "blobs") else library.storage
        for id_ in ids:
            blobs.put_image(id_, "image.png", b"placeholder", b"placeholder")
        build["image_rows_s"] = time.perf_counter() - t0
        for d in dims:
            if hasattr(library, "registry"):
                slot, store = library.registry.embedders[table_index_name(d)], library.vectors.store
            else:
                slot, store = library.embedders[table_index_name(d)], library.store_vectors
            vectors = corpora[d]
            labels: list[int] = []
            t0 = time.perf_counter()
            for start in range(0, n, LOAD_BATCH):
                stop = min(n, start + LOAD_BATCH)
                items = [(ids[i], "image", vectors[i], None) for i in range(start, stop)]
                labels += store(slot, items)
                print(f"\r  d={d}: {stop:,}/{n:,} vectors stored", end="", flush=True)
            elapsed = time.perf_counter() - t0
            print(f" ({elapsed:.0f} s, {n / elapsed:,.0f}/s)", flush=True)
            if len(labels) != n:
                raise RuntimeError(f"stored {len(labels)} of {n} vectors")
            np.save(data / f"bench_labels_{d}.npy", np.asarray(labels, dtype=np.int64))
            build[f"store_vectors_d{d}_s"] = elapsed
            build[f"store_vectors_d{d}_per_s"] = n / elapsed
        t0 = time.perf_counter()
    finally:
        library.close()  # saves every index graph
    build["close_and_save_s"] = time.perf_counter() - t0
    meta = {"meta": _meta(n, dims, seed), "build": build}
    (data / "bench_meta.json").write_text(json.dumps(meta, indent=2))
    return dict(build, reused=False)


def load_raw(data: Path, dim: int, ef: int) -> Any:
    """The graph file the server loads, opened by hnswlib itself."""
    import hnswlib

    path = data / "vector_index" / table_index_name(dim)
    state = json.loads((path / "state.json").read_text())
    index = hnswlib.Index(space="cosine", dim=dim)
    index.load_index(str(path / f"hnsw.{state['gen']}.bin"), max_elements=int(state["capacity"]))
    index.set_ef(ef)  # load_index resets ef to 10
    return index


def graph_file(data: Path, dim: int) -> Path:
    path = data / "vector_index" / table_index_name(dim)
    state = json.loads((path / "state.json").read_text())
    return path / f"hnsw.{state['gen']}.bin"


def baseline_copy(data: Path, core: Path) -> Path:
    """A data directory for a second server running the core in `core` (``--baseline``),
    holding the same library as `data`, made after the build and before either starts.

    Each server holds its data directory's lock (`imgdex.datalock`), so two servers never
    share one; and an older core refuses a catalog migrated past its schema. So the
    baseline's catalog and vector files are built by the baseline core itself (a child
    process, the same rows and vectors), and then its graph files are replaced by copies
    of `data`'s, once the labels are checked equal: both servers then search
    byte-identical hnswlib graphs (a rebuilt graph would differ, hnswlib inserts on
    several threads). An earlier copy (``--cache``) is replaced."""
    copy = data.parent / f"baseline-{data.name}"
    shutil.rmtree(copy, ignore_errors=True)
    meta = json.loads((data / "bench_meta.json").read_text())["meta"]
    env = {**os.environ, "PYTHONPATH": str(core.resolve())}
    script = (
        "import sys, json; sys.path.insert(0, sys.argv[1]); from _library import _build, "
        "clustered_vectors as cv; m = json.loads(sys.argv[3]); "
        "_build(__import__('pathlib').Path(sys.argv[2]), m['n'], m['dims'], "
        "{d: cv(m['n'], d, seed=m['seed']) for d in m['dims']}, m['seed'])"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(Path(__file__).parent), str(copy), json.dumps(meta)],
        env=env,
        check=True,
    )
    for d in meta["dims"]:
        mine, theirs = (np.load(p / f"bench_labels_{d}.npy") for p in (data, copy))
        if not np.array_equal(mine, theirs):
            raise RuntimeError(f"the baseline core labelled the d={d} vectors differently")
        name = table_index_name(d)
        shutil.rmtree(copy / "vector_index" / name)
        shutil.copytree(data / "vector_index" / name, copy / "vector_index" / name)
    return copy
