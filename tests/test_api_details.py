"""Small HTTP contracts: `replaced` on descriptions, `weights` naming unknown indexes,
error texts that name an index once."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from litestar.testing import TestClient

from imgdex.testing import ColorEmbedder, ToyPlugin, WordEmbedder, image_bytes, make_config


def test_adding_a_description_says_whether_it_replaced_one(imgdex_client: Any) -> None:
    client = imgdex_client
    files = {"file": ("a.png", image_bytes("red"), "image/png")}
    sha = client.post("/api/images", files=files).json()["sha256"]
    url = f"/api/images/{sha}/descriptions"
    first = client.post(url, json={"method": "human", "content": "a red square"})
    assert first.status_code in (200, 201) and first.json()["replaced"] is False
    second = client.post(url, json={"method": "human", "content": "a crimson square"})
    assert second.json()["replaced"] is True
    same = client.post(url, json={"method": "human", "content": "a crimson square"})
    assert same.json()["replaced"] is True
    other = client.post(url, json={"method": "vlm1", "content": "a square"})
    assert other.json()["replaced"] is False
    texts = {d["method"]: d["content"] for d in client.get(url).json()}
    assert texts == {"human": "a crimson square", "vlm1": "a square"}


def test_weights_naming_an_unknown_index_is_a_400(imgdex_client: Any) -> None:
    client = imgdex_client
    files = {"file": ("a.png", image_bytes("red"), "image/png")}
    client.post("/api/images", files=files)
    body = {"query": "red", "weights": {"toy_words_v1": 1.0, "toy_wrods_v1": 2.0}}
    r = client.post("/api/search/text", json=body)
    assert r.status_code == 400
    assert r.json()["error"] == "unknown_index"
    assert "'toy_wrods_v1'" in r.json()["detail"] and "toy_words_v1" in r.json()["detail"]
    image = base64.b64encode(image_bytes("red")).decode()
    r = client.post("/api/search/image/base64", json={"image": image, "weights": {"nope": 1}})
    assert r.status_code == 400 and "'nope'" in r.json()["detail"]
    ok = client.post("/api/search/text", json={"query": "red", "weights": {"toy_words_v1": 2}})
    assert ok.status_code == 200


class NoWeights(ColorEmbedder):
    def load(self) -> None:
        raise OSError("the weights are not on this machine")


def test_errors_name_the_index_once(tmp_path: Path) -> None:
    from imgdex.api import create_app

    plugins = {"color": ToyPlugin(NoWeights()), "toy_words": ToyPlugin(WordEmbedder())}
    app = create_app(
        make_config(tmp_path / "data"), plugins=plugins, entry_points=False, preload=False
    )
    with TestClient(app) as client:
        files = {"file": ("a.png", image_bytes("red"), "image/png")}
        body = client.post("/api/images", files=files).json()
        (error,) = body["errors"]
        assert error["index"] == "toy_color_v1"
        assert error["error"] == "model unavailable: OSError: the weights are not on this machine"
        r = client.post("/api/search/image", files=files)
        assert r.status_code == 503
        detail = r.json()["detail"]
        assert detail.count("toy_color_v1") == 1, detail
        assert detail.startswith("no index could answer: toy_color_v1: model unavailable")
        r = client.post("/api/search/text", json={"query": "red"})
        searched = {s["index"]: s for s in r.json()["indexes_searched"]}
        assert "toy_color_v1" not in (searched["toy_color_v1"]["error"] or "")
