"""Model services anywhere: serve-model's protocol, routing, failover, health and admin.

Every model service here is a real HTTP server on a free loopback port (uvicorn in a
thread, or `imgdex serve-model` / `imgdex.services.server` in a subprocess) serving the toy
colour model; the core talks to them exactly as it would to a GPU box.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from litestar.testing import TestClient
from PIL import Image

from imgdex.cli import main as cli_main
from imgdex.config import Config, load_config
from imgdex.errors import BadRequest
from imgdex.services.client import RateLimiter, base_url
from imgdex.services.server import create_model_app
from imgdex.testing import (
    ColorEmbedder,
    ToyPlugin,
    WordEmbedder,
    image_bytes,
    make_config,
)

from .conftest import ADMIN, wait_for
from .modelservers import ModelProcess, ThreadedServer, TunableColor
from .serverproc import ServerProcess

Client = TestClient[Any]
COLOURS = ["red", "green", "blue", "yellow", "black", "white", "orange", "purple"]


def model_app(tmp_path: Path, embedder: ColorEmbedder, **kwargs: Any) -> Any:
    config = make_config(tmp_path / f"svc-{id(embedder)}")
    plugins: dict[str, object] = {"toy_color": ToyPlugin(embedder)}
    return create_model_app(config, "toy_color", plugins=plugins, entry_points=False, **kwargs)


def core_config(tmp_path: Path, services: dict[str, dict[str, Any]], **worker: Any) -> Config:
    return make_config(
        tmp_path / "data",
        services={k: {"plugin": "toy_color", **v} for k, v in services.items()},
        worker={"health_interval": 0.2, **worker},
    )


def services(client: Client) -> dict[str, dict[str, Any]]:
    r = client.get("/api/admin/services", headers=ADMIN)
    assert r.status_code == 200, r.text
    return {s["id"]: s for s in r.json()["services"]}


def admin(client: Client, service: str, action: str) -> dict[str, Any]:
    r = client.post(f"/api/admin/services/{service}/{action}", headers=ADMIN)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()["services"][0]
    return body


def index_ready(client: Client, name: str = "toy_color_v1") -> bool:
    indexes = {i["index"]: i for i in client.get("/api/indexes").json()["indexes"]}
    return bool(indexes[name]["state"] == "ready")


def upload(client: Client, data: bytes) -> dict[str, Any]:
    r = client.post("/api/images", files={"file": ("a.png", data, "image/png")})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def search_colour(client: Client, query: str = "red") -> httpx.Response:
    return client.post("/api/search/text", json={"query": query, "index": "toy_color_v1"})


def status_of(client: Client, sha: str) -> str:
    return str(client.get(f"/api/images/{sha}").json()["status"])


# --- serve-model: the protocol and bad input -----------------------------------------

TOY_PLUGIN = """
from imgdex import Describer, hookimpl
from imgdex.testing import ColorEmbedder


class SizeNamer(Describer):
    method = "size_caption"
    model = "imgdex-toy-sizer"

    def describe_images(self, images):
        return [f"a picture of {im.size[0]} by {im.size[1]} pixels" for im in images]


@hookimpl
def register_embedders(register, config):
    register(ColorEmbedder())


@hookimpl
def register_describers(register, config):
    register(SizeNamer())
"""


@pytest.fixture
def installed_toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A distribution on sys.path whose entry point ``zz_svc_toy`` is a model plugin."""
    root = tmp_path / "site"
    info = root / "imgdex_svc_toy-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: imgdex-svc-toy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[imgdex]\nzz_svc_toy = zz_svc_toy_mod\n")
    (root / "zz_svc_toy_mod.py").write_text(TOY_PLUGIN)
    monkeypatch.syspath_prepend(str(root))
    return root


