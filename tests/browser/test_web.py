"""The web app end to end: a real server (toy plugins) and a real headless Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from imgdex.testing import image_bytes

from ..serverproc import ServerProcess
from .conftest import ADMIN_TOKEN, PHONE, Recorder, open_context

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def upload(api: httpx.Client, data: bytes, description: str | None = None) -> str:
    r = api.post("/api/images", files={"file": ("x.png", data, "image/png")})
    assert r.status_code in (200, 201), r.text
    sha = str(r.json()["sha256"])
    if description:
        r = api.post(
            f"/api/images/{sha}/descriptions", json={"method": "human", "content": description}
        )
        assert r.status_code == 201, r.text
    return sha


def test_html_pages_carry_the_security_headers(server: ServerProcess) -> None:
    for path in ["/", "/search?q=x", "/upload", "/admin", "/static/app.css"]:
        r = httpx.get(server.url + path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
    # The API keeps its own (JSON) behaviour.
    assert httpx.get(server.url + "/images/nothex").status_code == 400


def test_upload_through_the_file_input_with_progress_and_outcomes(
    page: Any, server: ServerProcess, api: httpx.Client, tmp_path: Path, artifacts: Path
) -> None:
    existing = image_bytes("green", pattern=11)
    duplicate_of = upload(api, existing)
    files = {
        "harbour.png": image_bytes("blue", size=(640, 480), pattern=12),
        "again.png": existing,
        "notes.png": b"this is not an image at all",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    page.goto(server.url + "/upload")
    page.get_by_label("Images to upload").set_input_files([tmp_path / n for n in files])
    rows = page.locator("#upload-list li")
    page.wait_for_function(
        "() => document.querySelectorAll('#upload-list li[data-outcome]').length == 3"
    )
    assert rows.count() == 3
    by_name = {rows.nth(i).locator("label").inner_text(): rows.nth(i) for i in range(3)}
    added = by_name["harbour.png"]
    assert added.get_attribute("data-outcome") == "added"
    new_sha = added.locator("a").get_attribute("href").rsplit("/", 1)[1]
    assert api.get(f"/api/images/{new_sha}").status_code == 200
    dup = by_name["again.png"]
    assert dup.get_attribute("data-outcome") == "duplicate"
    assert dup.locator("a").get_attribute("href") == f"/images/{duplicate_of}"
    rejected = by_name["notes.png"]
    assert rejected.get_attribute("data-outcome") == "rejected"
    assert "rejected:" in rejected.inner_text() and "image" in rejected.inner_text()
    # Every bar (one per file, one overall) is full once all are done.
    for bar in [*[rows.nth(i).locator("progress") for i in range(3)], page.locator("#overall")]:
        assert float(bar.get_attribute("max") or 0) > 0
        assert bar.evaluate("b => b.value") == bar.evaluate("b => b.max")
    assert "3 of 3 files done: 1 added, 1 duplicate, 1 rejected" in page.inner_text("#overall-text")
    page.screenshot(path=artifacts / "upload-done-desktop-light.png", full_page=True)


def test_gallery_shows_images_with_alt_text_and_scrolls_for_more(
    page: Any, server: ServerProcess, api: httpx.Client, artifacts: Path
) -> None:
    for i in range(50):  # more than one page (48)
        upload(api, image_bytes((i * 5 % 256, 90, 200 - i), pattern=100 + i))
    sha = upload(api, image_bytes("red", pattern=21), "a red lighthouse on a rocky cliff")
    page.goto(server.url + "/")
    link = page.locator(f'#grid a[href="/images/{sha}"]')
    img = link.locator("img")
    assert img.get_attribute("alt") == "a red lighthouse on a rocky cliff"
    assert img.get_attribute("loading") == "lazy"
    assert img.get_attribute("src") == f"/api/images/{sha}/thumbnail"
    total = api.get("/api/images", params={"limit": 1}).json()["total"]
    cards = page.locator("#grid li.card")
    assert cards.count() == 48 < total
    page.screenshot(path=artifacts / "gallery-desktop-light.png")
    # Infinite scroll: the "More images" link at the end loads the next page.
    page.locator("#grid li.more").scroll_into_view_if_needed()
    page.wait_for_function(f"() => document.querySelectorAll('#grid li.card').length == {total}")
    # Undescribed images still have a meaningful alt.
    alts = page.locator("#grid img").evaluate_all("imgs => imgs.map(i => i.alt)")
    assert all(alt.strip() for alt in alts)
    # Oldest first starts with the image the API lists last.
    oldest = api.get("/api/images", params={"offset": total - 1, "limit": 1}).json()["images"]
    page.get_by_label("Order").select_option("oldest")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**/?*order=oldest*")
    assert page.locator("#grid a").first.get_attribute("href") == f"/images/{oldest[0]['sha256']}"


def test_text_search_finds_the_image_and_says_why(
    page: Any, server: ServerProcess, api: httpx.Client, artifacts: Path
) -> None:
    sha = upload(api, image_bytes("yellow", pattern=31), "yellow taxi waiting in the rain")
    page.goto(server.url + "/")
    # Nothing focused (a click on the page could land on a thumbnail's link).
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("/")  # focuses the search box from anywhere
    assert page.evaluate("document.activeElement.type") == "search"
    page.keyboard.type("taxi rain")
    page.keyboard.press("Enter")
    page.wait_for_url("**/search?q=taxi+rain")
    first = page.locator("#results li.card").first
    assert first.locator("a").get_attribute("href") == f"/images/{sha}"
    assert first.locator("img").get_attribute("alt") == "yellow taxi waiting in the rain"
    assert float(first.locator(".score data").get_attribute("value")) > 0
    first.locator("summary").click()
    why = first.locator(".why").inner_text()
    assert "toy_words_v1" in why and "human" in why and "yellow taxi waiting in the rain" in why
    page.screenshot(path=artifacts / "search-text-desktop-light.png")
    # Typing in the box searches again without a page load (htmx swaps the results).
    page.keyboard.press("/")
    page.keyboard.type("lighthouse cliff")
    page.wait_for_function(
        "() => document.querySelector('#results q')?.textContent === 'lighthouse cliff'"
    )


def test_search_by_image_picked_from_a_file(
    page: Any, server: ServerProcess, api: httpx.Client, tmp_path: Path, artifacts: Path
) -> None:
    data = image_bytes("purple", pattern=41)
    sha = upload(api, data, "purple flowers")
    query = tmp_path / "query.png"
    query.write_bytes(data)
    page.goto(server.url + "/search")
    page.get_by_label("Image to search with").set_input_files(query)
    page.wait_for_function("() => document.querySelector('#results li.card') !== null")
    first = page.locator("#results li.card").first
    assert first.locator("a").get_attribute("href") == f"/images/{sha}"
    assert page.locator("#query-preview").is_visible()
    page.screenshot(path=artifacts / "search-image-desktop-light.png")


def test_image_page_descriptions_zoom_and_arrow_keys(
    page: Any, server: ServerProcess, api: httpx.Client, artifacts: Path
) -> None:
    shas = [upload(api, image_bytes("green", size=(800, 600), pattern=51 + i)) for i in range(3)]
    page.goto(server.url + "/")
    grid = [
        href.rsplit("/", 1)[1]
        for href in page.locator("#grid a[data-sha]").evaluate_all(
            "links => links.map(a => a.getAttribute('href'))"
        )
    ]
    # Open one from the middle of the grid: its neighbours there are prev and next.
    middle = next(i for i, sha in enumerate(grid) if sha in shas and 0 < i < len(grid) - 1)
    shas = [grid[middle + 1], grid[middle], grid[middle - 1]]
    page.locator(f'#grid a[href="/images/{shas[1]}"]').click()
    page.wait_for_url(f"**/images/{shas[1]}")
    assert page.get_by_role("link", name="Download original").get_attribute("href") == (
        f"/api/images/{shas[1]}/file"
    )
    page.get_by_label("Text").fill("a green meadow under a wide sky")
    page.get_by_role("button", name="Add description").click()
    page.wait_for_function(
        "() => document.querySelector('#desc-status').textContent.includes('Saved')"
    )
    described = api.get(f"/api/images/{shas[1]}/descriptions").json()
    assert [(d["method"], d["content"]) for d in described] == [
        ("human", "a green meadow under a wide sky")
    ]
    # Edit it in place. The saved panel replaces the old one and takes the focus, so wait
    # for the new panel (the box holds the new text before it is saved).
    page.locator("#descriptions").evaluate("panel => { panel.dataset.old = 'yes'; }")
    box = page.locator(".desc-edit textarea")
    box.fill("a green meadow at dawn")
    page.locator(".desc-edit").get_by_role("button", name="Save").click()
    page.wait_for_function(
        "() => { const panel = document.querySelector('#descriptions');"
        " return panel && !panel.dataset.old"
        " && panel.querySelector('.desc-edit textarea')?.value === 'a green meadow at dawn'; }"
    )
    assert api.get(f"/api/images/{shas[1]}/descriptions").json()[0]["content"] == (
        "a green meadow at dawn"
    )
    # Zoom toggles with the keyboard.
    page.locator("#zoom").focus()
    page.keyboard.press("Enter")
    assert page.locator("#zoom").get_attribute("aria-pressed") == "true"
    page.screenshot(path=artifacts / "image-zoomed-desktop-light.png", full_page=True)
    page.keyboard.press("Enter")
    # Arrow keys follow the grid it was opened from.
    page.locator("body").click(position={"x": 5, "y": 300})
    page.keyboard.press("ArrowRight")
    page.wait_for_url(f"**/images/{shas[0]}")
    page.keyboard.press("ArrowLeft")
    page.wait_for_url(f"**/images/{shas[1]}")
    page.keyboard.press("ArrowLeft")
    page.wait_for_url(f"**/images/{shas[2]}")
    # Deleting a description, then (softly) the image.
    page.goto(server.url + f"/images/{shas[1]}")
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete the human description").click()
    page.wait_for_function(
        "() => document.querySelector('#desc-status').textContent.includes('Deleted')"
    )
    assert api.get(f"/api/images/{shas[1]}/descriptions").json() == []
    page.get_by_role("button", name="Delete", exact=True).click()
    page.wait_for_url(server.url + "/")
    assert api.get(f"/api/images/{shas[1]}").json()["is_deleted"] == 1


def test_admin_page_disables_and_enables_a_plugin(
    page: Any, server: ServerProcess, api: httpx.Client, artifacts: Path
) -> None:
    page.goto(server.url + "/admin")
    assert page.get_by_label("Admin token").get_attribute("type") == "password"
    assert "sessionStorage" in page.inner_text("#token-form")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Use token").click()
    row = page.locator('tr[data-plugin="toy_words"]')
    row.wait_for()
    assert page.locator('tr[data-index="toy_color_v1"] progress').count() == 1
    page.screenshot(path=artifacts / "admin-token-desktop-light.png", full_page=True)
    row.get_by_role("button", name="Disable toy_words").click()
    page.locator('tr[data-plugin="toy_words"]').get_by_role(
        "button", name="Enable toy_words"
    ).wait_for()
    plugins = api.get("/api/admin/plugins", headers=ADMIN).json()["plugins"]
    assert not next(p for p in plugins if p["name"] == "toy_words")["enabled"]
    page.locator('tr[data-plugin="toy_words"]').get_by_role(
        "button", name="Enable toy_words"
    ).click()
    page.locator('tr[data-plugin="toy_words"]').get_by_role(
        "button", name="Disable toy_words"
    ).wait_for()
    plugins = api.get("/api/admin/plugins", headers=ADMIN).json()["plugins"]
    assert next(p for p in plugins if p["name"] == "toy_words")["enabled"]
    # The token stays in this tab only: a reload keeps the panel.
    page.reload()
    page.locator('tr[data-plugin="toy_words"]').wait_for()
    assert page.evaluate("sessionStorage.getItem('imgdex:admin-token')") == ADMIN_TOKEN


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_fits_a_phone_and_both_themes(
    browser: Any,
    recorder: Recorder,
    server: ServerProcess,
    api: httpx.Client,
    artifacts: Path,
    scheme: str,
) -> None:
    sha = upload(
        api,
        image_bytes("blue", size=(1200, 800), pattern=61),
        "the harbour at dusk, seen from the old lighthouse; fishing boats come in. 海边的日落风景",
    )
    pages = {
        "gallery": "/",
        "search": "/search?q=lighthouse",
        "image": f"/images/{sha}",
        "upload": "/upload",
        "admin": "/admin",
    }
    for device, viewport in [("phone", PHONE), ("desktop", None)]:
        options: dict[str, Any] = {"color_scheme": scheme}
        if viewport:
            options.update(viewport=viewport, is_mobile=True, device_scale_factor=2)
        context = open_context(browser, recorder, **options)
        # about:blank has no sessionStorage: only the server's pages get the token.
        context.add_init_script(
            f"try {{ sessionStorage.setItem('imgdex:admin-token', '{ADMIN_TOKEN}') }} catch {{}}"
        )
        page = context.new_page()
        try:
            for name, path in pages.items():
                page.goto(server.url + path)
                if name == "admin":
                    page.locator('tr[data-plugin="toy_words"]').wait_for()
                page.wait_for_load_state("networkidle")
                if viewport:
                    width = page.evaluate("document.documentElement.scrollWidth")
                    assert width <= PHONE["width"], f"{name} scrolls sideways: {width}px"
                # The image page in full: its descriptions (with CJK text) are below the fold.
                page.screenshot(
                    path=artifacts / f"{name}-{device}-{scheme}.png", full_page=name == "image"
                )
        finally:
            context.close()
    assert recorder.foreign() == []
    assert recorder.errors == []
