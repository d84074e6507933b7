"""The status rule: an image is ready when every enabled image index holds it, applied
to every image again when a plugin is enabled or disabled (through the admin API)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.testing import TestClient

from imgdex.testing import ColorEmbedder, ToyPlugin, WordEmbedder, image_bytes, make_config

from .conftest import ADMIN, wait_for


class NoWeights(ColorEmbedder):
    """An image embedder whose weights never arrive: its jobs stay queued."""

    def load(self) -> None:
        raise OSError("the weights are not on this machine")


def status(client: TestClient[Any], sha: str) -> str:
    return str(client.get(f"/api/images/{sha}").json()["status"])


def test_disabling_the_only_image_embedder_makes_old_images_ready(tmp_path: Path) -> None:
    from imgdex.api import create_app

    plugins = {"color": ToyPlugin(NoWeights()), "toy_words": ToyPlugin(WordEmbedder())}
    config = make_config(tmp_path / "data")
    app = create_app(config, plugins=plugins, entry_points=False, preload=False)
    with TestClient(app) as client:
        upload = {"file": ("a.png", image_bytes("red"), "image/png")}
        old = client.post("/api/images", files=upload).json()["sha256"]
        assert status(client, old) == "pending"  # its toy_color_v1 job waits for weights

        r = client.post("/api/admin/plugins/color/disable", headers=ADMIN)
        assert r.status_code == 200
        assert status(client, old) == "ready"  # no enabled image index left to wait for
        upload = {"file": ("b.png", image_bytes("blue"), "image/png")}
        new = client.post("/api/images", files=upload).json()["sha256"]
        assert status(client, new) == "ready"

        # Enabled again: both lack a toy_color_v1 vector, so neither is ready.
        r = client.post("/api/admin/plugins/color/enable", headers=ADMIN)
        assert r.status_code == 200
        assert (status(client, old), status(client, new)) == ("pending", "pending")
        listed = client.get("/api/images", params={"status": "pending"}).json()
        assert {i["sha256"] for i in listed["images"]} == {old, new}


def test_enabling_an_image_embedder_settles_once_it_has_embedded(tmp_path: Path) -> None:
    from imgdex.api import create_app

    plugins = {"color": ToyPlugin(ColorEmbedder()), "toy_words": ToyPlugin(WordEmbedder())}
    config = make_config(tmp_path / "data")
    app = create_app(config, plugins=plugins, entry_points=False, preload=False)
    with TestClient(app) as client:
        client.post("/api/admin/plugins/color/disable", headers=ADMIN)
        upload = {"file": ("a.png", image_bytes("red"), "image/png")}
        sha = client.post("/api/images", files=upload).json()["sha256"]
        assert status(client, sha) == "ready"
        client.post("/api/admin/plugins/color/enable", headers=ADMIN)
        # Pending until the backfill has embedded it, then ready by the same rule.
        wait_for(lambda: status(client, sha) == "ready", what="backfilled image ready")
        hits = client.post("/api/search/image", files=upload).json()["results"]
        assert hits[0]["sha256"] == sha