def test_serve_model_cli_speaks_the_protocol(tmp_path: Path, installed_toy: Path) -> None:
    config_file = tmp_path / "model.yaml"
    config_file.write_text(f"data_dir: {tmp_path / 'gpu-data'}\n")
    server = ServerProcess(
        config_file,
        env={
            "PYTHONPATH": os.pathsep.join([str(installed_toy), os.environ.get("PYTHONPATH", "")]),
            "IMGDEX_MODEL_API_KEY": "s3cret",
        },
    )
    server.argv = [
        sys.executable,
        "-m",
        "imgdex.cli",
        "serve-model",
        "zz_svc_toy",
        "--config",
        str(config_file),
        "--port",
        str(server.port),
        "--log-level",
        "WARNING",
    ]
    server.start()
    key = {"Authorization": "Bearer s3cret"}
    red, blue = image_bytes("red", (64, 48)), image_bytes("blue", (30, 20))
    expected = ColorEmbedder().embed_images([Image.open(io.BytesIO(red)).convert("RGB")])[0]
    try:
        with server.client() as http:
            health = http.get("/health").json()  # open without the key
            assert health["status"] == "ok"
            assert (health["model"], health["version"]) == ("imgdex-toy-color", "1")
            assert (health["dimension"], health["index"]) == (80, "toy_color_v1")
            assert health["describers"][0]["method"] == "size_caption"

            r = http.post("/embed/image", files={"file": ("r.png", red, "image/png")})
            assert r.status_code == 401 and r.json()["error"] == "unauthorized"

            # One image: the seed's `embedding`; several: `embeddings`.
            one = http.post("/embed/image", files={"file": ("r.png", red)}, headers=key).json()
            assert one["dimension"] == 80 and one["model"] == "imgdex-toy-color"
            assert np.allclose(one["embedding"], expected, atol=1e-6)
            files = [("a", ("r.png", red, "image/png")), ("b", ("b.png", blue, "image/png"))]
            two = http.post("/embed/image", files=files, headers={"X-API-Key": "s3cret"}).json()
            assert np.asarray(two["embeddings"]).shape == (2, 80)
            assert np.allclose(two["embeddings"][0], expected, atol=1e-6)

            text = http.post("/embed/text", json={"text": "red"}, headers=key).json()
            assert np.asarray(text["embeddings"]).shape == (1, 80)
            many = http.post(
                "/embed/text", json={"texts": ["red", "blue sky"], "query": True}, headers=key
            ).json()
            assert np.asarray(many["embeddings"]).shape == (2, 80)
            assert many["index"] == "toy_color_v1" and many["version"] == "1"

            described = http.post("/describe", files={"f": ("b.png", blue)}, headers=key).json()
            assert described["description"] == "a picture of 30 by 20 pixels"
            assert described["method"] == "size_caption"

            truncated = image_bytes("red", (64, 48))[:-30]
            bad: list[tuple[str, dict[str, Any], int, str]] = [
                ("/embed/image", {"files": {"file": ("x.png", b"not an image")}}, 415, ""),
                ("/embed/image", {"files": {"file": ("x.png", truncated)}}, 422, ""),
                ("/embed/image", {"json": {"text": "red"}}, 400, "missing_file"),
                ("/embed/image?index=nope", {"files": {"file": ("r.png", red)}}, 404, ""),
                (
                    "/embed/text",
                    {"content": b"{oops", "headers": {"content-type": "a/json"}},
                    400,
                    "",
                ),
                ("/embed/text", {"json": {"text": "a", "texts": ["b"]}}, 400, "bad_texts"),
                ("/embed/text", {"json": {"texts": []}}, 400, "bad_texts"),
                ("/embed/text", {"json": {"texts": ["  "]}}, 400, "bad_texts"),
                ("/embed/text", {"json": {"texts": ["a"] * 257}}, 400, "bad_texts"),
                ("/embed/text", {"json": {"text": 42}}, 400, "invalid_json"),
                ("/embed/text", {"json": {"txt": "red"}}, 400, "invalid_json"),
                ("/describe", {"files": {}}, 400, "missing_file"),
            ]
            for path, kwargs, status, code in bad:
                headers = {**key, **kwargs.pop("headers", {})}
                r = http.post(path, headers=headers, **kwargs)
                assert r.status_code == status, (path, kwargs, r.text)
                body = r.json()
                assert body["detail"] and body["status_code"] == status
                assert not code or body["error"] == code, body
            # Every request above was counted only when it was served.
            assert http.get("/health").json()["requests"] == {
                "embed_image": 2,
                "embed_text": 2,
                "describe": 1,
            }
    finally:
        server.stop()


