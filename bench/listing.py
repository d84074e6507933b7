"""The image list with filters and sorting at scale: ``list_images`` p50/p99 on a
catalog of N photos (90% dated, random cameras and places, a third rated).

This measures the catalog query the ``GET /api/images`` handler runs (a page of 50 and
the total), not HTTP. Usage: ``python bench/listing.py [--size 100000] [--quick]``.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
from _common import stats_ms, table, write_json

from imgdex.catalog import Catalog
from imgdex.catalog.images import PhotoFacts
from imgdex.filters import ImageFilters

CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("newest first", {}, {}),
    ("taken_at desc", {}, {"sort": "taken_at"}),
    ("taken_at asc (undated last)", {}, {"sort": "taken_at", "order": "asc"}),
    ("rating desc", {}, {"sort": "rating"}),
    ("taken_after 2020, taken_at", {"taken_after": "2020-01-01"}, {"sort": "taken_at"}),
    ("min_rating 4, rating", {"min_rating": 4}, {"sort": "rating"}),
    ("favorite, file_size", {"favorite": True}, {"sort": "file_size"}),
    ("near 1000 km", {"near": {"lat": 10, "lon": 10, "km": 1000}}, {}),
    ("camera substring, taken_at", {"camera": "canon"}, {"sort": "taken_at"}),
    ("rare camera, taken_at", {"camera": "leica"}, {"sort": "taken_at"}),
    ("near 50 km, taken_at", {"near": {"lat": 10, "lon": 10, "km": 50}}, {"sort": "taken_at"}),
]


def build(path: Path, size: int) -> Catalog:
    catalog = Catalog(path)
    rnd = random.Random(1)
    with catalog.transaction() as db:
        for n in range(size):
            id_ = hashlib.sha256(str(n).encode()).hexdigest()[:32]
            catalog.images.insert_image(
                db, id_=id_, full=id_ * 2, width=8, height=8, file_size=rnd.randint(1, 10**7),
                fmt="JPEG", filename="image.jpg", source=None, status="ready",
            )  # fmt: skip
            taken = None
            if rnd.random() < 0.9:
                taken = (
                    f"{rnd.randint(2000, 2024)}-0{rnd.randint(1, 9)}-1{rnd.randint(0, 9)}T10:00:00"
                )
            # One image in a thousand from a rare camera, the rest from four common ones.
            camera = (
                "Leica"
                if n % 1000 == 7
                else rnd.choice(["Canon", "NIKON CORPORATION", "Apple", "SONY"])
            )
            lat, lon = rnd.uniform(-60, 60), rnd.uniform(-180, 180)
            facts = PhotoFacts(taken, taken, camera, "model", None, lat, lon, None, None)
            catalog.images.set_facts(db, id_, facts)
            if n % 3 == 0:
                catalog.images.update_image(
                    db, id_, rating=rnd.randint(0, 5), favorite=rnd.random() < 0.1
                )
    return catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="10k images, 5 repeats")
    args = parser.parse_args()
    size, repeat = (10_000, 5) if args.quick else (args.size, args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        catalog = build(Path(tmp) / "imgdex.db", size)
        rows, results = [], {}
        for name, raw, order in CASES:
            filters = msgspec.convert(raw, ImageFilters)
            samples = []
            for _ in range(repeat):
                start = time.perf_counter()
                _, total = catalog.images.list_images(offset=0, limit=50, filters=filters, **order)
                samples.append(time.perf_counter() - start)
            stats = stats_ms(samples)
            results[name] = {**stats, "matching": total}
            rows.append([name, total, stats["p50"], stats["p99"]])
        catalog.close()
    table(
        f"GET /api/images query, {size:,} images, page of 50",
        ["case", "matching", "p50 ms", "p99 ms"],
        rows,
    )
    write_json("listing", {"size": size, "results": results})


if __name__ == "__main__":
    main()
