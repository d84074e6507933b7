"""``GET /api/images/{sha256}/similar`` through the real app."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from imgdex.testing import image_bytes

Client = TestClient[Any]


def upload(client: Client, color: str, pattern: int) -> str:
    r = client.post(
        "/api/images", files={"file": ("a.png", image_bytes(color, pattern=pattern), "image/png")}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["sha256"])


def test_similar_images_come_from_stored_vectors(imgdex_client: Client) -> None:
    reds = [upload(imgdex_client, "red", i) for i in (1, 2, 3)]
    blues = [upload(imgdex_client, "blue", i) for i in (4, 5)]
    r = imgdex_client.get(f"/api/images/{reds[0]}/similar", params={"top_k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    ids = [x["sha256"] for x in body["results"]]
    assert reds[0] not in ids, "the image itself is left out"
    assert len(ids) == 3 and set(ids[:2]) == set(reds[1:])
    assert ids[2] in blues
    assert body["top_k"] == 3 and body["query"] is None
    first = body["results"][0]
    assert first["index"] == "toy_color_v1" and first["matched_by"] == "image"
    assert {"width", "height", "matches", "score"} <= set(first)
    r = imgdex_client.get(f"/api/images/{reds[0]}/similar", params={"index": "toy_color_v1"})
    assert r.status_code == 200 and len(r.json()["results"]) == 4


def test_the_query_is_the_stored_vector(imgdex_client: Client) -> None:
    # Swap the red image's stored vector for a blue one's: were the image embedded
    # again, reds would come first; the stored vector makes blues come first.
    red, other_red = upload(imgdex_client, "red", 1), upload(imgdex_client, "red", 2)
    blue = upload(imgdex_client, "blue", 3)
    storage = imgdex_client.app.state.runtime.blobs
    swapped = storage.vector_path(blue, "toy_color_v1", "image").read_bytes()
    storage.vector_path(red, "toy_color_v1", "image").write_bytes(swapped)
    r = imgdex_client.get(f"/api/images/{red}/similar", params={"top_k": 2})
    assert r.status_code == 200, r.text
    assert [x["sha256"] for x in r.json()["results"]] == [blue, other_red]


def test_similar_rejects_what_it_cannot_answer(imgdex_client: Client) -> None:
    sha = upload(imgdex_client, "red", 1)
    cases = [
        (f"/api/images/{'0' * 32}/similar", {}, 404, "image_not_found"),
        ("/api/images/nothex/similar", {}, 400, "invalid_id"),
        (f"/api/images/{sha}/similar", {"index": "nope_v1"}, 404, "unknown_index"),
        (f"/api/images/{sha}/similar", {"index": "toy_words_v1"}, 400, "index_cannot_answer"),
        (f"/api/images/{sha}/similar", {"index": "keyword"}, 400, "index_cannot_answer"),
        (f"/api/images/{sha}/similar", {"top_k": 0}, 400, None),
        (f"/api/images/{sha}/similar", {"top_k": 5000}, 400, None),
    ]
    for path, params, status, error in cases:
        r = imgdex_client.get(path, params=params)
        assert r.status_code == status, (path, params, r.text)
        if error:
            assert r.json()["error"] == error, r.text
    assert imgdex_client.delete(f"/api/images/{sha}").status_code == 200
    r = imgdex_client.get(f"/api/images/{sha}/similar")
    assert r.status_code == 404, r.text


def test_an_image_not_embedded_yet_is_409(imgdex_client: Client) -> None:
    sha = upload(imgdex_client, "red", 1)
    catalog = imgdex_client.app.state.runtime.catalog
    with catalog.transaction() as db:  # as if its embedding job had not run yet
        entries = catalog.vector_entries_of(db, sha, "image")
        catalog.delete_vector_entries(db, [e.id for e in entries])
    r = imgdex_client.get(f"/api/images/{sha}/similar")
    assert r.status_code == 409 and r.json()["error"] == "not_embedded", r.text