def test_serve_model_refuses_unknown_plugins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "model.yaml"
    config_file.write_text(f"data_dir: {tmp_path / 'data'}\n")
    assert cli_main(["serve-model", "no_such_plugin", "--config", str(config_file)]) == 2
    assert "plugin 'no_such_plugin' is not installed" in capsys.readouterr().err
    assert cli_main(["serve-model", "hnswlib", "--config", str(config_file)]) == 2
    assert "offers no embedder or describer" in capsys.readouterr().err


# --- the core with model services ----------------------------------------------------


def test_failover_during_bulk_upload(tmp_path: Path, imgdex_app_factory: Any) -> None:
    """Kill one service and restart it, slow one past its timeout, disable and enable
    through the admin API, all during a bulk upload: no upload fails or even waits for the
    enricher, and every vector in the index is the colour model's."""
    # gpu_a runs in its own process (SIGKILL); the others in threads of this one.
    gpu_a = ModelProcess(tmp_path, "a").spawn()
    b_model, xl_model = TunableColor(), TunableColor(model="imgdex-toy-color-xl")
    gpu_b = ThreadedServer(model_app(tmp_path, b_model))
    other = ThreadedServer(model_app(tmp_path, xl_model))
    try:
        gpu_b.start(), other.start(), gpu_a.wait_ready()
        common = {"timeout": 1.0, "image_format": "png"}
        config = core_config(
            tmp_path,
            {
                "gpu_a": {"endpoint": gpu_a.url, **common},
                "gpu_b": {"endpoint": gpu_b.url, **common},
                "gpu_xl": {"endpoint": other.url, **common},
            },
        )
        local = ColorEmbedder()
        plugins = {"toy_color": ToyPlugin(local), "toy_words": ToyPlugin(WordEmbedder())}
        with TestClient(imgdex_app_factory(config, plugins=plugins, preload=True)) as client:
            wait_for(lambda: index_ready(client), what="index ready")
            wait_for(lambda: services(client)["gpu_xl"]["state"] == "mismatch", what="refused")
            reason = services(client)["gpu_xl"]["reason"]
            assert "model 'imgdex-toy-color-xl'" in reason and "never mixed" in reason

            uploaded: list[tuple[str, bytes]] = []

            def bulk(n: int) -> None:
                for _ in range(n):
                    i = len(uploaded)
                    data = image_bytes(COLOURS[i % 8], (64, 48), pattern=i + 1)
                    body = upload(client, data)
                    assert body["status"] == "ready" and body["errors"] == [], body
                    uploaded.append((body["sha256"], data))

            bulk(6)
            gpu_a.kill()
            bulk(6)  # all on gpu_b
            wait_for(lambda: services(client)["gpu_a"]["state"] == "down", what="a down")
            gpu_a.spawn().wait_ready()
            wait_for(lambda: services(client)["gpu_a"]["state"] == "ok", what="a back")
            b_model.delay = 3.0  # past its 1 s timeout: calls fail over to gpu_a
            bulk(6)
            wait_for(lambda: services(client)["gpu_b"]["state"] == "down", what="b down")
            b_model.delay = 0
            wait_for(lambda: services(client)["gpu_b"]["state"] == "ok", what="b back")
            assert admin(client, "gpu_a", "disable")["state"] == "disabled"
            bulk(4)  # all on gpu_b
            admin(client, "gpu_a", "enable")
            admin(client, "gpu_b", "disable")
            bulk(4)  # all on gpu_a
            admin(client, "gpu_b", "enable")
            bulk(4)

            infos = services(client)
            assert infos["gpu_a"]["requests"] > 0 and infos["gpu_b"]["requests"] > 0
            assert infos["gpu_b"]["errors"] >= 3
            assert infos["gpu_xl"]["requests"] == 0 and infos["gpu_xl"]["state"] == "mismatch"
            assert xl_model.batches == []  # never even asked
            assert local.loads == 0  # remote only: the in-process model never loaded

            library = client.app.state.runtime
            counts = library.catalog.index_counts()
            assert counts == {"toy_color_v1": len(uploaded)}
            truth = ColorEmbedder()
            for sha, data in uploaded:
                stored = library.blobs.read_vector(sha, "toy_color_v1", "image")
                want = truth.embed_images([Image.open(io.BytesIO(data)).convert("RGB")])[0]
                assert np.allclose(stored, want, atol=1e-6), sha
            assert client.get("/health").json()["image_embedding_service"] == "degraded"
    finally:
        gpu_a.kill()
        gpu_b.stop()
        other.stop()


