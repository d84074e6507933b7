"""What the server shows and to whom: credentials for destruction, no local paths,
private files on disk, stored files that can never run as a page, HTTP file details."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar, get
from litestar.exceptions import ImproperlyConfiguredException
from litestar.testing import TestClient

from imgdex.errors import ConfigError, ServiceUnavailable
from imgdex.testing import image_bytes, make_config

from .conftest import ADMIN, wait_for

Client = TestClient[Any]


def upload(client: Client, data: bytes, name: str = "a.png") -> Any:
    r = client.post("/api/images", files={"file": (name, data, "application/octet-stream")})
    assert r.status_code in (200, 201), r.text
    return r.json()


@pytest.fixture
def lax_umask() -> Iterator[None]:
    """Run as a typical shell would (022), so a test sees what the server itself sets."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


# --- hard delete needs the admin credential ------------------------------------------


def test_hard_delete_needs_the_admin_token(imgdex_client: Client) -> None:
    sha = upload(imgdex_client, image_bytes("red"))["sha256"]
    url = f"/api/images/{sha}"
    r = imgdex_client.delete(url, params={"hard": "true"})
    assert (r.status_code, r.json()["error"]) == (401, "unauthorized")
    # An invalid credential is a 401 too (issue 15: 403 is for a valid one lacking rights).
    wrong = {"Authorization": "Bearer not-the-token"}
    r = imgdex_client.delete(url, params={"hard": "true"}, headers=wrong)
    assert (r.status_code, r.json()["error"]) == (401, "unauthorized")
    assert "invalid_token" in r.headers["www-authenticate"]
    assert not imgdex_client.get(url).json()["is_deleted"]  # nothing destroyed
    assert imgdex_client.get(f"{url}/file").status_code == 200
    r = imgdex_client.delete(url, params={"hard": "true"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["hard"] is True
    assert imgdex_client.get(url).status_code == 404
    # A soft delete stays open to clients (restorable by uploading again).
    sha = upload(imgdex_client, image_bytes("blue"))["sha256"]
    assert imgdex_client.delete(f"/api/images/{sha}").status_code == 200


# --- no local model paths outside admin endpoints -------------------------------------


def test_model_local_path_is_shown_as_its_name(
    tmp_path: Path, imgdex_app_factory: Callable[..., Litestar]
) -> None:
    model_dir = tmp_path / "secret-models" / "my-color-model"
    model_dir.mkdir(parents=True)
    config = make_config(tmp_path / "data", plugins={"toy_color": {"model": str(model_dir)}})
    with TestClient(imgdex_app_factory(config)) as client:
        uploaded = upload(client, image_bytes("red"))
        assert uploaded["embeddings"][0]["model"] == "my-color-model"
        health = client.get("/health")
        search = client.post("/api/search/text", json={"query": "red", "top_k": 3})
        indexes = client.get("/api/indexes")
        for r in (health, search, indexes):
            assert r.status_code == 200
            assert "secret-models" not in r.text, r.text
        assert "my-color-model" in [m["model"] for m in health.json()["models"]]
        assert search.json()["results"][0]["model"] == "my-color-model"


def test_hub_ids_are_shown_as_configured() -> None:
    from imgdex.status import hide_model_path, model_name

    assert model_name("google/siglip2-base-patch16-224") == "google/siglip2-base-patch16-224"
    assert model_name("/srv/models/siglip2/") == "siglip2"
    assert model_name("./models/bge") == "bge"
    assert model_name("~/models/bge") == "bge"
    assert hide_model_path("cannot open /srv/models/x/config.json", "/srv/models/x") == (
        "cannot open x/config.json"
    )


# --- private files on disk ---------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_fresh_data_directory_is_private(
    tmp_path: Path, imgdex_app_factory: Callable[..., Litestar], lax_umask: None
) -> None:
    data = tmp_path / "data"
    config = make_config(data, server={"admin_token": None})
    with TestClient(imgdex_app_factory(config)) as client:
        sha = upload(client, image_bytes("red"))["sha256"]
        client.post(f"/api/images/{sha}/descriptions", json={"method": "human", "content": "x"})
        library = client.app.state.runtime
        wait_for(lambda: library.indexes.save_dirty() >= 0 and any(data.glob("vector_index/*/*")))
        library.indexes.save_dirty()
        assert (data / "imgdex.db-wal").exists()
        files = [p for p in data.rglob("*") if p.is_file()]
        dirs = [data, *(p for p in data.rglob("*") if p.is_dir())]
        names = {p.name for p in files}
        assert {"imgdex.db", "imgdex.db-wal", "imgdex.db-shm", "admin_token"} <= names
        assert {"thumbnail.jpg", "image.png", "human.txt", "image.npy"} <= names
        assert any(p.parent.parent.name == "vector_index" for p in files)
        loose = [f"{p} {oct(_mode(p))}" for p in files if _mode(p) != 0o600]
        loose += [f"{p} {oct(_mode(p))}" for p in dirs if _mode(p) != 0o700]
        assert not loose, loose


def test_existing_data_directory_is_tightened_and_umask_is_configurable(
    tmp_path: Path, imgdex_app_factory: Callable[..., Litestar], lax_umask: None
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "imgdex.db").touch(mode=0o644)
    os.chmod(data, 0o755)
    os.chmod(data / "imgdex.db", 0o644)
    config = make_config(data, storage={"umask": "027"})
    with TestClient(imgdex_app_factory(config)) as client:
        upload(client, image_bytes("red"))
        assert _mode(data) == 0o750
        assert _mode(data / "imgdex.db") == 0o640
        thumbs = list(data.glob("storage/*/*/*/thumbnail.jpg"))
        assert thumbs and _mode(thumbs[0]) == 0o640
    with pytest.raises(ConfigError, match=r"storage\.umask"):
        make_config(data, storage={"umask": "999"})


# --- files served: never a page, HEAD, the file's name ------------------------------


def test_files_are_served_as_data_never_as_a_page(imgdex_client: Client) -> None:
    # A real JPEG with an HTML page appended: stored, and served so it can never run.
    polyglot = image_bytes("red", (32, 32), "JPEG") + b"<html><script>alert(1)</script></html>"
    sha = upload(imgdex_client, polyglot, "p.jpg")["sha256"]
    for part in ("file", "thumbnail"):
        r = imgdex_client.get(f"/api/images/{sha}/{part}")
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/jpeg"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"] == "default-src 'none'; sandbox"
        assert r.headers["cross-origin-resource-policy"] == "same-origin"
    assert imgdex_client.get(f"/api/images/{sha}/file").content == polyglot


