"""The plugin host, admin enable/disable, model failures, describers and backfill."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar.testing import TestClient

from imgdex import hookspecs
from imgdex.config import Config
from imgdex.hookspecs import hookimpl
from imgdex.plugins import PluginHost
from imgdex.providers import Describer, IndexLocation, Metric, VectorIndex
from imgdex.testing import (
    ColorEmbedder,
    ToyPlugin,
    WordEmbedder,
    image_bytes,
    make_config,
    toy_plugins,
)

from .conftest import ADMIN, wait_for

Client = TestClient[Any]


def upload(client: Client, data: bytes) -> Any:
    return client.post("/api/images", files={"file": ("a.png", data, "image/png")}).json()


def test_every_hook_is_documented() -> None:
    specs = [
        f
        for name, f in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("register_")
    ]
    assert {f.__name__ for f in specs} == {
        "register_embedders",
        "register_describers",
        "register_index_backends",
    }
    for spec in specs:
        assert spec.__doc__ and len(spec.__doc__.split()) > 20, spec.__name__


def make_dist(root: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    # Wheel-style directory name: the distribution name with '_' for '-'.
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[imgdex]\n{lines}\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(source)


BROKEN_IMPORT = "raise ImportError('this plugin needs a library that is not installed')\n"
BROKEN_HOOK = """
from imgdex import hookimpl

@hookimpl
def register_embedders(register, config):
    raise RuntimeError("the plugin cannot find its settings")
"""
NOT_AN_EMBEDDER = """
from imgdex import hookimpl

@hookimpl
def register_embedders(register, config):
    register("I am a string")
"""
GOOD = """
from imgdex import hookimpl
from imgdex.testing import WordEmbedder

@hookimpl
def register_embedders(register, config):
    register(WordEmbedder("entry_words_v1"))