def test_priority_weight_and_in_process_fallback(tmp_path: Path, imgdex_app_factory: Any) -> None:
    heavy, light = TunableColor(), TunableColor()
    local = ColorEmbedder()
    plugins = {"toy_color": ToyPlugin(local), "toy_words": ToyPlugin(WordEmbedder())}
    with (
        ThreadedServer(model_app(tmp_path, heavy)) as a,
        ThreadedServer(model_app(tmp_path, light)) as b,
    ):
        config = core_config(
            tmp_path,
            {
                "heavy": {"endpoint": a.url, "weight": 3},
                "light": {"endpoint": b.url + "/embed/image", "weight": 1},  # seed-style URL
                "here": {"endpoint": "in-process", "priority": 2},
            },
        )
        with TestClient(imgdex_app_factory(config, plugins=plugins, preload=True)) as client:
            wait_for(lambda: index_ready(client))
            for _ in range(40):
                assert search_colour(client).status_code == 200
            infos = services(client)
            assert (infos["heavy"]["requests"], infos["light"]["requests"]) == (30, 10)
            assert infos["here"]["requests"] == 0 and local.loads == 0
            assert infos["light"]["endpoint"] == b.url
            assert all(heavy.queries) and heavy.queries  # searches embed queries

            admin(client, "heavy", "disable")
            admin(client, "light", "disable")
            hits = search_colour(client).json()
            assert hits["indexes_searched"][0]["index"] == "toy_color_v1"
            assert services(client)["here"]["requests"] == 1 and local.loads == 1

            admin(client, "heavy", "enable")
            assert search_colour(client).status_code == 200
            assert services(client)["heavy"]["requests"] == 31
            assert services(client)["here"]["requests"] == 1


def test_rate_limit_spills_over_then_refuses(tmp_path: Path, imgdex_app_factory: Any) -> None:
    with (
        ThreadedServer(model_app(tmp_path, TunableColor())) as a,
        ThreadedServer(model_app(tmp_path, TunableColor())) as b,
    ):
        config = core_config(
            tmp_path,
            {
                "limited": {"endpoint": a.url, "rate_limit": 3, "timeout": 0.5},
                "spare": {"endpoint": b.url, "priority": 2},
            },
        )
        with TestClient(imgdex_app_factory(config, preload=True)) as client:
            wait_for(lambda: index_ready(client))
            for _ in range(5):
                assert search_colour(client).status_code == 200
            infos = services(client)
            assert (infos["limited"]["requests"], infos["spare"]["requests"]) == (3, 2)

            admin(client, "spare", "disable")
            r = search_colour(client)
            assert r.status_code == 503
            assert "limited: rate limit of 3 requests/minute reached" in r.json()["detail"]
            assert "spare: disabled by an admin" in r.json()["detail"]
            admin(client, "spare", "enable")
            wait_for(lambda: search_colour(client).status_code == 200, what="spare serves")


def test_rate_limiter_window_slides() -> None:
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert limiter.try_acquire() == 0 and limiter.try_acquire() == 0
    assert limiter.try_acquire() == pytest.approx(60.0)
    now[0] = 59.0
    assert limiter.try_acquire() == pytest.approx(1.0)
    now[0] = 60.0
    assert limiter.try_acquire() == 0
    assert RateLimiter(0).try_acquire() == 0  # unlimited


def test_example_config_is_valid() -> None:
    root = Path(__file__).resolve().parent.parent
    config = load_config(root / "config" / "embedding_services.example.yaml")
    assert config.services and config.worker.health_interval == 60
    for sid, service in config.services.items():
        assert service.plugin in config.plugins, sid
        assert service.endpoint == "in-process" or service.endpoint.startswith("http://"), sid


def test_base_url_accepts_seed_style_endpoints() -> None:
    assert base_url("http://gpu:6010/embed/image") == "http://gpu:6010"
    assert base_url("http://gpu:6011/embed/text/") == "http://gpu:6011"
    assert base_url("https://gpu/models/siglip2") == "https://gpu/models/siglip2"


