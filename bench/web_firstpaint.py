"""The gallery's first paint in a real browser on a library of N images (10,000).

The library is real: N distinct small photo-like JPEGs (320x240, made here) uploaded
through ``POST /api/images`` to the real server (uvicorn, the core's toy embedders, so
every upload is enriched: thumbnail, vectors, keyword index), a human description on
every fourth image (the grid's alt text reads them) and a tag on every tenth. Once the
server is idle, headless Chromium (``/usr/bin/chromium``, driven by Playwright) opens
``/`` ``--runs`` times, each in a fresh browser context (empty cache, new connection),
at 1280x900, and reads the Performance API:

- ``ttfb``: the navigation's responseStart (the server rendering the page);
- ``fp`` / ``fcp``: first paint and first contentful paint (``paint`` entries);
- ``dcl``: domContentLoadedEventEnd; ``load``: loadEventEnd;
- ``thumbs``: when every thumbnail of the first screen has loaded (the latest
  responseEnd among the grid images above the fold, once they have all decoded);
- ``lcp``: largest contentful paint (a ``PerformanceObserver``, buffered).

Then the same, ``--runs`` times, with a warm cache (one context, reloads). The server and
browser share the machine's cores; nothing else is measured while they run.

Usage: ``python bench/web_firstpaint.py [--size 10000] [--runs 20] [--quick]``
(``--quick``: a smoke run, 300 images and 5 runs: uploading the library is nearly all
of a run's time, and 300 images still fill more than the gallery's first page).
Not a timed test: it prints a table and writes ``bench/results/web_firstpaint.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from _common import (
    BenchServer,
    LightConnection,
    multipart,
    server_config,
    stats_ms,
    table,
    write_json,
)
from _common import workdir as make_workdir

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 900}
CLIENTS = 4
WORDS = [
    "harbour",
    "boat",
    "sunset",
    "beach",
    "mountain",
    "street",
    "market",
    "garden",
    "river",
    "bridge",
    "snow",
    "cat",
]
METRICS = ["ttfb", "fp", "fcp", "dcl", "thumbs", "lcp", "load"]
QUICK_SIZE = 300

# Run in the page once the first screen of thumbnails has decoded: every figure is
# milliseconds since navigation start (performance.timeOrigin).
READ_TIMINGS = """async () => {
  const lcp = await new Promise((resolve) => {
    let last = null;
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) last = e.startTime;
    }).observe({ type: "largest-contentful-paint", buffered: true });
    setTimeout(() => resolve(last), 50);
  });
  const nav = performance.getEntriesByType("navigation")[0];
  const paint = Object.fromEntries(
    performance.getEntriesByType("paint").map((e) => [e.name, e.startTime]));
  const shown = [...document.querySelectorAll("#grid img")]
    .filter((img) => img.getBoundingClientRect().top < innerHeight);
  const urls = new Set(shown.map((img) => img.currentSrc));
  const ends = performance.getEntriesByType("resource")
    .filter((e) => urls.has(e.name)).map((e) => e.responseEnd);
  return {
    ttfb: nav.responseStart, dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
    fp: paint["first-paint"] ?? null, fcp: paint["first-contentful-paint"] ?? null,
    thumbs: ends.length ? Math.max(...ends) : null, lcp, shown: shown.length,
    cards: document.querySelectorAll("#grid img").length,
    bytes: nav.transferSize,
  };
}"""
FIRST_SCREEN_DONE = """() => {
  if (document.readyState !== "complete") return false;
  const shown = [...document.querySelectorAll("#grid img")]
    .filter((img) => img.getBoundingClientRect().top < innerHeight);
  return shown.length > 0 && shown.every((img) => img.complete && img.naturalWidth > 0);
}"""


def make_images(n: int, seed: int) -> list[bytes]:
    """`n` distinct 320x240 JPEGs: a smooth random colour field (4x3 cells, bicubic)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        cells = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
        image = Image.fromarray(cells, "RGB").resize((320, 240), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


async def upload_all(server: BenchServer, images: list[bytes]) -> list[str]:
    """Upload every image (CLIENTS keep-alive connections), then describe and tag some."""
    shas: list[str | None] = [None] * len(images)
    queue = list(range(len(images)))
    rnd = random.Random(7)

    async def worker() -> None:
        conn = LightConnection("127.0.0.1", server.port)
        try:
            while queue:
                i = queue.pop()
                body, ctype = multipart({"file": (f"img{i:05d}.jpg", images[i], "image/jpeg")})
                status, data = await conn.request("POST", "/api/images", body, ctype)
                if status not in (200, 201):
                    raise RuntimeError(f"upload {i}: {status} {data[:200]!r}")
                sha = msgspec.json.decode(data)["sha256"]
                shas[i] = sha
                if i % 4 == 0:
                    text = " ".join(rnd.sample(WORDS, 3))
                    body = msgspec.json.encode({"method": "human", "content": f"a photo: {text}"})
                    status, data = await conn.request(
                        "POST", f"/api/images/{sha}/descriptions", body
                    )
                    if status != 201:
                        raise RuntimeError(f"describe {i}: {status} {data[:200]!r}")
                if i % 10 == 0:
                    body = msgspec.json.encode({"tags": [rnd.choice(WORDS)]})
                    status, data = await conn.request("POST", f"/api/images/{sha}/tags", body)
                    if status not in (200, 201):
                        raise RuntimeError(f"tag {i}: {status} {data[:200]!r}")
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    return [s for s in shas if s is not None]


def measure(url: str, runs: int) -> dict[str, list[dict[str, Any]]]:
    from playwright.sync_api import sync_playwright

    out: dict[str, list[dict[str, Any]]] = {"cold": [], "warm": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            # One unmeasured visit: the browser process's own first start-up.
            context = browser.new_context(viewport=VIEWPORT)
            context.new_page().goto(url + "/")
            context.close()
            for _ in range(runs):
                context = browser.new_context(viewport=VIEWPORT)
                try:
                    page = context.new_page()
                    page.goto(url + "/")
                    page.wait_for_function(FIRST_SCREEN_DONE, timeout=60_000)
                    out["cold"].append(page.evaluate(READ_TIMINGS))
                finally:
                    context.close()
            context = browser.new_context(viewport=VIEWPORT)
            try:
                page = context.new_page()
                page.goto(url + "/")
                page.wait_for_function(FIRST_SCREEN_DONE, timeout=60_000)
                for _ in range(runs):
                    page.reload()
                    page.wait_for_function(FIRST_SCREEN_DONE, timeout=60_000)
                    out["warm"].append(page.evaluate(READ_TIMINGS))
            finally:
                context.close()
        finally:
            browser.close()
    return out


def summarise(samples: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, dict[str, float]]]:
    return {
        cache: {m: stats_ms([s[m] / 1000.0 for s in rows if s.get(m) is not None]) for m in METRICS}
        for cache, rows in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=10_000, help="images in the library")
    parser.add_argument("--runs", type=int, default=20, help="page loads per cache state")
    parser.add_argument("--quick", action="store_true", help="300 images, 5 runs")
    parser.add_argument("--workdir", type=Path, help="keep the data directory here")
    parser.add_argument("--out", type=Path, help="JSON results path")
    args = parser.parse_args()
    if args.quick:
        args.size, args.runs = QUICK_SIZE, 5
    if not Path(CHROMIUM).exists():
        raise SystemExit("chromium is not installed (apt-get install chromium)")

    with make_workdir(args.workdir, prefix="imgdex-bench-web-") as root:
        data = root / f"data-{args.size}"
        marker = data / "bench_web_firstpaint.json"
        spec = {"config": server_config(data), "plugins": [{"kind": "toy"}]}
        with BenchServer(spec, root) as server:
            if marker.exists():  # --workdir kept an earlier build of this size
                build = msgspec.json.decode(marker.read_bytes())
                print(f"  reusing the library in {data}", flush=True)
            else:
                t0 = time.perf_counter()
                images = make_images(args.size, seed=1)
                made_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                count = len(asyncio.run(upload_all(server, images)))
                upload_s = time.perf_counter() - t0
                print(f"  made {count} images in {made_s:.1f}s, uploaded in {upload_s:.1f}s")
                build = {"images": count, "make_s": made_s, "upload_s": upload_s}
                del images
            settle_s = server.settle()
            if not marker.exists():
                build["settle_s"] = settle_s
                marker.write_bytes(msgspec.json.encode(build))
            print(f"  server idle after {settle_s:.1f}s more", flush=True)
            load_before = os.getloadavg()[0]  # other work on the machine skews every figure
            samples = measure(server.url, args.runs)
            load_after = os.getloadavg()[0]
            memory = server.memory()
        summary = summarise(samples)
        first = samples["cold"][0]
        for cache in ("cold", "warm"):
            rows = [
                [m, summary[cache][m].get("p50"), summary[cache][m].get("p99")] for m in METRICS
            ]
            table(
                f"\nGallery first load, {cache} cache: {build['images']} images, {args.runs} runs, "
                f"{first['shown']} thumbnails on the first screen of {first['cards']}, "
                f"load average {load_before:.1f} -> {load_after:.1f} (ms)",
                ["metric", "p50", "p99"],
                rows,
            )
        write_json(
            "web_firstpaint",
            {
                "size": build["images"],
                "runs": args.runs,
                "viewport": VIEWPORT,
                "build": build,
                "first_screen_thumbnails": first["shown"],
                "cards": first["cards"],
                "html_bytes": first["bytes"],
                "load_average_1m": [load_before, load_after],
                "server_memory": memory,
                "summary": summary,
                "samples": samples,
            },
            args.out,
        )


if __name__ == "__main__":
    main()
