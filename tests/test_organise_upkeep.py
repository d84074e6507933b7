"""Background parts of organising: describer tags, empty captions, the metadata backfill
and the trash emptied after `storage.trash_days`, on the real app and its workers."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from litestar.testing import TestClient

from imgdex import Caption, Describer, hookimpl
from imgdex.testing import image_bytes, make_config, toy_plugins

from .conftest import ADMIN, wait_for
from .photos import photo

Client = TestClient[Any]


def upload(client: Client, data: bytes, name: str = "a.jpg") -> str:
    r = client.post("/api/images", files={"file": (name, data, "image/jpeg")})
    assert r.status_code == 201, r.text
    return str(r.json()["sha256"])


class TaggingNamer(Describer):
    """Names the dominant colour, with tags; a white image has nothing to say."""

    method = "namer"
    model = "imgdex-toy-namer"
    empty_ok = True  # "nothing to say" is an answer here, as for OCR

    def describe_images(self, images: Sequence[Any]) -> list[str | Caption]:
        out: list[str | Caption] = []
        for image in images:
            mean = np.asarray(image.convert("RGB"), dtype=np.float32).reshape(-1, 3).mean(0)
            if mean.min() > 230:
                out.append("")  # like OCR on a photo without text
            elif mean[0] > mean[2]:
                out.append(Caption("mostly red", ("Red ", "COLOUR", "red")))
            else:
                out.append({"text": "mostly blue", "tags": ["Blue"]})  # type: ignore[arg-type]
        return out


class NamerPlugin:
    @hookimpl
    def register_describers(self, register: Callable[[Describer], None]) -> None:
        register(TaggingNamer())


def test_describer_tags_and_empty_captions(imgdex_app_factory: Any) -> None:
    plugins = {**toy_plugins(), "namer": NamerPlugin()}
    with TestClient(imgdex_app_factory(plugins=plugins)) as c:
        red = upload(c, image_bytes("red"), "red.png")
        blue = upload(c, image_bytes("blue"), "blue.png")
        white = upload(c, image_bytes("white"), "white.png")
        c.post(f"/api/images/{red}/tags", json={"tags": ["red"]})  # a person's, kept as such

        def settled() -> bool:
            jobs = c.get("/api/admin/jobs", headers=ADMIN).json()["jobs"]
            return not jobs.get("describe")

        wait_for(settled, what="the describer's jobs are done")
        tags = c.get(f"/api/images/{red}/tags").json()["tags"]
        assert {(t["tag"], t["source"]) for t in tags} == {("red", "user"), ("colour", "namer")}
        assert c.get(f"/api/images/{blue}").json()["tags"] == ["blue"]
        assert c.get(f"/api/images/{red}/descriptions").json()[0]["content"] == "mostly red"
        # Nothing to say is no description, and no failure.
        assert c.get(f"/api/images/{white}/descriptions").json() == []
        report = c.get("/api/admin/jobs", headers=ADMIN).json()
        assert report["errors"] == {} and report["failed"] == {}
        assert {t["tag"]: t["count"] for t in c.get("/api/tags").json()["tags"]} == {
            "red": 1, "colour": 1, "blue": 1,
        }  # fmt: skip


def test_metadata_of_older_images_is_backfilled(tmp_path: Path, imgdex_app_factory: Any) -> None:
    config = make_config(tmp_path / "data")
    with TestClient(imgdex_app_factory(config)) as c:
        sha = upload(c, photo(taken="2018:03:04 05:06:07", make="FUJIFILM", gps=(1.0, 2.0, 3.0)))
        other = upload(c, image_bytes("red"), "plain.png")
    # As a catalog migrated from before metadata was read: nothing known, nothing read.
    db = sqlite3.connect(tmp_path / "data" / "imgdex.db")
    with db:
        db.execute(
            "UPDATE images SET taken_at = NULL, taken_local = NULL, camera_make = NULL, "
            "gps_lat = NULL, gps_lon = NULL, gps_alt = NULL, exif = NULL, meta_read = 0"
        )
    db.close()
    with TestClient(imgdex_app_factory(config)) as c:
        wait_for(
            lambda: c.get(f"/api/images/{sha}").json()["taken_at"] == "2018-03-04T05:06:07",
            what="the backfill read the stored photo",
        )
        info = c.get(f"/api/images/{sha}").json()
        assert info["camera"]["make"] == "FUJIFILM" and info["gps"]["alt"] == 3.0
        progress = c.get("/api/admin/jobs", headers=ADMIN).json()["metadata"]
        assert progress == {"done": 2, "total": 2}
        assert c.get(f"/api/images/{other}").json()["taken_at"] is None
        assert c.get("/api/images?camera=fuji").json()["total"] == 1


def test_upkeep_empties_the_trash_after_trash_days(tmp_path: Path, imgdex_app_factory: Any) -> None:
    config = make_config(tmp_path / "data", storage={"trash_days": 1 / 86400})  # 1 s
    with TestClient(imgdex_app_factory(config)) as c:
        old = upload(c, image_bytes("red"), "old.png")
        c.post(f"/api/images/{old}/tags", json={"tags": ["x"]})
        album = c.post("/api/albums", json={"name": "a"}).json()["id"]
        c.post(f"/api/albums/{album}/images", json={"images": [old]})
        c.delete(f"/api/images/{old}")
        time.sleep(2.1)  # deletion times have whole seconds
        recent = upload(c, image_bytes("blue"), "recent.png")
        c.delete(f"/api/images/{recent}")
        c.app.state.enricher.maintain()  # what the idle loop runs every ten minutes
        assert c.get(f"/api/images/{old}").status_code == 404
        folder = tmp_path / "data" / "storage" / old[:2] / old[2:4] / old[4:]
        assert not folder.exists()
        assert [i["sha256"] for i in c.get("/api/images?deleted=only").json()["images"]] == [recent]
        assert c.get("/api/tags").json()["tags"] == []
        assert c.get(f"/api/albums/{album}").json()["image_count"] == 0
        assert c.post(f"/api/images/{recent}/restore").status_code == 200
