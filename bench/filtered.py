"""Filtered vector search: latency and recall against exact filtered search.

One hnswlib index (the core's `HnswIndex` behind a `ManagedIndex` and its label map, as
the server searches it) of N clustered unit vectors (`_common.clustered_vectors`), one
image per vector, and a real SQLite catalog of those N images whose ratings make
``min_rating`` filters match 90%, 50%, 10%, 1% and 0.1% of them. Each query runs what a
filtered search runs per index, catalog included, two ways in turns:

- **before**: every matching id from the catalog (``filter_ids``), mapped to labels
  (``LabelMap.labels_of``), then ``ManagedIndex.search(..., among)`` (hnswlib with a
  Python filter, or exact for few labels): the search path up to commit 6d81e1c;
- **first search**: `Scope.search` (`imgdex.index.filtered`) with nothing kept: post-filter
  the graph's candidates by asking the catalog about them, enumerate only when few
  candidates match. What a filter's first search (or any, while the library is being
  written to) costs;
- **kept**: the same with the filter's set kept (`imgdex.filter_sets`, built before the
  timed queries): the facts revision read, then the graph's candidates through the
  set's mask (broad filters) or an exact search over its gathered vectors. What every
  later search with the filter costs;
- **kept, after an edit**: the same, each query after an (untimed) edit of one image's
  favourite flag: the kept set brought forward through the changed image first.
- **kept, after a new vector**: the same, each query after an (untimed) vector added to
  the index (a caption of an existing image): the set brought forward through the new
  label first.

Beside them: the same index unfiltered, and raw ``hnswlib.knn_query`` on the same graph.
All ask for the server's window for top_k 10 (k = 50) and score recall@10 of the first
ten against exact search over the matching vectors. Writes ``bench/results/filtered.json``.

    python bench/filtered.py [--n 100000] [--dim 384] [--queries 200] [--cache DIR] [--quick]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from _common import clustered_vectors, stats_ms, table, write_json

SHARES = (0.9, 0.5, 0.1, 0.01, 0.001)  # P(rating >= r) for r = 1..5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=50, help="labels asked (the server's window)")
    parser.add_argument("--block", type=int, default=10, help="queries per turn")
    parser.add_argument("--cache", type=Path, help="keep the built index and catalog here")
    parser.add_argument("--quick", action="store_true", help="10k vectors, 50 queries")
    args = parser.parse_args()
    if args.quick:
        args.n, args.queries = 10_000, 50

    vectors = clustered_vectors(args.n + args.queries, args.dim, seed=1)
    data, queries = vectors[: args.n], vectors[args.n :]
    ids = random.Random(3)
    images = [f"{ids.getrandbits(128):032x}" for _ in range(args.n)]  # like SHA-256 prefixes
    draw = np.random.default_rng(2).random(args.n)
    ratings = sum((draw < share).astype(int) for share in SHARES)
    if args.cache:
        # The vectors drawn depend on the query count too: a cache per count.
        root = args.cache / f"filtered-{args.n}-{args.dim}-{args.queries}"
        run(args, root, data, queries, images, ratings)
    else:
        with tempfile.TemporaryDirectory(prefix="imgdex-bench-filtered-") as tmp:
            run(args, Path(tmp), data, queries, images, ratings)


def run(
    args: argparse.Namespace,
    root: Path,
    data: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    images: list[str],
    ratings: npt.NDArray[np.int64],
) -> None:
    from imgdex.filter_sets import FilterSets
    from imgdex.filters import ImageFilters
    from imgdex.search_filters import CatalogAllowed, Scope

    index, catalog = build(args, root, data, images, ratings)
    raw = index.index._index  # type: ignore[attr-defined]
    allowed = CatalogAllowed(catalog)
    k = args.k
    rows: list[list[Any]] = []
    payload: dict[str, Any] = {}

    def before(filters: ImageFilters, q: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        among = index.labels.labels_of(catalog.images.filter_ids(filters))
        return index.search(q, k, among)[0]

    def after(filters: ImageFilters, q: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        scope = Scope(filters, allowed)
        scope.check()
        return scope.search(index, None)(q, k)[0]

    kept_source = CatalogAllowed(catalog, FilterSets(catalog, 256 << 20))

    def kept(filters: ImageFilters, q: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        scope = Scope(filters, kept_source)
        scope.check()
        return scope.search(index, None)(q, k)[0]

    edits = iter(range(10**9))

    def edit() -> None:
        """A person's edit between two searches (untimed): a favourite toggled, which
        moves the facts revision and changes no `min_rating` filter's matches."""
        i = next(edits)
        with catalog.transaction() as db:
            catalog.images.update_image(db, images[i % len(images)], favorite=i % 2 == 0)

    fresh = iter(range(len(images) + 1, 10**9))
    noise = np.random.default_rng(7)

    def new_vector() -> None:
        """A description's vector added between two searches (untimed), as while a
        library is being described: a label-map change. Random, so far from every
        query (the recall's truth holds)."""
        label = next(fresh)
        vector = noise.standard_normal(args.dim).astype(np.float32)
        vector /= np.linalg.norm(vector)
        index.add([label], vector[None, :], [(images[label % len(images)], "caption", 1, 1)])

    def plain(_: ImageFilters, q: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        return index.search(q, k)[0]

    def hnswlib(_: ImageFilters, q: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        labels: npt.NDArray[np.int64] = raw.knn_query(q, k=k)[0][0]
        return labels

    cases: list[tuple[str, ImageFilters, dict[str, Any]]] = [
        ("unfiltered", ImageFilters(), {"raw hnswlib": hnswlib, "server path": plain})
    ]
    for r, share in enumerate(SHARES, 1):
        cases.append(
            (
                f"{share:.1%} match",
                ImageFilters(min_rating=r),
                {
                    "before": before,
                    "first search": after,
                    "kept": kept,
                    "kept, after an edit": (edit, kept),
                    "kept, after a new vector": (new_vector, kept),
                },
            )
        )
        for _ in range(2):  # the second search builds the kept set
            kept(ImageFilters(min_rating=r), queries[0])
    for label, filters, ways in cases:
        r = filters.min_rating or 0
        chosen = np.flatnonzero(ratings >= r)
        truth = []
        for q in queries:
            scores = data[chosen] @ q
            truth.append(set((chosen[np.argsort(-scores)[:10]] + 1).tolist()))
        times: dict[str, list[float]] = {way: [] for way in ways}
        recalls: dict[str, list[float]] = {way: [] for way in ways}
        for start in range(0, len(queries), args.block):
            for way, fn in ways.items():  # in turns, so load hits every way alike
                prepare = None
                if isinstance(fn, tuple):
                    prepare, fn = fn
                for i in range(start, min(len(queries), start + args.block)):
                    if prepare is not None:
                        prepare()
                    t0 = time.perf_counter()
                    found = fn(filters, queries[i])
                    times[way].append(time.perf_counter() - t0)
                    top = set(found[:10].tolist())
                    recalls[way].append(len(truth[i] & top) / min(10, len(truth[i])))
        for way in ways:
            stats = stats_ms(times[way])
            recall = float(np.mean(recalls[way]))
            rows.append([label, way, len(chosen), stats["p50"], stats["p99"], recall])
            payload[f"{label} / {way}"] = {**stats, "matching": len(chosen), "recall": recall}
        print(f"  {label} done", flush=True)
    table(
        f"filtered search, {args.n} x {args.dim}, k {k}, {args.queries} queries",
        ["filter", "path", "matching", "p50 ms", "p99 ms", "recall@10"],
        rows,
    )
    write_json("filtered", {"n": args.n, "dim": args.dim, "k": k, "results": payload})
    catalog.close()


def build(
    args: argparse.Namespace,
    root: Path,
    data: npt.NDArray[np.float32],
    images: list[str],
    ratings: npt.NDArray[np.int64],
) -> tuple[Any, Any]:
    """The index and catalog in `root`: built once, reopened when there already."""
    from imgdex.catalog import Catalog
    from imgdex.index import IndexInfo, ManagedIndex
    from imgdex.index.hnsw import HnswBackend
    from imgdex.providers import IndexLocation

    fresh = not (root / "done").exists()
    root.mkdir(parents=True, exist_ok=True)
    info = IndexInfo("bench_v1", "m", "1", args.dim, "cosine", "image", "hnswlib", "now")
    path = root / "index"
    index = ManagedIndex(
        info,
        path,
        HnswBackend().open(IndexLocation.at(path), dimension=args.dim, metric="cosine"),
    )
    keys = [(image, "image", 1, 1) for image in images]
    catalog = Catalog(root / "catalog.db")
    if not fresh:
        index.labels.load(((i + 1, keys[i], True) for i in range(args.n)), args.n)
        return index, catalog
    started = time.monotonic()
    with catalog.transaction() as db:
        for i, image in enumerate(images):
            catalog.insert_image(
                db,
                id_=image,
                full=image * 2,
                width=1,
                height=1,
                file_size=100,
                fmt="PNG",
                filename="image.png",
                source="bench",
                status="ready",
            )
            if ratings[i]:
                catalog.images.update_image(db, image, rating=int(ratings[i]))
    for start in range(0, args.n, 10_000):
        stop = min(args.n, start + 10_000)
        index.add(list(range(start + 1, stop + 1)), data[start:stop], keys[start:stop])
    index.index.save()
    (root / "done").write_text("")
    print(f"built {args.n} x {args.dim} in {time.monotonic() - started:.0f} s", flush=True)
    return index, catalog


if __name__ == "__main__":
    main()
