"""Describers on model services: the core captions and tags images through ``POST
/describe`` of real ``imgdex serve-model`` processes, fails over when one dies, and treats
a service that answers garbage as a failed service, never as a crash."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from imgdex.testing import image_bytes, make_config

from .conftest import ADMIN, wait_for
from .modelservers import ThreadedServer
from .serverproc import ServerProcess

Client = TestClient[Any]
METHOD, MODEL = "colour_tags", "imgdex-toy-tagger"

TAGGER_PLUGIN = """
import os

from imgdex import Caption, Describer, hookimpl

NAMES = ("red", "green", "blue")


class ColourTagger(Describer):
    method = "colour_tags"
    model = "imgdex-toy-tagger"

    def describe_images(self, images):
        out = []
        for im in images:
            pixel = im.convert("RGB").resize((1, 1)).getpixel((0, 0))
            name = NAMES[max(range(3), key=lambda i: pixel[i])]
            # Which service answered, so that a test can see the failover.
            where = os.environ.get("TAGGER_SITE", "here")
            out.append(Caption(f"a mostly {name} picture from {where}", (name.title(), " Toy ")))
        return out


@hookimpl
def register_describers(register, config):
    register(ColourTagger())
"""


@pytest.fixture
def tagger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, object]:
    """A distribution whose entry point ``zz_tagger`` registers a describer with tags;
    returns its site directory and the module (the core's copy of the plugin)."""
    root = tmp_path / "site"
    info = root / "imgdex_zz_tagger-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: imgdex-zz-tagger\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[imgdex]\nzz_tagger = zz_tagger_mod\n")
    (root / "zz_tagger_mod.py").write_text(TAGGER_PLUGIN)
    monkeypatch.syspath_prepend(str(root))
    sys.modules.pop("zz_tagger_mod", None)
    return root, importlib.import_module("zz_tagger_mod")


def serve_model(tmp_path: Path, site: Path, name: str) -> ServerProcess:
    """``imgdex serve-model zz_tagger`` in its own process."""
    config_file = tmp_path / f"{name}.yaml"
    config_file.write_text(f"data_dir: {tmp_path / f'{name}-data'}\n")
    pythonpath = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    server = ServerProcess(config_file, env={"PYTHONPATH": pythonpath, "TAGGER_SITE": name})
    server.argv = [
        *(sys.executable, "-m", "imgdex.cli", "serve-model", "zz_tagger"),
        *("--config", str(config_file), "--port", str(server.port), "--log-level", "WARNING"),
    ]
    return server.start()


def core(tmp_path: Path, services: dict[str, dict[str, Any]]) -> Any:
    return make_config(
        tmp_path / "data",
        services={k: {"plugin": "zz_tagger", "timeout": 5, **v} for k, v in services.items()},
        worker={"health_interval": 0.2},
    )


def services(client: Client) -> dict[str, dict[str, Any]]:
    r = client.get("/api/admin/services", headers=ADMIN)
    assert r.status_code == 200, r.text
    return {s["id"]: s for s in r.json()["services"]}


def upload(client: Client, colour: str, n: int) -> str:
    data = image_bytes(colour, (48, 40), pattern=n)
    r = client.post("/api/images", files={"file": (f"{n}.png", data, "image/png")})
    assert r.status_code == 201, r.text
    return str(r.json()["sha256"])


def caption(client: Client, sha: str) -> str | None:
    info = client.get(f"/api/images/{sha}").json()
    texts = [d["content"] for d in info["descriptions"] if d["method"] == METHOD]
    return texts[0] if texts else None


def tags(client: Client, sha: str) -> set[tuple[str, str]]:
    r = client.get(f"/api/images/{sha}/tags")
    assert r.status_code == 200, r.text
    return {(t["tag"], t["source"]) for t in r.json()["tags"]}


