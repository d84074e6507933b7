"""Album share links from the album page (issue 16), in ``auth.mode: users``: an editor
makes a link in a real headless Chromium, a logged-out browser opens it, the editor
revokes it; a viewer sees no share controls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from imgdex.testing import image_bytes

from ..serverproc import ServerProcess
from ..test_auth import PASSWORDS
from .conftest import PHONE, Recorder, boxes, open_context
from .test_access import log_in
from .test_access import server as server  # the users-mode server fixture


@pytest.fixture(scope="module")
def album(server: ServerProcess) -> Iterator[tuple[int, list[str]]]:
    """An album of two images, made through the API as the editor erin."""
    with httpx.Client(base_url=server.url) as api:
        r = api.post("/api/auth/login", json={"username": "erin", "password": PASSWORDS["erin"]})
        api.headers["X-CSRFToken"] = r.json()["csrf_token"]
        shas = []
        for i, color in enumerate([(0, 128, 128), (230, 120, 20)]):
            files = {"file": (f"{i}.png", image_bytes(color, (320, 240), pattern=90 + i))}
            r = api.post("/api/images", files=files)
            assert r.status_code in (200, 201), r.text
            shas.append(r.json()["sha256"])
        album_id = api.post("/api/albums", json={"name": "Harbour, shared"}).json()["id"]
        assert api.post(f"/api/albums/{album_id}/images", json={"images": shas}).is_success
        yield album_id, shas


def loaded_images(page: Any) -> int:
    """How many of the page's grid images have decoded (not just an <img> tag)."""
    page.wait_for_load_state("networkidle")
    return int(
        page.locator(".grid img").evaluate_all(
            "imgs => imgs.filter(i => i.complete && i.naturalWidth > 0).length"
        )
    )


def test_editor_shares_an_album_and_a_logged_out_browser_opens_it(
    browser: Any,
    page: Any,
    recorder: Recorder,
    server: ServerProcess,
    album: tuple[int, list[str]],
    artifacts: Path,
) -> None:
    album_id, shas = album
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    log_in(page, server, "erin", f"/albums/{album_id}")
    sharing = page.get_by_role("region", name="Share links")
    sharing.get_by_text("No live share links").wait_for()
    assert page.locator("#share-once").is_hidden()

    page.get_by_label("Expires (optional)").fill("2099-06-30T18:00")
    page.get_by_role("button", name="Create share link").click()
    page.locator("tr[data-share]").first.wait_for()
    url = page.get_by_label("New share link").input_value()
    assert url.startswith(server.url + "/s/")
    assert "Created share link #" in page.inner_text("#share-status")
    row = page.locator("tr[data-share]")
    assert row.count() == 1
    assert "2099-06-30" in row.inner_text() and "erin" in row.inner_text()
    page.get_by_role("button", name="Copy link").click()
    page.wait_for_function(
        "() => document.querySelector('#share-status').textContent.includes('copied')"
    )
    assert page.evaluate("navigator.clipboard.readText()") == url
    # The form's controls share one top and one height, so their labels line up (a
    # datetime-local box is taller than a text box by default); the whole link shows.
    controls = boxes(page, "#share-create input, #share-create button")
    labels = boxes(page, "#share-create label")
    for key, found in [("top", controls), ("height", controls), ("top", labels)]:
        values = [box[key] for box in found]
        assert max(values) - min(values) < 1, f"share form {key}s differ: {found}"
    assert page.locator("#share-url").evaluate("e => e.scrollWidth <= e.clientWidth")
    page.screenshot(path=artifacts / "album-share-desktop-light.png", full_page=True)
    # The same page, with the once-only link and the table shown, in the dark theme.
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=artifacts / "album-share-desktop-dark.png", full_page=True)
    page.emulate_media(color_scheme="light")
    # The token is shown once: the list (and the JSON behind it) never carries it.
    token = url.rsplit("/", 1)[1]
    page.reload()
    page.locator("tr[data-share]").first.wait_for()
    assert token not in page.content()
    assert page.locator("#share-once").is_hidden()

    # A fresh browser without any cookie (nobody logged in) opens the link.
    outsider = open_context(browser, recorder, viewport=PHONE)
    try:
        visitor = outsider.new_page()
        visitor.goto(url)
        assert visitor.get_by_role("heading", level=1).inner_text() == "Harbour, shared"
        assert loaded_images(visitor) == 2
        links = visitor.locator(".grid a").evaluate_all("as => as.map(a => a.pathname)")
        assert sorted(links) == sorted(f"/s/{token}/api/images/{sha}/file" for sha in shas)
        visitor.screenshot(path=artifacts / "share-visitor-phone-light.png", full_page=True)
        assert visitor.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        assert visitor.goto(server.url + f"/albums/{album_id}").url.startswith(
            server.url + "/login"
        )  # the link opens the shared album only, not the rest of the site

        # A second link, with a password; then the first is revoked from the page.
        page.get_by_label("Password (optional)").fill("harbour-Share-pw-9")
        page.get_by_role("button", name="Create share link").click()
        page.wait_for_function("() => document.querySelectorAll('tr[data-share]').length === 2")
        assert "with a password" in page.inner_text("#share-status")
        first = row.first.get_attribute("data-share")
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name=f"Revoke share link #{first}").click()
        page.wait_for_function(
            "() => document.querySelector('#share-status').textContent.includes('revoked')"
        )
        assert page.locator("tr[data-share]").count() == 1
        assert visitor.goto(url).status == 404
    finally:
        outsider.close()


def test_a_viewer_sees_no_share_controls(
    page: Any, server: ServerProcess, album: tuple[int, list[str]]
) -> None:
    album_id, _ = album
    log_in(page, server, "victor", f"/albums/{album_id}")
    assert page.get_by_role("heading", level=1).inner_text() == "Harbour, shared"
    assert loaded_images(page) == 2
    assert page.locator("#sharing, #share-create, [data-revoke-share]").count() == 0
    assert page.get_by_role("button", name="Create share link").count() == 0
    # The fragment answers like the JSON API it mirrors (no write scope: 403).
    assert page.request.get(server.url + f"/albums/{album_id}/shares/panel").status == 403
    assert page.request.get(server.url + f"/api/albums/{album_id}/shares").status == 403
