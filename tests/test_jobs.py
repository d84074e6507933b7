"""Background jobs in the catalog: queueing, back-off, backfill, and model upgrades."""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from imgdex.errors import ServiceUnavailable
from imgdex.testing import ColorEmbedder, ToyPlugin, WordEmbedder, image_bytes, make_config

from .conftest import ADMIN, wait_for

Client = TestClient[Any]


def upload(client: Client, data: bytes) -> Any:
    r = client.post("/api/images", files={"file": ("a.png", data, "image/png")})
    assert r.status_code in (200, 201), r.text
    return r.json()


def describe(client: Client, sha: str, text: str, method: str = "human") -> None:
    r = client.post(f"/api/images/{sha}/descriptions", json={"method": method, "content": text})
    assert r.status_code == 201, r.text


def jobs_table(data: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(data / "imgdex.db") as db:
        return db.execute(
            "SELECT kind, target, image_sha256, method, state, attempts FROM jobs ORDER BY id"
        ).fetchall()


def entries(data: Path, index: str) -> list[tuple[str, str]]:
    with sqlite3.connect(data / "imgdex.db") as db:
        return db.execute(
            "SELECT image_sha256, method FROM vector_entries WHERE index_name = ? ORDER BY id",
            (index,),
        ).fetchall()


def indexes(client: Client) -> dict[str, Any]:
    return {i["index"]: i for i in client.get("/api/indexes").json()["indexes"]}


def test_enabling_a_plugin_queues_a_backfill_that_drains(
    tmp_path: Path, imgdex_app_factory: Any
) -> None:
    data = tmp_path / "data"
    config = make_config(data, plugins={"toy_words": {"enabled": False}})
    with TestClient(imgdex_app_factory(config)) as client:
        shas = [upload(client, image_bytes("red", pattern=n))["sha256"] for n in range(1, 6)]
        for n, sha in enumerate(shas):
            describe(client, sha, f"a red thing number {n}")
        assert jobs_table(data) == []  # images embedded on upload; words disabled
        client.post("/api/admin/jobs/pause", headers=ADMIN)
        r = client.post("/api/admin/plugins/toy_words/enable", headers=ADMIN)
        assert r.status_code == 200
        queued = jobs_table(data)
        assert sorted(row[2] for row in queued) == sorted(shas)
        assert {row[:2] + row[3:] for row in queued} == {
            ("embed_text", "toy_words_v1", "human", "queued", 0)
        }
        report = client.get("/api/admin/jobs", headers=ADMIN).json()
        assert report["jobs"]["embed_text"] == {"queued": 5}
        words = report["indexes"]["toy_words_v1"]
        assert (words["done"], words["total"], words["queued"]) == (0, 5, 5)

        client.post("/api/admin/jobs/resume", headers=ADMIN)
        wait_for(lambda: jobs_table(data) == [])
        assert sorted(entries(data, "toy_words_v1")) == sorted((s, "human") for s in shas)
        report = client.get("/api/admin/jobs", headers=ADMIN).json()
        words = report["indexes"]["toy_words_v1"]
        assert (words["done"], words["total"], words["queued"], words["eta_s"]) == (5, 5, 0, 0.0)
        hits = client.post("/api/search/text", json={"query": "red thing number 3"}).json()
        assert hits["results"][0]["sha256"] == shas[3]


class Flaky(ColorEmbedder):
    """Fails on purple images until fixed, and notes when it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.fixed = False
        self.purple_calls: list[float] = []

    def embed_images(self, images: Sequence[Any]) -> Any:
        for image in images:
            r, g, b = image.convert("RGB").resize((1, 1)).getpixel((0, 0))
            if r > 100 and b > 150 and g < 80:
                self.purple_calls.append(time.monotonic())
                if not self.fixed:
                    raise ValueError("cannot handle purple")
        return super().embed_images(images)


def test_failing_items_back_off_exponentially_then_fail(
    tmp_path: Path, imgdex_app_factory: Any
) -> None:
    data = tmp_path / "data"
    config = make_config(data, worker={"retry_delay": 0.4, "max_attempts": 3})
    flaky = Flaky()
    plugins = {"toy_color": ToyPlugin(flaky), "toy_words": ToyPlugin(WordEmbedder())}
    with TestClient(imgdex_app_factory(config, plugins=plugins)) as client:
        bad = upload(client, image_bytes("purple"))
        assert bad["status"] == "pending" and "cannot handle purple" in bad["errors"][0]["error"]
        sha = bad["sha256"]
        wait_for(lambda: client.get(f"/api/images/{sha}").json()["status"] == "failed")
        # The upload's own try, then three background attempts spaced 0.4 s and 0.8 s.
        calls = flaky.purple_calls
        assert len(calls) == 4
        gaps = [b - a for a, b in itertools.pairwise(calls[1:])]
        assert gaps[0] >= 0.4 and gaps[1] >= 0.8
        assert jobs_table(data) == [("embed_image", "toy_color_v1", sha, "image", "failed", 3)]
        report = client.get("/api/admin/jobs", headers=ADMIN).json()
        assert report["jobs"]["embed_image"] == {"failed": 1}
        (error,) = report["errors"]["toy_color_v1"]
        assert error["item"] == sha and error["attempts"] == 3
        assert "cannot handle purple" in error["error"]
        time.sleep(1.0)
        assert len(flaky.purple_calls) == 4  # failed for good: not tried again

        flaky.fixed = True
        assert client.post("/api/admin/jobs/retry", headers=ADMIN).json() == {"requeued": 1}
        wait_for(lambda: client.get(f"/api/images/{sha}").json()["status"] == "ready")
        assert jobs_table(data) == []


class Offline(ColorEmbedder):
    """A model whose weights are not there until `arrive` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.arrive = threading.Event()

    def load(self) -> None:
        if not self.arrive.is_set():
            raise ServiceUnavailable("weights not downloaded yet")
        super().load()


def test_a_model_that_is_down_burns_no_attempts(tmp_path: Path, imgdex_app_factory: Any) -> None:
    data = tmp_path / "data"
    config = make_config(data, worker={"retry_delay": 0.05, "max_attempts": 2})
    offline = Offline()
    plugins = {"toy_color": ToyPlugin(offline), "toy_words": ToyPlugin(WordEmbedder())}
    with TestClient(imgdex_app_factory(config, plugins=plugins)) as client:
        shas = [upload(client, image_bytes("blue", pattern=n))["sha256"] for n in range(1, 4)]
        time.sleep(2.0)  # several retry_load_after periods (0.5 s) and retry delays
        rows = jobs_table(data)
        assert sorted(r[2] for r in rows) == sorted(shas)
        assert {(r[4], r[5]) for r in rows} == {("queued", 0)}
        offline.arrive.set()
        wait_for(
            lambda: all(client.get(f"/api/images/{s}").json()["status"] == "ready" for s in shas)
        )
        assert jobs_table(data) == []


def color_config(data: Path, version: str, delay: float = 0.0, **worker: Any) -> Any:
    return make_config(
        data,
        plugins={"toy_color": {"version": version, "delay": delay}},
        worker={"batch_size": 4, **worker},
    )


def test_model_upgrade_builds_behind_the_old_index_and_takes_over(
    tmp_path: Path, imgdex_app_factory: Any
) -> None:
    data = tmp_path / "data"
    colors = ["red", "green", "blue", "yellow"]
    with TestClient(imgdex_app_factory(color_config(data, "1"))) as client:
        shas = [
            upload(client, image_bytes(colors[n % 4], pattern=n + 1))["sha256"] for n in range(24)
        ]
        assert indexes(client)["toy_color_v1"]["role"] == "active"

    # New model version, slow enough to watch it build.
    with TestClient(imgdex_app_factory(color_config(data, "2", delay=0.05))) as client:
        listed = indexes(client)
        assert listed["toy_color_v2"]["role"] == "building"
        assert "toy_color_v1 answers searches" in listed["toy_color_v2"]["note"]
        assert listed["toy_color_v1"]["role"] == "active"
        assert listed["toy_color_v1"]["count"] == 24
        searched: list[list[str]] = []
        failures: list[str] = []
        stop = threading.Event()

        def search_all_along() -> None:
            while not stop.is_set():
                r = client.post("/api/search/text", json={"query": "red", "top_k": 5})
                body = r.json()
                errors = [i["error"] for i in body.get("indexes_searched", []) if i["error"]]
                if r.status_code != 200 or not body["results"] or errors:
                    failures.append(r.text)
                searched.append([i["index"] for i in body.get("indexes_searched", [])])
                time.sleep(0.02)

        searcher = threading.Thread(target=search_all_along)
        searcher.start()
        try:
            # An upload during the build goes to both indexes.
            new = upload(client, image_bytes("red", pattern=99))
            new_sha = new["sha256"]
            wait_for(
                lambda: (
                    {"toy_color_v1", "toy_color_v2"}
                    <= set(client.get(f"/api/images/{new_sha}").json()["indexes"])
                )
            )
            assert client.get(f"/api/images/{new_sha}").json()["status"] == "ready"
            wait_for(lambda: indexes(client)["toy_color_v2"]["role"] == "active", timeout=60)
            time.sleep(0.3)
        finally:
            stop.set()
            searcher.join()
        assert failures == []
        used = [s for s in searched if "toy_color_v1" in s or "toy_color_v2" in s]
        assert used[0] == [
            "toy_color_v1",
            "toy_words_v1",
            "keyword",
        ]  # the old index answered first
        assert used[-1] == ["toy_color_v2", "toy_words_v1", "keyword"]  # then the new one took over
        assert not any("toy_color_v1" in s and "toy_color_v2" in s for s in searched)

        listed = indexes(client)
        assert listed["toy_color_v2"]["count"] == 25
        assert listed["toy_color_v1"]["state"] == "retired"
        assert listed["toy_color_v1"]["role"] == "retired"
        assert "replaced by toy_color_v2" in listed["toy_color_v1"]["note"]
        assert sorted(s for s, _ in entries(data, "toy_color_v2")) == sorted([*shas, new["sha256"]])
        assert jobs_table(data) == []

    # After a restart the new index is simply the active one; the old stays on disk.
    with TestClient(imgdex_app_factory(color_config(data, "2"))) as client:
        listed = indexes(client)
        assert listed["toy_color_v2"]["role"] == "active"
        assert listed["toy_color_v1"]["state"] == "retired"
        body = client.post("/api/search/text", json={"query": "red", "top_k": 3}).json()
        assert [i["index"] for i in body["indexes_searched"]] == [
            "toy_color_v2",
            "toy_words_v1",
            "keyword",
        ]
        assert (data / "vector_index" / "toy_color_v1" / "meta.json").is_file()
        r = client.delete("/api/admin/indexes/toy_color_v1", headers=ADMIN)
        assert r.status_code == 200 and r.json()["removed_vectors"] == 25
        assert not (data / "vector_index" / "toy_color_v1").exists()
        assert "toy_color_v1" not in indexes(client)


def test_upgrade_without_the_old_model_answers_from_the_new_index(
    tmp_path: Path, imgdex_app_factory: Any
) -> None:
    data = tmp_path / "data"
    with TestClient(imgdex_app_factory(color_config(data, "1"))) as client:
        for n in range(6):
            upload(client, image_bytes("green", pattern=n + 1))
    # A plugin that can only build the new model: nothing can stand in for the old index.
    plugins = {
        "toy_color": ToyPlugin(ColorEmbedder("toy_color_v2", version="2")),
        "toy_words": ToyPlugin(WordEmbedder()),
    }
    with TestClient(imgdex_app_factory(color_config(data, "2"), plugins=plugins)) as client:
        wait_for(lambda: indexes(client)["toy_color_v2"]["role"] == "active")
        body = client.post("/api/search/text", json={"query": "green"}).json()
        assert [i["index"] for i in body["indexes_searched"]] == [
            "toy_color_v2",
            "toy_words_v1",
            "keyword",
        ]
        assert len(body["results"]) == 6
        assert indexes(client)["toy_color_v1"]["role"] == "retired"


class Broken(ColorEmbedder):
    """A new model version that cannot embed anything."""

    def embed_images(self, images: Sequence[Any]) -> Any:
        raise ValueError("bad new model")


def test_a_new_version_that_fails_never_takes_over(tmp_path: Path, imgdex_app_factory: Any) -> None:
    data = tmp_path / "data"
    with TestClient(imgdex_app_factory(color_config(data, "1"))) as client:
        for n in range(3):
            upload(client, image_bytes("blue", pattern=n + 1))

    class Upgraded:
        """Builds v1 as it was, and the broken v2, from the settings it is given."""

        from imgdex.hookspecs import hookimpl

        @hookimpl
        def register_embedders(self, register: Any, config: Any) -> None:
            version = str(config.raw.get("version", "1"))
            register(ColorEmbedder() if version == "1" else Broken("toy_color_v2", version=version))

    plugins = {"toy_color": Upgraded(), "toy_words": ToyPlugin(WordEmbedder())}
    config = color_config(data, "2", retry_delay=0.05, max_attempts=2)
    with TestClient(imgdex_app_factory(config, plugins=plugins)) as client:

        def all_failed() -> bool:
            report = client.get("/api/admin/jobs", headers=ADMIN).json()
            return report["indexes"]["toy_color_v2"]["failed"] == 3

        wait_for(all_failed)
        time.sleep(0.5)
        listed = indexes(client)
        assert listed["toy_color_v2"]["role"] == "building"
        assert (
            "3 items failed in toy_color_v2 that toy_color_v1 holds"
            in listed["toy_color_v2"]["note"]
        )
        body = client.post("/api/search/text", json={"query": "blue"}).json()
        assert [i["index"] for i in body["indexes_searched"]] == [
            "toy_color_v1",
            "toy_words_v1",
            "keyword",
        ]
        assert len(body["results"]) == 3
        # The images stay ready: the old index, which answers, has them.
        listed_images = client.get("/api/images", params={"status": "ready"}).json()
        assert listed_images["total"] == 3


@pytest.mark.parametrize("removed", ["building", "old"])
def test_indexes_in_an_upgrade_cannot_be_removed(
    tmp_path: Path, imgdex_app_factory: Any, removed: str
) -> None:
    data = tmp_path / "data"
    with TestClient(imgdex_app_factory(color_config(data, "1"))) as client:
        upload(client, image_bytes("red"))
    config = color_config(data, "2", delay=1.0)
    with TestClient(imgdex_app_factory(config)) as client:
        name = "toy_color_v2" if removed == "building" else "toy_color_v1"
        r = client.delete(f"/api/admin/indexes/{name}", headers=ADMIN)
        assert r.status_code == 409 and r.json()["error"] == "index_in_use"
