"""The organising pages end to end (issue 16): tags, favourite and rating on the image
page, albums, the gallery's filters and multi-select, the trash, duplicates."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from imgdex.testing import image_bytes

from ..serverproc import ServerProcess
from .conftest import PHONE, Recorder, boxes, open_context
from .test_web import upload


def status_says(page: Any, selector: str, text: str) -> None:
    page.wait_for_function(
        "([s, t]) => document.querySelector(s).textContent.includes(t)", arg=[selector, text]
    )


def load_every_image(page: Any) -> None:
    """Load the lazy thumbnails below the fold too, so a full-page screenshot shows them."""
    page.locator("img[loading=lazy]").evaluate_all("imgs => imgs.forEach(i => i.loading = 'eager')")
    page.wait_for_function("() => [...document.images].every(i => i.complete)")


def test_image_page_tags_favourite_rating_and_album(
    page: Any, server: ServerProcess, api: httpx.Client, artifacts: Path
) -> None:
    sha = upload(api, image_bytes((0, 128, 128), size=(640, 480), pattern=301), "a teal boat")
    # An album made on the Albums page.
    page.goto(server.url + "/albums")
    page.get_by_label("New album name").fill("Harbour trip")
    page.get_by_role("button", name="Create album").click()
    page.wait_for_url("**/albums/*")
    album_id = page.url.rsplit("/", 1)[1]
    assert page.get_by_role("heading", level=1).inner_text() == "Harbour trip"
    assert "No images in this album yet" in page.inner_text("main")

    page.goto(server.url + f"/images/{sha}")
    page.get_by_label("Add tags").fill("Boats, harbour")
    page.get_by_role("button", name="Add", exact=True).click()
    status_says(page, "#organise-status", "Tagged")
    shown = page.locator("#tags li").evaluate_all("lis => lis.map(li => li.dataset.tag)")
    assert shown == ["boats", "harbour"]  # normalised by the API
    assert sorted(t["tag"] for t in api.get(f"/api/images/{sha}/tags").json()["tags"]) == shown
    page.get_by_role("button", name="Remove the tag boats").click()
    status_says(page, "#organise-status", "Removed the tag boats")
    assert api.get(f"/api/images/{sha}").json()["tags"] == ["harbour"]

    favourite = page.get_by_role("button", name="☆ Favourite")
    favourite.click()
    page.wait_for_function("() => document.querySelector('#favorite').ariaPressed === 'true'")
    page.get_by_label("Rating", exact=True).select_option("4")
    status_says(page, "#organise-status", "Rated 4 of 5")
    info = api.get(f"/api/images/{sha}").json()
    assert (info["favorite"], info["rating"]) == (True, 4)

    page.get_by_label("Add to album").select_option(label="Harbour trip")
    page.get_by_role("button", name="Add to album").click()
    status_says(page, "#organise-status", "Added to Harbour trip")
    page.screenshot(path=artifacts / "image-organise-desktop-light.png", full_page=True)
    page.get_by_role("link", name="Open Harbour trip").click()
    page.wait_for_url(f"**/albums/{album_id}")
    assert page.locator(f'#grid a[href="/images/{sha}"]').count() == 1
    # The tag, favourite and album are gallery filters (GET fields, the API's names).
    page.goto(server.url + "/")
    page.get_by_label("Tag", exact=True).fill("harbour")
    page.get_by_label("Favourites only").check()
    page.get_by_label("Album", exact=True).select_option(label="Harbour trip")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**/?*tag=harbour*")
    assert page.locator("#grid a[data-sha]").evaluate_all(
        "links => links.map(a => a.dataset.sha)"
    ) == [sha]
    assert "favorite=true" in page.url and f"album={album_id}" in page.url


def test_gallery_multi_select_tags_and_trashes(
    page: Any, server: ServerProcess, api: httpx.Client
) -> None:
    shas = [upload(api, image_bytes((128, 128, 0), pattern=320 + i)) for i in range(3)]
    page.goto(server.url + "/")
    for sha in shas[:2]:
        page.locator(f'input[name=pick][value="{sha}"]').check()
    assert page.inner_text("#selected-count") == "2 images selected"
    page.get_by_label("Tag selected").fill("batch")
    page.get_by_role("button", name="Add tags").click()
    status_says(page, "#bulk-status", "Tagged 2 images")
    page.goto(server.url + "/?tag=batch")
    found = page.locator("#grid a[data-sha]").evaluate_all("ls => ls.map(a => a.dataset.sha)")
    assert sorted(found) == sorted(shas[:2])
    page.locator(f'input[name=pick][value="{shas[0]}"]').check()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Move selected to trash").click()
    status_says(page, "#bulk-status", "Moved 1 to the trash")
    assert api.get(f"/api/images/{shas[0]}").json()["is_deleted"]


def test_trash_page_restores_and_the_image_page_says_trashed(
    page: Any, server: ServerProcess, api: httpx.Client, artifacts: Path
) -> None:
    sha = upload(api, image_bytes((128, 0, 0), pattern=340), "a maroon door")
    assert api.delete(f"/api/images/{sha}").status_code == 200
    page.goto(server.url + f"/images/{sha}")
    assert "in the trash" in page.inner_text("#trashed")
    page.get_by_role("link", name="Trash").click()
    page.wait_for_url("**/trash")
    card = page.locator(f'[data-trashed="{sha}"]')
    assert card.count() == 1
    # Hard delete is for admins only: the open mode's visitor may trash, never destroy.
    assert page.locator("#trash-empty").count() == 0
    page.screenshot(path=artifacts / "trash-desktop-light.png")
    card.get_by_role("button", name="Restore").click()
    status_says(page, "#albums-status", "Restored")
    assert not api.get(f"/api/images/{sha}").json()["is_deleted"]
    assert card.count() == 0


SIZES = [(64, 48), (96, 72)]


def test_duplicates_page_pages_through_groups_in_both_themes(
    page: Any, server: ServerProcess, api: httpx.Client, artifacts: Path
) -> None:
    # One page holds 20 groups: 21 pairs make a second page. Each pair is one flat colour
    # in two sizes (identical to the toy colour embedder); the colours fall in distinct
    # histogram bins, so pairs never join each other.
    levels = (32, 96, 160, 224)
    colors = [(r, g, b) for r in levels for g in levels for b in levels][::3][:21]
    mine = {upload(api, image_bytes(color, size=size)) for color in colors for size in SIZES}
    # Wait for every one of them to be grouped: earlier tests of this module's server may
    # have left a group of their own, so a count of groups alone could say 21 too soon.
    deadline = time.monotonic() + 60
    while True:
        body = api.get("/api/duplicates", params={"limit": 100, "per_group": 10}).json()
        grouped = {i["sha256"] for g in body["groups"] for i in g["images"]}
        if mine <= grouped:
            break
        assert time.monotonic() < deadline, "the duplicates job never grouped the pairs"
        time.sleep(0.2)
    total = body["total"]
    second = "; group 21 shown" if total == 21 else f"; groups 21-{total} shown"
    for scheme in ["light", "dark"]:
        page.emulate_media(color_scheme=scheme)
        page.goto(server.url + "/duplicates")
        assert page.get_by_role("heading", level=1).inner_text() == "Duplicates"
        assert page.locator("section.group").count() == 20
        assert "groups 1-20 shown" in page.inner_text("#count")
        # A card's caption and button each keep to one line: the similarity never breaks
        # away from its label, and "Keep this one" is not folded in two.
        similarities = page.locator(".group .caption .alike")
        assert similarities.count() == page.locator(".group .card").count()
        assert similarities.evaluate_all(
            "spans => spans.every(s => s.getClientRects().length === 1)"
        )
        assert page.locator("button[data-keep]").evaluate_all(
            "bs => bs.every(b => b.getBoundingClientRect().height"
            " < 2 * parseFloat(getComputedStyle(b).lineHeight))"
        )
        load_every_image(page)
        page.screenshot(path=artifacts / f"duplicates-desktop-{scheme}.png", full_page=True)
        page.get_by_role("link", name="More groups").click()
        page.wait_for_url("**/duplicates?offset=20")
        assert page.locator("section.group h2").first.inner_text().startswith("Group 21")
        assert second in page.inner_text("#count")
        load_every_image(page)
        page.screenshot(path=artifacts / f"duplicates-page2-desktop-{scheme}.png", full_page=True)
        assert page.get_by_role("link", name="Previous groups").is_visible()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_new_pages_fit_a_phone(
    browser: Any,
    server: ServerProcess,
    api: httpx.Client,
    recorder: Recorder,
    artifacts: Path,
    scheme: str,
) -> None:
    sha = upload(api, image_bytes((0, 0, 128), size=(900, 500), pattern=360), "a navy coat")
    api.post(f"/api/images/{sha}/tags", json={"tags": ["a-rather-long-tag-name-for-phones"]})
    album = api.post("/api/albums", json={"name": f"Phone {scheme}"}).json()["id"]
    api.post(f"/api/albums/{album}/images", json={"images": [sha]})
    context = open_context(browser, recorder, viewport=PHONE, color_scheme=scheme)
    try:
        page = context.new_page()
        for name, path in [
            ("gallery", "/?sort=taken"),
            ("image", f"/images/{sha}"),
            ("albums", "/albums"),
            ("album", f"/albums/{album}"),
            ("trash", "/trash"),
            ("duplicates", "/duplicates"),
        ]:
            page.goto(server.url + path)
            page.wait_for_load_state("networkidle")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{name} scrolls sideways: {width}px"
            if name == "album":  # the share form's fields stack, each the form's width
                form = boxes(page, "#share-create")[0]["width"]
                fields = boxes(page, "#share-create input")
                assert [f["width"] for f in fields] == [form] * 2, (form, fields)
            load_every_image(page)
            page.screenshot(path=artifacts / f"organise-{name}-phone-{scheme}.png", full_page=True)
    finally:
        context.close()
    assert recorder.foreign() == [] and recorder.errors == []


def test_gallery_filters_fold_away_on_a_phone_and_open_by_keyboard(
    browser: Any, server: ServerProcess, api: httpx.Client, recorder: Recorder, artifacts: Path
) -> None:
    upload(api, image_bytes((0, 96, 0), pattern=380), "a green gate")
    context = open_context(browser, recorder, viewport=PHONE, is_mobile=True)
    try:
        page = context.new_page()
        page.goto(server.url + "/")
        form = page.get_by_role("form", name="Filters and sort")
        toggle = page.get_by_role("button", name="Filters and sort")
        assert toggle.get_attribute("aria-expanded") == "false"
        assert form.is_hidden() and page.get_by_label("Camera").is_hidden()
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        page.screenshot(path=artifacts / "gallery-filters-folded-phone-light.png")
        # Keyboard alone: Tab reaches the button, Enter opens it, Tab goes into the form.
        for _ in range(30):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "filters-toggle":
                break
        else:
            pytest.fail("Tab never reached the filters button")
        page.keyboard.press("Enter")
        assert toggle.get_attribute("aria-expanded") == "true"
        assert form.is_visible()
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "sort"
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        page.screenshot(path=artifacts / "gallery-filters-open-phone-light.png")
        # Applied filters are counted on the folded button.
        page.goto(server.url + "/?camera=nikon&favorite=true")
        assert "(2 on)" in toggle.inner_text()
        assert form.is_hidden()
        toggle.focus()  # Space toggles it too (a real <button>)
        page.keyboard.press("Space")
        assert form.is_visible()
    finally:
        context.close()
    # On a desktop the form is simply open and the button is not there.
    context = open_context(browser, recorder)
    try:
        page = context.new_page()
        page.goto(server.url + "/")
        assert page.get_by_label("Camera").is_visible()
        assert page.get_by_role("button", name="Filters and sort").count() == 0
    finally:
        context.close()
    assert recorder.foreign() == [] and recorder.errors == []