def test_remote_describer_captions_tags_and_fails_over(
    tmp_path: Path, tagger: tuple[Path, object], imgdex_app_factory: Any
) -> None:
    site, module = tagger
    gpu_a = serve_model(tmp_path, site, "a")
    gpu_b = serve_model(tmp_path, site, "b")
    try:
        config = core(
            tmp_path,
            {"gpu_a": {"endpoint": gpu_a.url}, "gpu_b": {"endpoint": gpu_b.url, "priority": 2}},
        )
        app = imgdex_app_factory(config, plugins={"zz_tagger": module})
        with TestClient(app) as client:
            red = upload(client, "red", 1)
            wait_for(lambda: caption(client, red) is not None, what="red captioned")
            assert caption(client, red) == "a mostly red picture from a"
            # Tags normalised and stored with the describer's method as their source.
            assert tags(client, red) == {("red", METHOD), ("toy", METHOD)}
            infos = services(client)
            assert infos["gpu_a"]["method"] == METHOD and infos["gpu_a"]["index"] is None
            assert infos["gpu_a"]["state"] == "ok" and infos["gpu_a"]["model"] == MODEL
            assert infos["gpu_a"]["requests"] >= 1 and infos["gpu_b"]["requests"] == 0
            health = client.get("/health").json()
            assert health["caption_service"] == "ok", health

            gpu_a.kill()
            blue = upload(client, "blue", 2)
            wait_for(lambda: caption(client, blue) is not None, what="blue captioned")
            assert caption(client, blue) == "a mostly blue picture from b"
            assert tags(client, blue) == {("blue", METHOD), ("toy", METHOD)}
            wait_for(lambda: services(client)["gpu_a"]["state"] == "down", what="a down")
            assert services(client)["gpu_b"]["requests"] >= 1
            health = client.get("/health").json()
            assert health["caption_service"] == "degraded", health
            problems = health["model_services"]["problems"]
            assert [(p["id"], p["method"]) for p in problems] == [("gpu_a", METHOD)]

            # Admin switches work for describer services too.
            r = client.post("/api/admin/services/gpu_b/disable", headers=ADMIN)
            assert r.status_code == 200 and r.json()["services"][0]["state"] == "disabled"
    finally:
        gpu_a.kill()
        gpu_b.stop()


Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

GARBAGE: dict[str, tuple[bytes, str]] = {
    "bad_json": (b'{"descriptions": ["a", ', "did not answer with the protocol's JSON"),
    "count": (
        json.dumps({"descriptions": ["a", "b"], "method": METHOD, "model": MODEL}).encode(),
        "/describe answered 2 descriptions for 1",
    ),
    "tags": (
        json.dumps(
            {"descriptions": ["a"], "method": METHOD, "model": MODEL, "tags": [[1, 2]]}
        ).encode(),
        "Expected `str`, got `int` - at `$.tags[0][0]`",
    ),
    "tag_count": (
        json.dumps(
            {"descriptions": ["a"], "method": METHOD, "model": MODEL, "tags": [["x"], ["y"]]}
        ).encode(),
        "/describe answered tags for 2 images instead of 1",
    ),
}


class JunkService:
    """A service that passes its health check and answers ``/describe`` with `mode`'s
    garbage (or a good answer when `mode` is ``good``): a broken server of the protocol."""

    def __init__(self) -> None:
        self.mode = "bad_json"

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body"):
            pass
        if scope["path"] == "/health":
            describer = {"method": METHOD, "model": MODEL, "state": "ready"}
            body = json.dumps({"status": "ok", "describers": [describer]}).encode()
        elif self.mode == "good":
            body = json.dumps({"descriptions": ["fine"], "method": METHOD, "model": MODEL}).encode()
        else:
            body = GARBAGE[self.mode][0]
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def reason_has(client: Client, text: str) -> bool:
    return text in str(services(client)["junk"]["reason"])


def test_garbage_answers_fail_the_service_not_the_core(
    tmp_path: Path, tagger: tuple[Path, object], imgdex_app_factory: Any
) -> None:
    _, module = tagger
    junk = JunkService()
    with ThreadedServer(junk) as server:
        config = core(tmp_path, {"junk": {"endpoint": server.url}})
        app = imgdex_app_factory(config, plugins={"zz_tagger": module})
        with TestClient(app) as client:
            sha = upload(client, "green", 1)
            for mode, (_, reason) in GARBAGE.items():
                junk.mode = mode
                # The health check keeps trying a failing service with a tiny image.
                wait_for(partial(reason_has, client, reason), what=f"{mode}: {reason}")
                assert client.get("/health").status_code == 200
            info = services(client)["junk"]
            assert info["state"] == "down" and info["requests"] == 0, info
            assert caption(client, sha) is None
            # The describe job waits (not failed for good) while its only service is down.
            jobs = client.get("/api/admin/jobs", headers=ADMIN).json()
            progress = jobs["describers"][METHOD]
            assert (progress["done"], progress["failed"]) == (0, 0), jobs
            models = {m["name"]: m for m in client.get("/health").json()["models"]}
            error = str(models[f"describer {METHOD}"]["error"])
            assert "no model service" in error and "junk" in error, models

            junk.mode = "good"  # fixed: the health check lets it back and the job runs
            wait_for(lambda: caption(client, sha) == "fine", what="captioned once fixed")
            assert services(client)["junk"]["state"] == "ok"