def test_health_check_disables_and_recovers(
    tmp_path: Path, imgdex_app_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="imgdex.services")
    server = ThreadedServer(model_app(tmp_path, TunableColor())).start()
    config = core_config(tmp_path, {"gpu": {"endpoint": server.url, "timeout": 0.5}})
    try:
        with TestClient(imgdex_app_factory(config, preload=True)) as client:
            wait_for(lambda: index_ready(client))
            assert upload(client, image_bytes("red"))["status"] == "ready"
            server.stop()

            # Every provider down: the upload is stored, pending, with a clear reason.
            body = upload(client, image_bytes("blue"))
            assert body["status"] == "pending"
            assert "no model service could serve the request: gpu:" in body["errors"][0]["error"]
            wait_for(lambda: services(client)["gpu"]["state"] == "down", what="down")
            info = services(client)["gpu"]
            assert info["failures_in_a_row"] >= 3 and info["reason"]
            assert "disabled after 3 failures in a row" in caplog.text
            health = client.get("/health").json()
            assert health["status"] == "degraded"
            assert health["model_services"]["problems"][0]["id"] == "gpu"

            server.start()  # same port: re-checked and back on its own
            wait_for(lambda: services(client)["gpu"]["state"] == "ok", what="recovered")
            wait_for(lambda: status_of(client, body["sha256"]) == "ready", what="backfilled")
            assert "healthy again" in caplog.text
            assert client.get("/health").json()["image_embedding_service"] == "ok"

            # Disabled by an admin: stays off although healthy.
            assert admin(client, "gpu", "disable")["reason"] == "disabled by an admin"
            time.sleep(0.6)  # three health rounds
            assert services(client)["gpu"]["state"] == "disabled"
            green = upload(client, image_bytes("green"))
            assert green["status"] == "pending"
            assert "disabled by an admin" in green["errors"][0]["error"]
            admin(client, "gpu", "enable")
            wait_for(lambda: status_of(client, green["sha256"]) == "ready", what="re-enabled")
    finally:
        server.stop()


def test_mismatched_services_are_refused(tmp_path: Path, imgdex_app_factory: Any) -> None:
    good = TunableColor()
    wrong = {
        "renamed": TunableColor(model="some-other-model"),
        "v2": TunableColor(version="2"),
        "wide": TunableColor(extra_dims=16),
    }
    servers = [ThreadedServer(model_app(tmp_path, m)).start() for m in [good, *wrong.values()]]
    try:
        config = core_config(
            tmp_path,
            {
                "good": {"endpoint": servers[0].url},
                **{
                    name: {"endpoint": s.url, "priority": 2}
                    for name, s in zip(wrong, servers[1:], strict=True)
                },
            },
        )
        with TestClient(imgdex_app_factory(config, preload=True)) as client:
            wait_for(lambda: index_ready(client))
            wait_for(
                lambda: all(services(client)[n]["state"] == "mismatch" for n in wrong),
                what="all refused",
            )
            infos = services(client)
            assert "serves model 'some-other-model'" in infos["renamed"]["reason"]
            assert "serves version '2'" in infos["v2"]["reason"]
            assert "serves 96-d vectors" in infos["wide"]["reason"]
            assert "holds imgdex-toy-color v1 (80-d)" in infos["wide"]["reason"]

            admin(client, "good", "disable")
            body = upload(client, image_bytes("orange"))
            assert body["status"] == "pending"
            error = body["errors"][0]["error"]
            assert "renamed: mismatch: model mismatch" in error and "wide: mismatch" in error
            assert client.get("/health").json()["image_embedding_service"] == "unavailable"

            admin(client, "good", "enable")
            wait_for(lambda: status_of(client, body["sha256"]) == "ready", what="good serves")
            assert all(not m.batches for m in wrong.values())  # never asked to embed
            assert client.app.state.runtime.catalog.index_counts() == {"toy_color_v1": 1}
    finally:
        for server in servers:
            server.stop()