"""


@pytest.fixture
def fake_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    make_dist(
        root,
        "imgdex-fakes",
        {
            "zz_broken": "zz_broken_mod",
            "zz_badhook": "zz_badhook_mod",
            "zz_notemb": "zz_notemb_mod",
            "zz_good": "zz_good_mod",
        },
        {
            "zz_broken_mod": BROKEN_IMPORT,
            "zz_badhook_mod": BROKEN_HOOK,
            "zz_notemb_mod": NOT_AN_EMBEDDER,
            "zz_good_mod": GOOD,
        },
    )
    monkeypatch.syspath_prepend(str(root))
    return root


def test_broken_plugins_are_listed_and_never_fatal(
    fake_plugins: Path, imgdex_config: Config
) -> None:
    host = PluginHost(imgdex_config)
    host.load_entry_points()
    records = host.records
    assert records["zz_broken"].state == "failed"
    assert "not installed" in (records["zz_broken"].error or "")
    assert records["zz_badhook"].state == "failed"
    assert "cannot find its settings" in (records["zz_badhook"].error or "")
    assert records["zz_notemb"].state == "failed"
    assert records["zz_good"].state == "loaded"
    assert [e.index_name for e in records["zz_good"].embedders] == ["entry_words_v1"]
    assert records["hnswlib"].state == "loaded" and records["hnswlib"].kinds == ["index_backend"]
    assert records["zz_good"].distribution == "imgdex-fakes"


def test_server_starts_with_broken_plugins(fake_plugins: Path, imgdex_app_factory: Any) -> None:
    with TestClient(imgdex_app_factory(entry_points=True, plugins={})) as client:
        health = client.get("/health").json()
        assert health["status"] == "degraded"
        failed = {p["name"]: p["error"] for p in health["failed_plugins"]}
        assert {"zz_broken", "zz_badhook", "zz_notemb"} <= set(failed)
        plugins = {
            p["name"]: p for p in client.get("/api/admin/plugins", headers=ADMIN).json()["plugins"]
        }
        assert plugins["zz_broken"]["state"] == "failed"
        assert plugins["zz_good"]["indexes"][0]["index"] == "entry_words_v1"
        assert plugins["zz_good"]["indexes"][0]["dimension"] == 256
        sha = upload(client, image_bytes("red"))["sha256"]
        r = client.post(
            f"/api/images/{sha}/descriptions", json={"method": "human", "content": "hello world"}
        )
        assert "entry_words_v1" in [e["index"] for e in r.json()["embeddings"]]


def test_disable_takes_effect_at_once_and_survives_restart(
    tmp_path: Path, imgdex_app_factory: Any
) -> None:
    config = make_config(tmp_path / "data")
    with TestClient(imgdex_app_factory(config)) as client:
        sha = upload(client, image_bytes("red"))["sha256"]
        other = upload(client, image_bytes("blue"))["sha256"]
        client.post(
            f"/api/images/{other}/descriptions", json={"method": "human", "content": "blue sky"}
        )
        r = client.post("/api/admin/plugins/toy_words/disable", headers=ADMIN)
        assert r.status_code == 200 and r.json()["enabled"] is False
        added = client.post(
            f"/api/images/{sha}/descriptions", json={"method": "human", "content": "red kite"}
        ).json()
        assert added["embedding_count"] == 0
        searched = client.post("/api/search/text", json={"query": "red kite"}).json()[
            "indexes_searched"
        ]
        assert [s["index"] for s in searched] == ["toy_color_v1", "keyword"]
        r = client.post("/api/search/text", json={"query": "kite", "index": "toy_words_v1"})
        assert r.status_code == 409 and r.json()["error"] == "index_disabled"
        # Its index stays on disk.
        assert (tmp_path / "data" / "vector_index" / "toy_words_v1" / "meta.json").is_file()

    with TestClient(imgdex_app_factory(config)) as client:
        indexes = {i["index"]: i for i in client.get("/api/indexes").json()["indexes"]}
        assert indexes["toy_words_v1"]["enabled"] is False
        # Enabling backfills the description written while it was disabled.
        client.post("/api/admin/plugins/toy_words/enable", headers=ADMIN)

        def backfilled() -> bool:
            r = client.post("/api/search/text", json={"query": "kite", "index": "toy_words_v1"})
            if r.status_code == 503:  # the model is loading: answered at once, not waited for
                assert r.json()["error"] in ("model_loading", "search_unavailable")
                return False
            first = r.json()["results"][0]
            return bool(first["sha256"] == sha and first["matched_text"] == "red kite")

        wait_for(backfilled)
        jobs = client.get("/api/admin/jobs", headers=ADMIN).json()
        words = jobs["indexes"]["toy_words_v1"]
        assert (words["done"], words["total"], words["failed"], words["eta_s"]) == (2, 2, 0, 0.0)


class FlakyColor(ColorEmbedder):
    """Weights that are not there until `available` is set (offline start, late download)."""

    def __init__(self) -> None:
        super().__init__()
        self.available = False

    def load(self) -> None:
        if not self.available:
            raise OSError(
                "google/siglip2-base-patch16-224 is not in the local cache and the hub is offline"
            )
        super().load()


def test_model_unavailable_keeps_image_and_resumes(imgdex_app_factory: Any) -> None:
    flaky = FlakyColor()
    plugins = {"flaky": ToyPlugin(flaky), "toy_words": ToyPlugin(WordEmbedder())}
    with TestClient(imgdex_app_factory(plugins=plugins)) as client:
        body = upload(client, image_bytes("blue"))
        assert body["status"] == "pending"
        assert body["errors"][0]["index"] == "toy_color_v1"
        assert "hub is offline" in body["errors"][0]["error"]
        sha = body["sha256"]
        assert client.get(f"/api/images/{sha}/file").status_code == 200
        health = client.get("/health").json()
        assert health["image_embedding_service"] == "unavailable"
        model = next(m for m in health["models"] if m["name"] == "toy_color_v1")
        assert model["state"] == "failed" and "hub is offline" in model["error"]
        r = client.post(
            "/api/search/image", files={"file": ("q.png", image_bytes("blue"), "image/png")}
        )
        assert r.status_code == 503 and "hub is offline" in r.json()["detail"]

        flaky.available = True  # the weights arrive; no restart
        wait_for(lambda: client.get(f"/api/images/{sha}").json()["status"] == "ready")
        r = client.post(
            "/api/search/image", files={"file": ("q.png", image_bytes("blue"), "image/png")}
        )
        assert r.json()["results"][0]["sha256"] == sha
        assert client.get("/health").json()["image_embedding_service"] == "ok"


def test_index_of_another_model_is_never_mixed(tmp_path: Path, imgdex_app_factory: Any) -> None:
    config = make_config(tmp_path / "data")
    with TestClient(imgdex_app_factory(config)) as client:
        upload(client, image_bytes("red"))

    class OtherModel(ColorEmbedder):
        def __init__(self) -> None:
            super().__init__()
            self.model = "some-other-model"

    plugins = {"other": ToyPlugin(OtherModel()), "toy_words": ToyPlugin(WordEmbedder())}
    with TestClient(imgdex_app_factory(config, plugins=plugins)) as client:
        body = upload(client, image_bytes("green"))
        assert body["status"] == "pending"
        assert body["errors"][0]["error"].startswith("model unavailable: index toy_color_v1 holds")
        indexes = {i["index"]: i for i in client.get("/api/indexes").json()["indexes"]}
        assert indexes["toy_color_v1"]["state"] == "failed"
        assert "never mixed" in indexes["toy_color_v1"]["error"]
        assert indexes["toy_color_v1"]["count"] == 1


class ColorNamer(Describer):
    """A describer with no model: names the dominant colour."""

    method = "colour_caption"
    model = "imgdex-toy-namer"

    def describe_images(self, images: Sequence[Any]) -> list[str]:
        from imgdex.testing import COLORS

        out = []
        for image in images:
            mean = np.asarray(image.convert("RGB"), dtype=np.float32).reshape(-1, 3).mean(0)
            name = min(COLORS, key=lambda c: float(np.sum((np.array(COLORS[c]) - mean) ** 2)))
            out.append(f"a picture that is mostly {name}")
        return out


class NamerPlugin:
    @hookimpl
    def register_describers(self, register: Callable[[Describer], None]) -> None:
        register(ColorNamer())


def test_describers_write_descriptions_that_get_embedded(imgdex_app_factory: Any) -> None:
    plugins = {**toy_plugins(), "namer": NamerPlugin()}
    with TestClient(imgdex_app_factory(plugins=plugins)) as client:
        shas = {
            c: upload(client, image_bytes(c, pattern=i))["sha256"]
            for i, c in enumerate(["red", "green"])
        }

        def described() -> bool:
            return all(client.get(f"/api/images/{s}/descriptions").json() for s in shas.values())

        wait_for(described)
        texts = client.get(f"/api/images/{shas['green']}/descriptions").json()
        assert texts[0]["method"] == "colour_caption"
        assert texts[0]["content"] == "a picture that is mostly green"
        wait_for(
            lambda: (
                client.get(f"/api/images/{shas['green']}/descriptions").json()[0]["has_embedding"]
                == 1
            )
        )
        hits = client.post(
            "/api/search/text", json={"query": "mostly green", "index": "toy_words_v1", "top_k": 1}
        ).json()["results"]
        assert hits[0]["sha256"] == shas["green"]
        assert hits[0]["matched_by"] == "colour_caption"
        plugins_report = client.get("/api/admin/plugins", headers=ADMIN).json()["plugins"]
        namer = next(p for p in plugins_report if p["name"] == "namer")
        assert namer["describers"] == [
            {
                "method": "colour_caption",
                "model": "imgdex-toy-namer",
                "state": "ready",
                "error": None,
                "next_attempt_at": None,
                "retry_in": None,
            }
        ]


class SignReader(Describer):
    """An OCR-like describer: the text on red images, none on the others."""

    method = "signs"
    model = "imgdex-toy-signs"
    empty_ok = True

    def describe_images(self, images: Sequence[Any]) -> list[str]:
        means = [np.asarray(i.convert("RGB"), np.float32).reshape(-1, 3).mean(0) for i in images]
        return ["STOP ahead" if m[0] > 2 * m[2] else "" for m in means]


class SignPlugin:
    @hookimpl
    def register_describers(self, register: Callable[[Describer], None]) -> None:
        register(SignReader())


def test_an_empty_text_from_a_describer_that_allows_it_finishes_the_job(
    imgdex_app_factory: Any,
) -> None:
    with TestClient(imgdex_app_factory(plugins={**toy_plugins(), "signs": SignPlugin()})) as client:
        red = upload(client, image_bytes("red", pattern=1))["sha256"]
        blue = upload(client, image_bytes("blue", pattern=2))["sha256"]
        catalog = client.app.state.runtime.catalog
        wait_for(lambda: ("describe", "signs") not in catalog.job_counts())
        assert client.get(f"/api/images/{blue}/descriptions").json() == []
        assert catalog.failed_jobs() == {}
        (text,) = client.get(f"/api/images/{red}/descriptions").json()
        assert text["content"] == "STOP ahead"
        body = {"query": "stop", "index": "keyword"}
        hits = client.post("/api/search/text", json=body).json()["results"]
        assert [(h["sha256"], h["matched_by"]) for h in hits] == [(red, "signs")]


def test_admin_jobs_pause_rebuild_and_remove_index(imgdex_client: Client) -> None:
    shas = [
        upload(imgdex_client, image_bytes(c, pattern=i))["sha256"]
        for i, c in enumerate(["red", "green", "blue"])
    ]
    imgdex_client.delete(f"/api/images/{shas[0]}", params={"hard": "true"}, headers=ADMIN)
    assert imgdex_client.post("/api/admin/jobs/pause", headers=ADMIN).json() == {"paused": True}
    assert imgdex_client.get("/api/admin/jobs", headers=ADMIN).json()["paused"] is True
    imgdex_client.post("/api/admin/jobs/resume", headers=ADMIN)

    r = imgdex_client.post("/api/admin/indexes/toy_color_v1/rebuild", headers=ADMIN)
    assert r.status_code == 200 and r.json()["after"] == 2
    hits = imgdex_client.post(
        "/api/search/image", files={"file": ("q.png", image_bytes("blue", pattern=2), "image/png")}
    ).json()["results"]
    assert hits[0]["sha256"] == shas[2] and len(hits) == 2
    assert (
        imgdex_client.post("/api/admin/indexes/nope_v1/rebuild", headers=ADMIN).status_code == 404
    )

    r = imgdex_client.delete("/api/admin/indexes/toy_color_v1", headers=ADMIN)
    assert r.status_code == 409 and r.json()["error"] == "index_in_use"
    imgdex_client.post("/api/admin/plugins/toy_color/disable", headers=ADMIN)
    r = imgdex_client.delete("/api/admin/indexes/toy_color_v1", headers=ADMIN)
    assert r.json() == {"index": "toy_color_v1", "removed_vectors": 2}
    storage = Path(imgdex_client.app.state.runtime.config.data_dir) / "storage"
    wait_for(lambda: not list(storage.glob("*/*/*/embedding/toy_color_v1")))
    assert not (storage.parent / "vector_index" / "toy_color_v1").exists()
    for bad in ("..", "%2e%2e", "a%2Fb"):
        r = imgdex_client.delete(f"/api/admin/indexes/{bad}", headers=ADMIN)
        assert r.status_code in (400, 404), (bad, r.status_code)
        assert imgdex_client.post(
            f"/api/admin/indexes/{bad}/rebuild", headers=ADMIN
        ).status_code in (400, 404)
    assert storage.is_dir() and (storage.parent / "imgdex.db").is_file()
    assert imgdex_client.get("/api/stats").json()["indexes"] == {}
    assert imgdex_client.delete("/api/admin/indexes/toy_color_v1", headers=ADMIN).status_code == 404


class SlowColor(ColorEmbedder):
    """Weights that take long to load (a big download, a slow disk)."""

    def __init__(self) -> None:
        super().__init__()
        import threading

        self.release = threading.Event()

    def load(self) -> None:
        self.release.wait(30)
        super().load()


def test_requests_never_wait_for_a_loading_model(imgdex_app_factory: Any) -> None:
    slow = SlowColor()
    plugins = {"slow": ToyPlugin(slow), "toy_words": ToyPlugin(WordEmbedder())}
    with TestClient(imgdex_app_factory(plugins=plugins, preload=True)) as client:
        wait_for(
            lambda: any(m["state"] == "loading" for m in client.get("/health").json()["models"])
        )
        started = time.monotonic()
        body = upload(client, image_bytes("green"))
        r = client.post(
            "/api/search/image", files={"file": ("q.png", image_bytes("green"), "image/png")}
        )
        assert time.monotonic() - started < 5
        assert body["status"] == "pending"
        assert "still loading" in body["errors"][0]["error"]
        assert r.status_code == 503 and "still loading" in r.json()["detail"]
        slow.release.set()
        wait_for(lambda: client.get(f"/api/images/{body['sha256']}").json()["status"] == "ready")


class PickyColor(ColorEmbedder):
    """Fails on mostly-purple images until `fixed` (a model bug on one kind of input)."""

    fixed = False

    def embed_images(self, images: Sequence[Any]) -> Any:
        for image in images:
            r, g, b = image.convert("RGB").resize((1, 1)).getpixel((0, 0))
            if not self.fixed and r > 100 and b > 150 and g < 80:
                raise ValueError("cannot handle purple")
        return super().embed_images(images)


def test_items_failing_alone_are_given_up_visibly_and_retried(imgdex_app_factory: Any) -> None:
    picky = PickyColor()
    plugins = {"picky": ToyPlugin(picky), "toy_words": ToyPlugin(WordEmbedder())}
    with TestClient(imgdex_app_factory(plugins=plugins)) as client:
        good = upload(client, image_bytes("green"))
        bad = upload(client, image_bytes("purple"))
        assert good["status"] == "ready" and bad["status"] == "pending"

        def given_up() -> bool:
            return client.get(f"/api/images/{bad['sha256']}").json()["status"] == "failed"

        wait_for(given_up)
        image = client.get(f"/api/images/{bad['sha256']}").json()
        assert "cannot handle purple" in image["error"]
        jobs = client.get("/api/admin/jobs", headers=ADMIN).json()
        assert jobs["indexes"]["toy_color_v1"]["failed"] == 1
        assert jobs["errors"]["toy_color_v1"][0]["item"] == bad["sha256"]
        # One bad input must not take the model offline for everyone else.
        health = client.get("/health").json()
        assert next(m for m in health["models"] if m["name"] == "toy_color_v1")["state"] == "ready"
        assert upload(client, image_bytes("yellow"))["status"] == "ready"

        picky.fixed = True
        r = client.post("/api/admin/jobs/retry", headers=ADMIN)
        assert r.json() == {"requeued": 1}
        wait_for(lambda: client.get(f"/api/images/{bad['sha256']}").json()["status"] == "ready")
        assert (
            client.get("/api/admin/jobs", headers=ADMIN).json()["indexes"]["toy_color_v1"]["failed"]
            == 0
        )


def test_uninstalled_plugin_leaves_fan_out_cleanly(tmp_path: Path, imgdex_app_factory: Any) -> None:
    config = make_config(tmp_path / "data")
    with TestClient(imgdex_app_factory(config)) as client:
        sha = upload(client, image_bytes("red"))["sha256"]
        client.post(
            f"/api/images/{sha}/descriptions", json={"method": "human", "content": "red car"}
        )
    # Restart without the words plugin (pip uninstall): its index stays on disk, unused.
    with TestClient(
        imgdex_app_factory(config, plugins={"toy_color": ToyPlugin(ColorEmbedder())})
    ) as client:
        indexes = {i["index"]: i for i in client.get("/api/indexes").json()["indexes"]}
        assert indexes["toy_words_v1"]["state"] == "orphaned"
        assert indexes["toy_words_v1"]["count"] == 1
        body = client.post("/api/search/text", json={"query": "red car"}).json()
        assert [s["index"] for s in body["indexes_searched"]] == ["toy_color_v1", "keyword"]
        assert body["results"][0]["sha256"] == sha
        r = client.post(
            f"/api/images/{sha}/descriptions", json={"method": "vlm1", "content": "a car"}
        )
        assert r.status_code == 201 and r.json()["embedding_count"] == 0
        assert client.get("/health").json()["status"] == "ok"


class LocatedBackend:
    """A plugin's index backend that records every location the core hands it and keeps
    the vectors in the exact NumPy index (as a database-backed one would keep a cache)."""

    name = "located"

    def __init__(self) -> None:
        from imgdex.index.flat import FlatBackend

        self.inner = FlatBackend()
        self.locations: list[IndexLocation] = []

    def configure(self, config: Any) -> None:
        pass

    def open(self, location: IndexLocation, *, dimension: int, metric: Metric) -> VectorIndex:
        self.locations.append(location)
        return self.inner.open(location, dimension=dimension, metric=metric)


class LocatedPlugin:
    def __init__(self) -> None:
        self.backend = LocatedBackend()

    @hookimpl
    def register_index_backends(self, register: Callable[[Any], None]) -> None:
        register(self.backend)


def test_an_index_backend_gets_the_location_and_meta_of_each_index(
    tmp_path: Path, imgdex_app_factory: Any
) -> None:
    plugin = LocatedPlugin()
    config = make_config(tmp_path / "data", index={"backend": "located"})
    with TestClient(
        imgdex_app_factory(config, plugins={**toy_plugins(), "located": plugin})
    ) as client:
        sha = upload(client, image_bytes("red"))["sha256"]
        r = client.post(
            "/api/search/image", files={"file": ("q.png", image_bytes("red"), "image/png")}
        )
        assert r.json()["results"][0]["sha256"] == sha
    by_name = {loc.name: loc for loc in plugin.backend.locations}
    assert "toy_color_v1" in by_name  # opened on first use: the words index may not be yet
    color = by_name["toy_color_v1"]
    assert color.path == tmp_path / "data" / "vector_index" / "toy_color_v1"
    assert color.url is None
    assert color.meta["model"] == "imgdex-toy-color" and color.meta["dimension"] == 80
    assert color.meta["backend"] == "located"
    with pytest.raises(ValueError, match="no path"):
        plugin.backend.inner.open(IndexLocation(name="x"), dimension=4, metric="cosine")
