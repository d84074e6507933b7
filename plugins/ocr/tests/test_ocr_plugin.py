"""The plugin as the core sees it: entry point, config, and the describer job in the app."""

from __future__ import annotations

import importlib.metadata
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

import imgdex_ocr
from imgdex import Config, Describer, PluginSettings
from imgdex.errors import ConfigError
from imgdex.testing import make_config, toy_plugins
from imgdex_ocr import OcrDescriber


def entry_point() -> importlib.metadata.EntryPoint:
    (entry,) = [e for e in importlib.metadata.entry_points(group="imgdex") if e.name == "ocr"]
    return entry


def test_entry_point_is_installed() -> None:
    entry = entry_point()
    assert entry.value == "imgdex_ocr"
    assert entry.dist is not None and entry.dist.name == "imgdex-ocr"
    assert entry.load() is imgdex_ocr


def register(raw: dict[str, Any]) -> OcrDescriber:
    registered: list[Describer] = []
    imgdex_ocr.register_describers(registered.append, PluginSettings("ocr", raw))
    (describer,) = registered
    assert isinstance(describer, OcrDescriber)
    return describer


def test_registers_one_describer_without_loading_it(tmp_path: Path) -> None:
    from imgdex.plugins import PluginHost

    record = PluginHost(Config(data_dir=str(tmp_path))).add("ocr", imgdex_ocr)
    assert record.state == "loaded", record.error
    (describer,) = record.describers
    assert isinstance(describer, OcrDescriber)
    assert describer.method == "ocr" and not describer.loaded
    # A directory, so `imgdex plugins` can tell the files are there without loading them.
    assert describer.model == str(imgdex_ocr.bundled_model_dir())
    assert (Path(describer.model) / "PP-OCRv6_rec_small.onnx").is_file()
    assert describer.config.min_confidence == 0.5


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"min_confidence": 1.5}, "plugins.ocr.min_confidence"),
        ({"min_confidence": "high"}, "plugins.ocr.min_confidence"),
        ({"threads": 0}, "plugins.ocr.threads"),
        ({"model": "  "}, "plugins.ocr.model"),
        ({"langs": ["en"]}, "plugins.ocr.langs"),
    ],
)
def test_bad_config_is_an_error_naming_the_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        register(raw)


def png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_uploaded_text_becomes_the_ocr_description(
    tmp_path: Path, render: Callable[..., Any], latin_font: Path
) -> None:
    from imgdex.api import create_app

    config = make_config(tmp_path / "data", plugins={"ocr": {"min_confidence": 0.6}})
    plugins = {**toy_plugins(), "ocr": entry_point().load()}
    app = create_app(config, plugins=plugins, entry_points=False, preload=False)
    with TestClient(app) as client:
        data = png(render(["Lighthouse museum"], latin_font))
        r = client.post("/api/images", files={"file": ("sign.png", data, "image/png")})
        assert r.status_code in (200, 201), r.text
        sha = r.json()["sha256"]
        deadline = time.monotonic() + 120
        texts: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not texts:
            texts = client.get(f"/api/images/{sha}/descriptions").json()
            time.sleep(0.2)
        assert [t["method"] for t in texts] == ["ocr"], texts
        assert "lighthouse" in texts[0]["content"].lower()


@pytest.mark.slow
def test_ocr_text_is_keyword_and_vector_searchable(
    tmp_path: Path, render: Callable[..., Any], latin_font: Path
) -> None:
    from PIL import Image

    from imgdex.api import create_app

    config = make_config(tmp_path / "data")
    plugins = {**toy_plugins(), "ocr": entry_point().load()}
    app = create_app(config, plugins=plugins, entry_points=False, preload=False)
    with TestClient(app) as client:
        sign = png(render(["Harbour ferry timetable"], latin_font))
        blank = png(Image.new("RGB", (320, 200), (200, 210, 220)))
        shas = []
        for name, data in (("sign.png", sign), ("blank.png", blank)):
            r = client.post("/api/images", files={"file": (name, data, "image/png")})
            assert r.status_code == 201, r.text
            shas.append(r.json()["sha256"])
        catalog = client.app.state.runtime.catalog
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and ("describe", "ocr") in catalog.job_counts():
            time.sleep(0.2)
        # The image without text finished its job with no description, and no failure.
        assert ("describe", "ocr") not in catalog.job_counts()
        assert client.get(f"/api/images/{shas[1]}/descriptions").json() == []
        body = {"query": "ferry", "index": "keyword"}
        hits = client.post("/api/search/text", json=body).json()["results"]
        assert [(h["sha256"], h["matched_by"]) for h in hits] == [(shas[0], "ocr")]
        assert "ferry" in hits[0]["matched_text"].lower()
        # The description is embedded by the text index too.
        while (
            time.monotonic() < deadline and ("embed_text", "toy_words_v1") in catalog.job_counts()
        ):
            time.sleep(0.2)
        body = {"query": "timetable", "index": "toy_words_v1", "top_k": 1}
        hits = client.post("/api/search/text", json=body).json()["results"]
        assert hits[0]["sha256"] == shas[0] and hits[0]["matched_by"] == "ocr"
