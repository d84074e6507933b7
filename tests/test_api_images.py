"""/api/images: upload, duplicates, listing, files, descriptions and deletion."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from litestar.testing import TestClient
from PIL import Image

from imgdex.testing import image_bytes

from .conftest import ADMIN

Client = TestClient[Any]


def upload(client: Client, data: bytes, name: str = "a.png", **form: str) -> Any:
    return client.post(
        "/api/images", files={"file": (name, data, "application/octet-stream")}, data=form
    )


def data_dir(client: Client) -> Path:
    return Path(client.app.state.runtime.config.data_dir)


def test_upload_stores_once_with_seed_fields(imgdex_client: Client) -> None:
    payload = image_bytes("red", (256, 256))
    r = upload(imgdex_client, payload, source="my_album")
    assert r.status_code == 201
    body = r.json()
    import hashlib

    full = hashlib.sha256(payload).hexdigest()
    assert body["sha256"] == full[:32]
    assert (body["width"], body["height"], body["format"]) == (256, 256, "PNG")
    assert body["file_size"] == len(payload)
    assert body["status"] == "ready"
    assert body["duplicate"] is False
    assert [e["index"] for e in body["embeddings"]] == ["toy_color_v1"]

    # Layout storage/xx/yy/rest/ with the original bytes and a thumbnail.
    sha = body["sha256"]
    folder = data_dir(imgdex_client) / "storage" / sha[:2] / sha[2:4] / sha[4:]
    assert (folder / "image.png").read_bytes() == payload
    assert (folder / "thumbnail.jpg").is_file()
    assert (folder / "embedding" / "toy_color_v1" / "image.npy").is_file()

    again = upload(imgdex_client, payload)
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["sha256"] == sha
    listing = imgdex_client.get("/api/images").json()
    assert listing["total"] == 1


def test_get_list_and_filters(imgdex_client: Client) -> None:
    ids = []
    for i, (color, source) in enumerate([("red", "a"), ("blue", "a"), ("green", "b")]):
        ids.append(
            upload(imgdex_client, image_bytes(color, pattern=i), source=source).json()["sha256"]
        )
    info = imgdex_client.get(f"/api/images/{ids[0]}").json()
    assert info["source"] == "a"
    assert info["is_deleted"] == 0
    assert info["descriptions"] == []
    assert info["indexes"] == ["toy_color_v1"]
    assert info["created_at"]

    page = imgdex_client.get("/api/images", params={"offset": 0, "limit": 2}).json()
    assert (page["total"], page["offset"], page["limit"], len(page["images"])) == (3, 0, 2, 2)
    rest = imgdex_client.get("/api/images", params={"offset": 2, "limit": 2}).json()
    assert len(rest["images"]) == 1
    assert {i["sha256"] for i in page["images"] + rest["images"]} == set(ids)
    only_a = imgdex_client.get("/api/images", params={"source": "a"}).json()
    assert only_a["total"] == 2
    ready = imgdex_client.get("/api/images", params={"status": "ready"}).json()
    assert ready["total"] == 3
    assert imgdex_client.get("/api/images", params={"status": "pending"}).json()["total"] == 0


def test_file_and_thumbnail_headers(imgdex_client: Client) -> None:
    payload = image_bytes("blue", (640, 320), "JPEG")
    sha = upload(imgdex_client, payload, "x.jpg").json()["sha256"]
    r = imgdex_client.get(f"/api/images/{sha}/file")
    assert r.status_code == 200
    assert r.content == payload
    assert r.headers["content-type"] == "image/jpeg"
    assert "immutable" in r.headers["cache-control"]
    etag = r.headers["etag"]
    assert sha in etag
    assert (
        imgdex_client.get(f"/api/images/{sha}/file", headers={"If-None-Match": etag}).status_code
        == 304
    )

    thumb = imgdex_client.get(f"/api/images/{sha}/thumbnail")
    assert thumb.headers["content-type"] == "image/jpeg"
    im = Image.open(io.BytesIO(thumb.content))
    assert im.format == "JPEG"
    assert im.size == (256, 128)


def test_exif_orientation_applied_to_thumbnail_and_size(imgdex_client: Client) -> None:
    payload = image_bytes("red", (64, 48), "JPEG", exif_orientation=6)
    body = upload(imgdex_client, payload, "rot.jpg").json()
    assert (body["width"], body["height"]) == (48, 64)
    thumb = imgdex_client.get(f"/api/images/{body['sha256']}/thumbnail")
    assert Image.open(io.BytesIO(thumb.content)).size == (48, 64)


def test_descriptions_are_embedded_replaced_and_deleted(imgdex_client: Client) -> None:
    sha = upload(imgdex_client, image_bytes("red")).json()["sha256"]
    r = imgdex_client.post(
        f"/api/images/{sha}/descriptions",
        json={"method": "human", "content": "a game engine splash screen"},
    )
    assert r.status_code == 201
    body = r.json()
    assert body["method"] == "human"
    assert body["embedding_count"] == 1
    assert body["embeddings"] == [
        {"model": "imgdex-toy-words", "index": "toy_words_v1", "dimension": 256}
    ]
    folder = data_dir(imgdex_client) / "storage" / sha[:2] / sha[2:4] / sha[4:]
    assert (folder / "description" / "human.txt").read_text() == "a game engine splash screen"

    imgdex_client.post(
        f"/api/images/{sha}/descriptions", json={"method": "vlm1", "content": "an orange cat"}
    )
    listed = imgdex_client.get(f"/api/images/{sha}/descriptions").json()
    assert {d["method"]: d["content"] for d in listed} == {
        "human": "a game engine splash screen",
        "vlm1": "an orange cat",
    }
    assert all(d["has_embedding"] == 1 for d in listed)

    # Replacing the text replaces the vector: the old words no longer match.
    imgdex_client.post(
        f"/api/images/{sha}/descriptions", json={"method": "vlm1", "content": "a sleeping dog"}
    )
    hits = imgdex_client.post(
        "/api/search/text",
        json={"query": "orange cat", "index": "toy_words_v1", "methods": ["vlm1"]},
    ).json()["results"]
    assert all(h["matched_text"] != "an orange cat" for h in hits)
    stats = imgdex_client.get("/api/stats").json()
    assert stats["indexes"]["toy_words_v1"] == 2

    r = imgdex_client.delete(f"/api/images/{sha}/descriptions/vlm1")
    assert r.status_code == 200
    assert [d["method"] for d in imgdex_client.get(f"/api/images/{sha}/descriptions").json()] == [
        "human"
    ]
    assert not (folder / "description" / "vlm1.txt").exists()
    assert imgdex_client.delete(f"/api/images/{sha}/descriptions/vlm1").status_code == 404


def test_soft_delete_hides_and_reupload_restores(imgdex_client: Client) -> None:
    payload = image_bytes("green")
    sha = upload(imgdex_client, payload).json()["sha256"]
    imgdex_client.post(
        f"/api/images/{sha}/descriptions", json={"method": "human", "content": "green meadow"}
    )
    r = imgdex_client.delete(f"/api/images/{sha}")
    assert r.status_code == 200
    assert r.json()["hard"] is False
    assert imgdex_client.get(f"/api/images/{sha}").json()["is_deleted"] == 1
    assert imgdex_client.get("/api/images").json()["total"] == 0
    assert imgdex_client.get("/api/images", params={"include_deleted": True}).json()["total"] == 1
    assert imgdex_client.get(f"/api/images/{sha}/file").status_code == 404
    found = imgdex_client.post("/api/search/text", json={"query": "green meadow"}).json()["results"]
    assert sha not in [h["sha256"] for h in found]

    again = upload(imgdex_client, payload)
    assert again.json()["restored"] is True
    assert imgdex_client.get(f"/api/images/{sha}").json()["is_deleted"] == 0
    found = imgdex_client.post("/api/search/text", json={"query": "green meadow"}).json()["results"]
    assert found[0]["sha256"] == sha


def test_hard_delete_removes_files_rows_and_vectors(imgdex_client: Client) -> None:
    sha = upload(imgdex_client, image_bytes("purple")).json()["sha256"]
    other = upload(imgdex_client, image_bytes("yellow")).json()["sha256"]
    imgdex_client.post(
        f"/api/images/{sha}/descriptions", json={"method": "human", "content": "purple rain"}
    )
    folder = data_dir(imgdex_client) / "storage" / sha[:2] / sha[2:4] / sha[4:]
    assert folder.is_dir()
    r = imgdex_client.delete(f"/api/images/{sha}", params={"hard": "true"}, headers=ADMIN)
    assert r.json()["hard"] is True
    assert not folder.exists()
    assert imgdex_client.get(f"/api/images/{sha}").status_code == 404
    stats = imgdex_client.get("/api/stats").json()
    assert stats["indexes"] == {"toy_color_v1": 1}
    results = imgdex_client.post(
        "/api/search/image", files={"file": ("q.png", image_bytes("purple"), "image/png")}
    ).json()["results"]
    assert [h["sha256"] for h in results] == [other]
    # The same bytes can come back as a new image afterwards.
    assert upload(imgdex_client, image_bytes("purple")).status_code == 201


def test_hash_collision_is_rejected_and_logged(imgdex_client: Client, caplog: Any) -> None:
    payload = image_bytes("red")
    sha = upload(imgdex_client, payload).json()["sha256"]
    catalog = imgdex_client.app.state.runtime.catalog
    with catalog.transaction() as db:
        db.execute("UPDATE images SET sha256_full = ? WHERE sha256 = ?", (sha + "0" * 32, sha))
    r = upload(imgdex_client, payload)
    assert r.status_code == 409
    assert r.json()["error"] == "hash_collision"
    assert any("collision" in rec.getMessage() for rec in caplog.records)