def test_head_answers_the_same_headers_without_a_body(imgdex_client: Client) -> None:
    payload = image_bytes("green", (80, 60))
    sha = upload(imgdex_client, payload)["sha256"]
    for part in ("file", "thumbnail"):
        got = imgdex_client.get(f"/api/images/{sha}/{part}")
        head = imgdex_client.head(f"/api/images/{sha}/{part}")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(got.content))
        for name in ("content-type", "etag", "content-disposition", "content-security-policy"):
            assert head.headers[name] == got.headers[name]
    assert imgdex_client.head(f"/api/images/{'0' * 32}/file").status_code == 404


def test_content_disposition_and_image_info_carry_the_original_name(
    imgdex_client: Client,
) -> None:
    from imgdex.api.images import content_disposition

    sha = upload(imgdex_client, image_bytes("green", (80, 60)), "Été à Paris.png")["sha256"]
    assert imgdex_client.get(f"/api/images/{sha}").json()["filename"] == "Été à Paris.png"
    r = imgdex_client.get(f"/api/images/{sha}/file")
    assert r.headers["content-disposition"] == (
        "inline; filename=\"_t_ _ Paris.png\"; filename*=UTF-8''%C3%89t%C3%A9%20%C3%A0%20Paris.png"
    )
    r = imgdex_client.get(f"/api/images/{sha}/thumbnail")
    assert (
        "filename*=UTF-8''%C3%89t%C3%A9%20%C3%A0%20Paris-thumbnail.jpg"
        in (r.headers["content-disposition"])
    )
    # A browser's fake path or a client's directories are not part of the name.
    sha = upload(imgdex_client, image_bytes("red", (80, 60)), "C:\\fakepath\\cat.png")["sha256"]
    assert imgdex_client.get(f"/api/images/{sha}").json()["filename"] == "cat.png"
    assert content_disposition('a "b".jpg') == (
        "inline; filename=\"a _b_.jpg\"; filename*=UTF-8''a%20%22b%22.jpg"
    )


# --- a file that disappears under a read ---------------------------------------------


def test_a_read_holds_the_file_it_opened(imgdex_client: Client) -> None:
    """Hard delete between opening and sending: the reply still has every byte."""
    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(1).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    import io

    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    payload = buf.getvalue()
    assert len(payload) > 1 << 20  # large enough to be streamed from the descriptor
    sha = upload(imgdex_client, payload)["sha256"]
    library = imgdex_client.app.state.runtime
    opened = library.images._open_file(sha, "file")
    library.deletion.delete_now(sha, True)
    assert opened.file is not None
    try:
        assert opened.file.read() == payload
    finally:
        opened.close()
    r = imgdex_client.get(f"/api/images/{sha}/file")
    assert r.status_code == 404


def test_a_missing_file_is_a_404_without_a_path(imgdex_client: Client) -> None:
    sha = upload(imgdex_client, image_bytes("red"))["sha256"]
    library = imgdex_client.app.state.runtime
    library.blobs.thumbnail(sha).unlink()
    r = imgdex_client.get(f"/api/images/{sha}/thumbnail")
    assert (r.status_code, r.json()["error"]) == (404, "file_missing")
    assert str(library.config.data_path) not in r.text


# --- no path in any error body --------------------------------------------------------


def test_error_bodies_never_carry_a_server_path(imgdex_client: Client) -> None:
    app = imgdex_client.app
    data = str(app.state.runtime.config.data_path)

    @get("/boom/framework", include_in_schema=False)
    async def framework() -> None:
        raise ImproperlyConfiguredException(f"{data}/storage/ab/cd/x/thumbnail.jpg does not exist")

    @get("/boom/ours", include_in_schema=False)
    async def ours() -> None:
        raise ServiceUnavailable(f"model files unreadable in {data}/cache/x/model.onnx")

    @get("/boom/unexpected", include_in_schema=False)
    async def unexpected() -> None:
        open(f"{data}/no/such/file")  # noqa: ASYNC230, SIM115

    for handler in (framework, ours, unexpected):
        app.register(handler)
    for path, status in (("framework", 500), ("ours", 503), ("unexpected", 500)):
        r = imgdex_client.get(f"/boom/{path}")
        assert r.status_code == status, r.text
        assert data not in r.text and "/storage/" not in r.text, r.text
        assert set(r.json()) >= {"status_code", "error", "detail"}
    assert imgdex_client.get("/boom/framework").json()["detail"] == "internal server error"
