"""Bad input: every case gets a clear 4xx JSON error and leaves nothing half-written."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from PIL import Image

from imgdex.testing import image_bytes, make_config

from .conftest import ADMIN

Client = TestClient[Any]


def upload(client: Client, data: bytes, name: str = "f.bin") -> Any:
    return client.post("/api/images", files={"file": (name, data, "application/octet-stream")})


def assert_error(r: Any, status: int, code: str | None = None, words: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status_code"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    if code is not None:
        assert body["error"] == code
    if words is not None:
        assert words in body["detail"]


def assert_nothing_stored(client: Client) -> None:
    data = Path(client.app.state.runtime.config.data_dir)
    storage = data / "storage"
    assert [p for p in storage.iterdir() if not p.name.startswith(".")] == []
    assert list((storage / ".tmp").iterdir()) == []
    assert client.get("/api/images", params={"include_deleted": True}).json()["total"] == 0
    assert client.get("/health").json()["status"] == "ok"


def truncated_jpeg() -> bytes:
    im = Image.effect_noise((400, 300), 60).convert("RGB")
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    return data[: len(data) // 2]


def noise_png() -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((300, 200), 60).save(buf, "PNG")
    return buf.getvalue()


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def bomb_png() -> bytes:
    # 20000 x 20000 pixels (400 M, over the default limit), a few KB on disk.
    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, "PNG", optimize=True)
    return buf.getvalue()


BAD_UPLOADS: list[tuple[str, Callable[[], bytes], int, str]] = [
    ("text file", lambda: b"hello, I am not an image", 415, "not_an_image"),
    ("html", lambda: b"<html><body>hi</body></html>", 415, "not_an_image"),
    ("empty file", lambda: b"", 400, "empty_file"),
    ("truncated jpeg", truncated_jpeg, 422, "corrupt_image"),
    ("truncated png", lambda: truncated(noise_png()), 422, "corrupt_image"),
    ("png signature only", lambda: image_bytes("red")[:16], 422, "corrupt_image"),
    ("decompression bomb", bomb_png, 422, "image_too_large"),
]


@pytest.mark.parametrize(
    ("label", "make", "status", "code"), BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS]
)
def test_bad_uploads(
    imgdex_client: Client, label: str, make: Callable[[], bytes], status: int, code: str
) -> None:
    assert_error(upload(imgdex_client, make()), status, code)
    assert_nothing_stored(imgdex_client)


def test_upload_without_file_part(imgdex_client: Client) -> None:
    r = imgdex_client.post("/api/images", files={"source": (None, "x")})
    assert_error(r, 400, words="file")
    r = imgdex_client.post("/api/images", files={"file": (None, "just text, no file")})
    assert_error(r, 400, words="file")
    r = imgdex_client.post("/api/images", data={"source": "x"})
    assert_error(r, 400, words="multipart")
    r = imgdex_client.post("/api/images", json={"file": "abc"})
    assert 400 <= r.status_code < 500
    assert "detail" in r.json()
    assert_nothing_stored(imgdex_client)


def test_upload_over_size_limit_is_413(
    tmp_path: Path, imgdex_app_factory: Callable[..., Any]
) -> None:
    config = make_config(tmp_path / "small", server={"max_upload_bytes": 50_000})
    with TestClient(imgdex_app_factory(config)) as client:
        big = image_bytes("red", (800, 800), "BMP")
        assert len(big) > 50_000
        assert_error(upload(client, big), 413, "payload_too_large", "max_upload_bytes")
        assert_nothing_stored(client)
        assert upload(client, image_bytes("red")).status_code == 201


@pytest.mark.parametrize(
    "bad_id",
    [
        "zz",
        "62A8E8B2F2C090F754C0D1099FEE3574",
        "62a8e8b2f2c090f754c0d1099fee357",
        "..%2F..%2Fetc%2Fpasswd",
        "62a8e8b2f2c090f754c0d1099fee35744",
        "%2e%2e",
    ],
)
def test_malformed_ids(imgdex_client: Client, bad_id: str) -> None:
    for method, path in [
        ("GET", f"/api/images/{bad_id}"),
        ("GET", f"/api/images/{bad_id}/file"),
        ("GET", f"/api/images/{bad_id}/thumbnail"),
        ("DELETE", f"/api/images/{bad_id}"),
        ("GET", f"/api/images/{bad_id}/descriptions"),
    ]:
        r = imgdex_client.request(method, path)
        assert r.status_code in (400, 404), (method, path, r.status_code)
        assert r.json()["detail"]
        if r.status_code == 400:
            assert r.json()["error"] == "invalid_id"
    r = imgdex_client.post(
        f"/api/images/{bad_id}/descriptions", json={"method": "human", "content": "x"}
    )
    assert r.status_code in (400, 404)


def test_path_traversal_does_not_escape(imgdex_client: Client) -> None:
    r = imgdex_client.get("/api/images/../../../etc/passwd")
    assert r.status_code in (400, 404)
    assert "root:" not in r.text


def test_unknown_image(imgdex_client: Client) -> None:
    missing = "0" * 32
    for method, path in [
        ("GET", f"/api/images/{missing}"),
        ("GET", f"/api/images/{missing}/file"),
        ("GET", f"/api/images/{missing}/thumbnail"),
        ("DELETE", f"/api/images/{missing}"),
        ("GET", f"/api/images/{missing}/descriptions"),
    ]:
        assert_error(imgdex_client.request(method, path), 404, "image_not_found")
    r = imgdex_client.post(
        f"/api/images/{missing}/descriptions", json={"method": "human", "content": "x"}
    )
    assert_error(r, 404, "image_not_found")


def test_bad_descriptions(imgdex_client: Client) -> None:
    sha = upload(imgdex_client, image_bytes("red")).json()["sha256"]
    url = f"/api/images/{sha}/descriptions"
    assert_error(
        imgdex_client.post(url, json={"method": "human"}), 400, "invalid_request", "content"
    )
    assert_error(imgdex_client.post(url, json={"content": "x"}), 400, "invalid_request", "method")
    assert_error(imgdex_client.post(url, json={"method": "../etc", "content": "x"}), 400)
    assert_error(imgdex_client.post(url, json={"method": "human", "content": ""}), 400)
    assert_error(
        imgdex_client.post(url, json={"method": "human", "content": "   "}),
        400,
        "empty_description",
    )
    assert_error(
        imgdex_client.post(url, json={"method": "image", "content": "x"}), 400, "reserved_method"
    )
    assert_error(imgdex_client.post(url, json={"method": "human", "content": "x", "extra": 1}), 400)
    assert_error(imgdex_client.post(url, json=["not", "an", "object"]), 400)
    r = imgdex_client.post(
        url,
        content=b'{"method": "human", "content": ',
        headers={"content-type": "application/json"},
    )
    assert_error(r, 400)
    assert imgdex_client.get(url).json() == []


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"query": "x", "top_k": 0}, 400, "top_k"),
        ({"query": "x", "top_k": 5000}, 400, "top_k"),
        ({"query": "x", "top_k": "ten"}, 400, "top_k"),
        ({"query": "x", "offset": -1}, 400, "offset"),
        ({"query": ""}, 400, "query"),
        ({"top_k": 3}, 400, "query"),
        ({"query": "x", "fusion": "average"}, 400, "fusion"),
        ({"query": "x", "index": "no_such_index_v1"}, 404, "no_such_index_v1"),
        ({"query": "x", "index": ["toy_words_v1", "nope_v9"]}, 404, "nope_v9"),
        ({"query": "x", "index": []}, 400, "index"),
        ({"query": "x", "methods": ["../x"]}, 400, "methods"),
        ({"query": "x", "unknown_option": 1}, 400, "unknown_option"),
    ],
)
def test_bad_text_searches(
    imgdex_client: Client, body: dict[str, Any], status: int, words: str
) -> None:
    assert_error(imgdex_client.post("/api/search/text", json=body), status, words=words)


def test_malformed_json(imgdex_client: Client) -> None:
    r = imgdex_client.post(
        "/api/search/text", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(r, 400)


def test_bad_image_searches(imgdex_client: Client) -> None:
    r = imgdex_client.post(
        "/api/search/image", files={"file": ("q.txt", b"not an image", "text/plain")}
    )
    assert_error(r, 415, "not_an_image")
    r = imgdex_client.post(
        "/api/search/image",
        files={"file": ("q.png", image_bytes("red"), "image/png")},
        data={"top_k": "abc"},
    )
    assert_error(r, 400, words="top_k")
    r = imgdex_client.post(
        "/api/search/image",
        files={"file": ("q.png", image_bytes("red"), "image/png")},
        data={"index": "toy_words_v1"},
    )
    assert_error(r, 400, "index_cannot_answer")
    assert_error(imgdex_client.post("/api/search/image", data={"top_k": "3"}), 400)
    r = imgdex_client.post("/api/search/image", files={"file": (None, "text, not a file")})
    assert_error(r, 400, "missing_file", "'file'")
    body = raw_form([("file", "q.png", image_bytes("red")), ("top_k", None, b"2")])
    headers = {"Content-Type": "multipart/form-data"}  # no boundary
    r = imgdex_client.post("/api/search/image", content=body, headers=headers)
    assert_error(r, 400, "not_multipart")
    r = imgdex_client.post(
        "/api/search/image",
        content=body,
        headers={"Content-Type": "multipart/form-data; boundary=b0und4ry"},
    )
    assert r.status_code == 200 and len(r.json()["results"]) <= 2


@pytest.mark.parametrize(
    ("image", "status", "code"),
    [
        ("!!!not base64!!!", 400, "bad_base64"),
        ("aGVsbG8gd29ybGQ=", 415, "not_an_image"),
        ("data:image/png,abc", 400, "bad_base64"),
        ("", 400, None),
    ],
)
def test_bad_base64(imgdex_client: Client, image: str, status: int, code: str | None) -> None:
    assert_error(
        imgdex_client.post("/api/search/image/base64", json={"image": image}), status, code
    )


def test_unknown_route_and_method(imgdex_client: Client) -> None:
    assert_error(imgdex_client.get("/api/nothing-here"), 404)
    assert_error(imgdex_client.put("/api/images"), 405)


def test_admin_requires_token(imgdex_client: Client) -> None:
    for headers in ({}, {"Authorization": "Basic dGVzdA=="}, {"Authorization": "Bearer "}):
        assert_error(imgdex_client.get("/api/admin/plugins", headers=headers), 401, "unauthorized")
    wrong = {"Authorization": "Bearer wrong"}
    assert_error(imgdex_client.get("/api/admin/plugins", headers=wrong), 401, "unauthorized")
    assert imgdex_client.get("/api/admin/plugins", headers=ADMIN).status_code == 200
    assert_error(
        imgdex_client.post("/api/admin/plugins/nope/enable", headers=ADMIN), 404, "unknown_plugin"
    )


def test_bad_list_parameters(imgdex_client: Client) -> None:
    for params in (
        {"offset": "99999999999999999999999"},
        {"offset": "-1"},
        {"limit": "0"},
        {"limit": "100000"},
        {"status": "done"},
        {"limit": "ten"},
    ):
        r = imgdex_client.get("/api/images", params=params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["detail"]


# --- the upload form, read straight into memory (imgdex.api.uploads) ---------------------


def raw_form(parts: list[tuple[str, str | None, bytes]], boundary: str = "b0und4ry") -> bytes:
    """A multipart body by hand: (name, filename or None, content) per part."""
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        out += content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def post_form(client: Client, body: bytes, content_type: str | None = None) -> Any:
    headers = {"Content-Type": content_type or "multipart/form-data; boundary=b0und4ry"}
    return client.post("/api/images", content=body, headers=headers)


@pytest.mark.parametrize(
    ("label", "body", "content_type", "code", "words"),
    [
        (
            "two file parts",
            raw_form([("file", "a.png", image_bytes("red")), ("file", "b.png", image_bytes())]),
            None,
            "bad_multipart",
            "one 'file' part",
        ),
        (
            "no closing boundary",
            raw_form([("file", "a.png", image_bytes("red"))])[:-12],
            None,
            "bad_multipart",
            "multipart",
        ),
        ("empty body", b"", None, "bad_multipart", "multipart"),
        (
            "no boundary parameter",
            raw_form([("file", "a.png", image_bytes("red"))]),
            "multipart/form-data",
            "not_multipart",
            "multipart/form-data",
        ),
        (
            "source too long",
            raw_form([("source", None, b"x" * 5000), ("file", "a.png", image_bytes("red"))]),
            None,
            "bad_multipart",
            "'source'",
        ),
        (
            "source not UTF-8",
            raw_form([("source", None, b"\xff\xfe"), ("file", "a.png", image_bytes("red"))]),
            None,
            "bad_multipart",
            "'source'",
        ),
        ("only text parts", raw_form([("source", None, b"album")]), None, "missing_file", "'file'"),
        (
            "too many parts",
            raw_form([("x", None, b"1")] * 40 + [("file", "a.png", image_bytes("red"))]),
            None,
            "bad_multipart",
            "parts",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else "",
)
def test_malformed_upload_forms(
    imgdex_client: Client,
    label: str,
    body: bytes,
    content_type: str | None,
    code: str,
    words: str,
) -> None:
    assert_error(post_form(imgdex_client, body, content_type), 400, code, words)
    assert_nothing_stored(imgdex_client)


def test_a_large_upload_arrives_whole_with_its_fields(imgdex_client: Client) -> None:
    """A file well past the 1 MiB where Litestar spooled to disk is stored byte for byte;
    unknown fields are ignored, ``source`` is kept. (The test client delivers the body in
    one message; tests/unit/test_uploads.py feeds it in small chunks.)"""
    big = image_bytes("green", (1200, 900), "BMP")
    assert len(big) > 3 * 2**20
    parts = [("note", None, b"ignored"), ("source", None, b" trip 2026 "), ("file", "b.bmp", big)]
    body = raw_form(parts)
    r = post_form(imgdex_client, body)
    assert r.status_code == 201, r.text
    sha = r.json()["sha256"]
    assert r.json()["file_size"] == len(big)
    assert imgdex_client.get(f"/api/images/{sha}/file").content == big
    assert imgdex_client.get(f"/api/images/{sha}").json()["source"] == "trip 2026"


def test_the_upload_form_is_documented(imgdex_client: Client) -> None:
    spec = imgdex_client.get("/docs/openapi.json").json()
    body = spec["paths"]["/api/images"]["post"]["requestBody"]
    schema = body["content"]["multipart/form-data"]["schema"]
    assert body["required"] is True and schema["required"] == ["file"]
    assert schema["properties"]["file"] == {
        "type": "string",
        "format": "binary",
        "description": "The image file",
    }
    assert schema["properties"]["source"]["type"] == "string"
    body = spec["paths"]["/api/search/image"]["post"]["requestBody"]
    schema = body["content"]["multipart/form-data"]["schema"]
    assert schema["required"] == ["file"]
    options = {"file", "top_k", "offset", "index", "methods", "min_score", "fusion", "weights"}
    filters = set(spec["components"]["schemas"]["ImageFilters"]["properties"])
    assert options | {"sort"} | filters == set(schema["properties"])
