"""Albums and smart albums through HTTP on the real app."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from imgdex.testing import image_bytes

from .photos import photo

Client = TestClient[Any]


def upload(client: Client, data: bytes, name: str = "a.jpg") -> str:
    r = client.post("/api/images", files={"file": (name, data, "image/jpeg")})
    assert r.status_code == 201, r.text
    return str(r.json()["sha256"])


def members(client: Client, album: int, query: str = "") -> list[str]:
    r = client.get(f"/api/albums/{album}/images?{query}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"images", "total", "offset", "limit"}
    return [i["sha256"] for i in body["images"]]


def test_albums_by_hand(imgdex_client: Client) -> None:
    c = imgdex_client
    a = upload(c, photo(taken="2020:01:01 00:00:00", color=(200, 0, 0)))
    b = upload(c, photo(taken="2021:01:01 00:00:00", color=(0, 200, 0)))
    d = upload(c, photo(taken="2022:01:01 00:00:00", color=(0, 0, 200)))
    r = c.post("/api/albums", json={"name": "Holidays", "description": "sun"})
    assert r.status_code == 201, r.text
    album = r.json()
    assert album["name"] == "Holidays" and album["image_count"] == 0 and album["smart"] is None
    aid = album["id"]
    r = c.post(f"/api/albums/{aid}/images", json={"images": [a, b, a]})
    assert r.status_code == 200 and r.json()["changed"] == 2
    assert c.post(f"/api/albums/{aid}/images", json={"images": [a]}).json()["changed"] == 0
    assert members(c, aid, "sort=taken_at&order=asc") == [a, b]
    assert members(c, aid, "sort=taken_at&order=asc&offset=1&limit=1") == [b]
    info = c.get(f"/api/albums/{aid}").json()
    assert info["image_count"] == 2 and info["cover"] in (a, b)
    # The album is a filter of the image list too.
    listed = c.get(f"/api/images?album={aid}").json()
    assert {i["sha256"] for i in listed["images"]} == {a, b}

    r = c.patch(f"/api/albums/{aid}", json={"name": "Trips", "cover": d})
    assert r.status_code == 200 and (r.json()["name"], r.json()["cover"]) == ("Trips", d)
    assert c.get("/api/albums").json()["albums"][0]["name"] == "Trips"
    r = c.request("DELETE", f"/api/albums/{aid}/images", json={"images": [a]})
    assert r.status_code == 200 and r.json()["changed"] == 1
    assert members(c, aid) == [b]
    # A trashed image leaves the album's listing, and comes back with a restore.
    c.delete(f"/api/images/{b}")
    assert members(c, aid) == [] and c.get(f"/api/albums/{aid}").json()["image_count"] == 0
    c.post(f"/api/images/{b}/restore")
    assert members(c, aid) == [b]

    assert c.delete(f"/api/albums/{aid}").status_code == 200
    assert c.get(f"/api/albums/{aid}").status_code == 404
    assert c.get(f"/api/images/{b}").status_code == 200  # images stay


def test_smart_albums_are_evaluated_live(imgdex_client: Client) -> None:
    c = imgdex_client
    old = upload(c, photo(taken="2015:05:05 10:00:00", make="Canon", color=(220, 30, 30)))
    new = upload(c, photo(taken="2023:05:05 10:00:00", make="Canon", color=(30, 40, 220)))
    r = c.post(
        "/api/albums",
        json={"name": "recent canon", "smart": {"filters": {"camera": "canon",
              "taken_after": "2020-01-01"}}},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    smart = r.json()
    assert smart["smart"]["filters"]["camera"] == "canon" and smart["image_count"] == 1
    assert members(c, smart["id"]) == [new]
    later = upload(c, photo(taken="2024:01:01 00:00:00", make="Canon", color=(30, 200, 40)))
    assert set(members(c, smart["id"])) == {new, later}  # live: no re-save needed
    r = c.post(f"/api/albums/{smart['id']}/images", json={"images": [old]})
    assert r.status_code == 409

    # A query is searched (here the toy colour model's text tower), then filtered.
    r = c.post("/api/albums", json={"name": "red", "smart": {"query": "red"}})
    red = r.json()["id"]
    assert members(c, red)[0] == old
    r = c.post(
        "/api/albums",
        json={"name": "red canon, recent", "smart": {"query": "red",
              "filters": {"taken_after": "2020-01-01"}}},
    )  # fmt: skip
    assert old not in members(c, r.json()["id"])
    assert c.get(f"/api/albums/{red}").json()["image_count"] is None


def test_bad_album_requests(imgdex_client: Client) -> None:
    c = imgdex_client
    sha = upload(c, image_bytes("red"), "x.png")
    aid = c.post("/api/albums", json={"name": "x"}).json()["id"]
    bad_bodies = [
        {},
        {"name": ""},
        {"name": "x", "colour": 1},
        {"name": "x", "smart": {}},
        {"name": "x", "smart": {"filters": {"taken_after": "soon"}}},
        {"name": "x", "smart": {"filters": {"near": {"lat": 100, "lon": 0, "km": 1}}}},
        {"name": "x", "smart": {"filters": {"album": 1}}},
        {"name": "x", "cover": "nothex"},
    ]
    for body in bad_bodies:
        r = c.post("/api/albums", json=body)
        assert r.status_code == 400, (body, r.text)
        assert set(r.json()) >= {"status_code", "error", "detail"}
    assert c.post("/api/albums", json={"name": "x", "cover": "0" * 32}).status_code == 404
    for method, path in [
        ("GET", "/api/albums/999"),
        ("PATCH", "/api/albums/999"),
        ("DELETE", "/api/albums/999"),
        ("GET", "/api/albums/999/images"),
    ]:
        r = c.request(method, path, json={} if method == "PATCH" else None)
        assert r.status_code == 404, (method, path, r.text)
    assert c.post("/api/albums/999/images", json={"images": [sha]}).status_code == 404
    r = c.post(f"/api/albums/{aid}/images", json={"images": [sha, "f" * 32]})
    assert r.status_code == 404 and members(c, aid) == []  # all or nothing
    r = c.post(f"/api/albums/{aid}/images", json={"images": ["a" * 32] * 1001})
    assert r.status_code == 400 and "1000" in r.json()["detail"]
    assert c.post(f"/api/albums/{aid}/images", json={"images": []}).status_code == 400
    assert c.post(f"/api/albums/{aid}/images", json={"images": ["zz"]}).status_code == 400
    assert c.get(f"/api/albums/{aid}/images?sort=colour").status_code == 400
    assert c.get("/api/albums/abc").status_code in (400, 404)
    r = c.get("/api/images?album=999")
    assert r.status_code == 404 and r.json()["error"] == "album_not_found"


def test_the_album_filter_matches_what_a_smart_album_shows(imgdex_client: Client) -> None:
    c = imgdex_client
    canon = [
        upload(c, photo(taken="2021:01:01 00:00:00", make="Canon", color=(220, 30, 30))),
        upload(c, photo(taken="2022:01:01 00:00:00", make="Canon", color=(200, 60, 30))),
    ]
    nikon = upload(c, photo(taken="2022:06:01 00:00:00", make="NIKON", color=(210, 40, 40)))
    r = c.post("/api/albums", json={"name": "canon", "smart": {"filters": {"camera": "canon"}}})
    aid = r.json()["id"]
    assert set(members(c, aid)) == set(canon)
    # The image list, filtered by the album, shows what the album shows.
    listed = c.get(f"/api/images?album={aid}")
    assert listed.status_code == 200, listed.text
    assert {i["sha256"] for i in listed.json()["images"]} == set(canon)
    assert listed.json()["total"] == 2
    both = c.get(f"/api/images?album={aid}&taken_after=2021-06-01").json()["images"]
    assert [i["sha256"] for i in both] == [canon[1]]
    # So does a search with the album among its filters.
    body = {"query": "red", "top_k": 10, "filters": {"album": aid}}
    r = c.post("/api/search/text", json=body)
    assert r.status_code == 200, r.text
    assert {x["sha256"] for x in r.json()["results"]} == set(canon)
    assert nikon not in {x["sha256"] for x in r.json()["results"]}
    # A smart album with a query is a ranked search: filtering by it is a clear 400.
    q = c.post("/api/albums", json={"name": "red", "smart": {"query": "red"}}).json()["id"]
    for r in (
        c.get(f"/api/images?album={q}"),
        c.post("/api/search/text", json={"query": "red", "filters": {"album": q}}),
    ):
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "bad_filter" and "query" in r.json()["detail"]