def test_images_are_resized_and_batched(tmp_path: Path, imgdex_app_factory: Any) -> None:
    model = TunableColor()
    with ThreadedServer(model_app(tmp_path, model)) as server:
        config = core_config(
            tmp_path,
            {
                "gpu": {
                    "endpoint": server.url,
                    "enabled": False,  # images pile up, then go in batches
                    "batch_size": 4,
                    "max_image_side": 64,
                }
            },
        )
        with TestClient(imgdex_app_factory(config)) as client:
            shas = [
                upload(client, image_bytes(COLOURS[i], (300, 200), pattern=i + 1))["sha256"]
                for i in range(6)
            ]
            assert services(client)["gpu"]["reason"] == "services.gpu.enabled is false"
            admin(client, "gpu", "enable")
            wait_for(lambda: all(status_of(client, s) == "ready" for s in shas), what="ready")
            assert sorted(model.batches) == [2, 4]
            assert set(model.sizes) == {(64, 43)}
            # JPEG at 64 px still lands next to the in-process vector of the original.
            library = client.app.state.runtime
            stored = library.blobs.read_vector(shas[0], "toy_color_v1", "image")
            data = image_bytes(COLOURS[0], (300, 200), pattern=1)
            want = ColorEmbedder().embed_images([Image.open(io.BytesIO(data)).convert("RGB")])
            assert float(stored @ want[0]) > 0.98


class PickyWords(WordEmbedder):
    """A text model that refuses some inputs (as a real one refuses over-long texts)."""

    def embed_texts(self, texts: Sequence[str], *, query: bool) -> npt.NDArray[np.float32]:
        if any("forbidden" in t for t in texts):
            raise BadRequest("this model refuses texts about forbidden things")
        return super().embed_texts(texts, query=query)


def test_refused_input_never_takes_a_service_down(tmp_path: Path, imgdex_app_factory: Any) -> None:
    words: dict[str, object] = {"toy_words": ToyPlugin(PickyWords())}
    app = create_model_app(
        make_config(tmp_path / "w"), "toy_words", plugins=words, entry_points=False
    )
    with ThreadedServer(app) as server:
        config = make_config(
            tmp_path / "data",
            services={"words": {"plugin": "toy_words", "endpoint": server.url}},
        )
        with TestClient(imgdex_app_factory(config, preload=True)) as client:
            wait_for(lambda: index_ready(client, "toy_words_v1"))
            sha = upload(client, image_bytes("red"))["sha256"]

            def describe(method: str, content: str) -> dict[str, Any]:
                r = client.post(
                    f"/api/images/{sha}/descriptions", json={"method": method, "content": content}
                )
                assert r.status_code == 201, r.text
                body: dict[str, Any] = r.json()
                return body

            assert describe("human", "a red kite")["embedding_count"] == 1
            for i in range(4):  # more than the three failures that take a service down
                error = describe(f"bad{i}", "something forbidden")["errors"][0]["error"]
                assert "refused the input" in error and "forbidden things" in error
            assert describe("vlm", "a kite in the sky")["embedding_count"] == 1
            info = services(client)["words"]
            assert info["state"] == "ok" and info["failures_in_a_row"] == 0
            assert info["errors"] >= 4  # the enricher retried them too, then gave up
            assert index_ready(client, "toy_words_v1")
            hits = client.post(
                "/api/search/text", json={"query": "kite", "index": "toy_words_v1"}
            ).json()
            assert hits["results"][0]["sha256"] == sha


def test_admin_api_and_unusable_services(tmp_path: Path, imgdex_app_factory: Any) -> None:
    config = make_config(
        tmp_path / "data",
        services={
            "gone": {"plugin": "not_installed", "endpoint": "http://127.0.0.1:9"},
            "odd": {"plugin": "toy_words", "endpoint": "ftp://example.org"},
        },
    )
    with TestClient(imgdex_app_factory(config)) as client:
        assert client.get("/api/admin/services").status_code == 401
        assert client.post("/api/admin/services/gone/disable").status_code == 401
        infos = services(client)
        assert infos["gone"]["state"] == "unused"
        assert "plugin 'not_installed' is not installed" in infos["gone"]["reason"]
        assert infos["odd"]["state"] == "unused" and "http(s)://" in infos["odd"]["reason"]
        r = client.post("/api/admin/services/nope/enable", headers=ADMIN)
        assert r.status_code == 404 and r.json()["error"] == "unknown_service"
        # The rest of the server is unaffected: toy_words stays in-process.
        sha = upload(client, image_bytes("red"))["sha256"]
        added = client.post(
            f"/api/images/{sha}/descriptions", json={"method": "human", "content": "a red kite"}
        ).json()
        assert [e["index"] for e in added["embeddings"]] == ["toy_words_v1"]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # httpx honours HTTP(S)_PROXY; loopback model services must be reached directly.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield
