"""The organising parts of the pages, in process (issue 16): what the HTML says."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from imgdex.testing import image_bytes

Client = TestClient[Any]


def _upload(c: Client, pattern: int) -> str:
    r = c.post("/api/images", files={"file": ("x.png", image_bytes("red", pattern=pattern))})
    assert r.status_code == 201, r.text
    return str(r.json()["sha256"])


def test_image_page_marks_a_models_tags_as_ai(imgdex_client: Client) -> None:
    c = imgdex_client
    sha = _upload(c, 401)
    assert c.post(f"/api/images/{sha}/tags", json={"tags": ["Sunset"]}).status_code == 200
    catalog = c.app.state.runtime.catalog
    with catalog.transaction() as db:
        catalog.tags.add_tags(db, sha, ["beach"], "toy_caption", 0.8)
    html = c.get(f"/images/{sha}").text
    beach = html[html.index('data-tag="beach"') :].split("</li>", 1)[0]
    sunset = html[html.index('data-tag="sunset"') :].split("</li>", 1)[0]
    assert "AI · toy_caption" in beach and "80% sure" in beach
    assert "AI" not in sunset
    assert 'aria-label="Remove the tag beach"' in html


def test_a_trashed_image_has_a_page_that_offers_restore(imgdex_client: Client) -> None:
    c = imgdex_client
    sha = _upload(c, 402)
    assert c.delete(f"/api/images/{sha}").status_code == 200
    r = c.get(f"/images/{sha}")
    assert r.status_code == 200
    assert "This image is in the trash" in r.text and 'id="restore-image"' in r.text
    assert 'id="delete-image"' not in r.text
    # The trash lists it; the gallery does not.
    assert f'data-trashed="{sha}"' in c.get("/trash").text
    assert f"/images/{sha}" not in c.get("/").text


def test_gallery_filters_map_to_the_api_and_bad_ones_say_why(imgdex_client: Client) -> None:
    c = imgdex_client
    tagged, other = _upload(c, 403), _upload(c, 404)
    c.post(f"/api/images/{tagged}/tags", json={"tags": ["dog"]})
    c.patch(f"/api/images/{other}", json={"favorite": True})
    assert f"/images/{tagged}" in (page := c.get("/?tag=dog").text)
    assert f"/images/{other}" not in page
    page = c.get("/?favorite=true&sort=taken&order=oldest").text
    assert f"/images/{other}" in page and f"/images/{tagged}" not in page
    r = c.get("/?taken_after=not-a-date")
    assert r.status_code == 400
    assert "taken_after" in r.text and 'role="alert"' in r.text
    # An unknown album is the API's 404 detail, on the page.
    r = c.get("/?album=999999")
    assert r.status_code == 400 and "album" in r.text


def test_album_pages(imgdex_client: Client) -> None:
    c = imgdex_client
    sha = _upload(c, 405)
    album = c.post("/api/albums", json={"name": "Dogs <b>"}).json()["id"]
    c.post(f"/api/albums/{album}/images", json={"images": [sha]})
    listing = c.get("/albums").text
    assert f'href="/albums/{album}"' in listing and "Dogs &lt;b&gt;" in listing
    assert f"/api/images/{sha}/thumbnail" in listing  # the cover
    page = c.get(f"/albums/{album}").text
    assert f'href="/images/{sha}"' in page and "1 image" in page
    assert c.get("/albums/999999").status_code == 404
    assert c.get("/duplicates").status_code == 200


def test_album_share_panel_lists_live_links_without_tokens(imgdex_client: Client) -> None:
    c = imgdex_client
    album = c.post("/api/albums", json={"name": "Shared"}).json()["id"]
    assert 'id="share-create"' in c.get(f"/albums/{album}").text
    assert "No live share links" in c.get(f"/albums/{album}/shares/panel").text
    made = c.post(f"/api/albums/{album}/shares", json={"password": "a-Long-pass-phrase-1"}).json()
    html = c.get(f"/albums/{album}/shares/panel").text
    assert f'data-revoke-share="{made["id"]}"' in html and made["token"] not in html
    assert "<td>yes</td>" in html  # has a password
    assert c.delete(f"/api/albums/{album}/shares/{made['id']}").status_code == 200
    assert "No live share links" in c.get(f"/albums/{album}/shares/panel").text
    r = c.get("/albums/999999/shares/panel")
    assert r.status_code == 404 and r.json()["error"]


def test_the_gallery_album_filter_offers_only_albums_a_filter_can_match(
    imgdex_client: Client,
) -> None:
    c = imgdex_client
    sha = _upload(c, 405)
    c.post(f"/api/images/{sha}/tags", json={"tags": ["cat"]})
    ids = {}
    for name, smart in (
        ("By hand", None),
        ("Cats", {"filters": {"tags": ["cat"]}}),
        ("Red things", {"query": "red"}),
    ):
        r = c.post("/api/albums", json={"name": name, **({"smart": smart} if smart else {})})
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
    html = c.get("/").text
    select = html[html.index('<select id="album"') :].split("</select>", 1)[0]
    assert f'value="{ids["By hand"]}"' in select and f'value="{ids["Cats"]}"' in select
    # A query album is a ranked search: the API refuses it as a filter, so no option.
    assert f'value="{ids["Red things"]}"' not in select
    assert f"/images/{sha}" in c.get(f"/?album={ids['Cats']}").text
