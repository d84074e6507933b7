"""The web app in ``auth.mode: users``: a real server with real accounts (made with the
CLI), logged in through the log-in form of a real headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from imgdex.testing import image_bytes

from ..serverproc import ServerProcess
from ..test_auth import PASSWORDS, ROLES, cli, write_config
from .conftest import PHONE, Recorder, open_context


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Overrides conftest's open server: this module's pages need a login."""
    data = tmp_path_factory.mktemp("webauth")
    for name, password in PASSWORDS.items():
        r = cli(data, "users", "create", name, "--role", ROLES[name], "--password-stdin",
                stdin=password + "\n")  # fmt: skip
        assert r.returncode == 0, r.stderr
    proc = ServerProcess(write_config(data.parent / "webauth.yaml", data)).start()
    try:
        yield proc
    finally:
        proc.stop()


def log_in(page: Any, server: ServerProcess, name: str, path: str = "/") -> None:
    """Open `path`, get sent to the log-in form, log in, land back on `path`."""
    page.goto(server.url + path)
    page.wait_for_url("**/login?next=*")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(PASSWORDS[name])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(server.url + path)


def test_pages_redirect_to_login_and_next_stays_on_this_site(server: ServerProcess) -> None:
    for path in ["/", "/upload", "/admin", "/account", "/search?q=a%20b", "/images/" + "0" * 64]:
        r = httpx.get(server.url + path)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/login?next=%2F"), path
    # An htmx request (the gallery's infinite scroll) navigates the whole page instead.
    r = httpx.get(server.url + "/?offset=48", headers={"HX-Request": "true"})
    assert r.status_code == 401
    assert r.headers["hx-redirect"] == "/login?next=%2F%3Foffset%3D48"
    # The log-in page and its assets are public.
    for path in ["/login", "/static/app.css", "/static/js/login.js", "/static/js/app.js"]:
        assert httpx.get(server.url + path).status_code == 200, path
    # `next` is honoured only as a path on this site: no open redirect.
    for bad in ["//evil.example/x", "https://evil.example", "/\\evil.example", "javascript:x"]:
        r = httpx.get(server.url + "/login", params={"next": bad})
        assert 'data-next="/"' in r.text, bad
    r = httpx.get(server.url + "/login", params={"next": "/search?q=x"})
    assert 'data-next="/search?q=x"' in r.text
    # Fragments answer like the JSON API they mirror.
    r = httpx.get(server.url + "/admin/panel")
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"


def test_editor_logs_in_uploads_with_csrf_and_logs_out(
    page: Any, server: ServerProcess, tmp_path: Path, artifacts: Path
) -> None:
    page.goto(server.url + "/")
    page.wait_for_url("**/login?next=%2F")
    page.screenshot(path=artifacts / "login-desktop-light.png")
    # A wrong password: the API's reason is shown, and the form stays.
    page.get_by_label("Username").fill("erin")
    page.get_by_label("Password").fill("not-her-password")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_function(
        "() => document.querySelector('#login-status').textContent.includes('Not logged in')"
    )
    page.screenshot(path=artifacts / "login-error-desktop-light.png")

    log_in(page, server, "erin", "/upload")
    assert page.locator("[data-username]").inner_text() == "erin"
    assert page.locator("[data-role]").inner_text() == "editor"
    nav = page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="Upload").count() == 1
    assert nav.get_by_role("link", name="Admin").count() == 0

    sent: list[dict[str, str]] = []
    page.on("request", lambda rq: sent.append(rq.headers) if rq.method == "POST" else None)
    (tmp_path / "boat.png").write_bytes(image_bytes("blue", pattern=71))
    page.get_by_label("Images to upload").set_input_files(tmp_path / "boat.png")
    page.wait_for_function("() => document.querySelector('#upload-list li[data-outcome]') !== null")
    row = page.locator("#upload-list li")
    assert row.get_attribute("data-outcome") == "added", row.inner_text()
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    assert sent and sent[0].get("x-csrftoken") == token

    # Editors get a 403 page for the admin page; its fragments answer 403 JSON.
    response = page.goto(server.url + "/admin")
    assert response.status == 403
    assert "does not allow" in page.inner_text("main")

    # Account: a key is shown once, then revoked.
    page.goto(server.url + "/account")
    page.get_by_label("Name").fill("backup script")
    page.get_by_role("button", name="Create key").click()
    page.wait_for_function(
        "() => document.querySelector('#new-key-value').value.startsWith('imgdex_')"
    )
    key = page.locator("#new-key-value").input_value()
    assert (
        httpx.get(
            server.url + "/api/images", headers={"Authorization": f"Bearer {key}"}
        ).status_code
        == 200
    )
    page.locator("tr[data-key] button").first.wait_for()
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke key backup script").click()
    page.wait_for_function(
        "() => document.querySelector('#account-status').textContent.includes('revoked')"
    )
    assert (
        httpx.get(
            server.url + "/api/images", headers={"Authorization": f"Bearer {key}"}
        ).status_code
        == 401
    )
    assert page.locator("tr[data-session]").count() >= 1

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")
    page.goto(server.url + "/upload")
    page.wait_for_url("**/login?next=%2Fupload")


def test_admin_uses_the_session_and_creates_a_user_who_cannot_upload(
    browser: Any, page: Any, recorder: Recorder, server: ServerProcess, artifacts: Path
) -> None:
    log_in(page, server, "alice", "/admin")
    assert page.locator("#token-form").count() == 0  # no token prompt with a session
    page.locator('tr[data-plugin="toy_words"]').wait_for()
    page.locator('tr[data-user="alice"]').wait_for()
    page.get_by_label("Username", exact=True).fill("nina")
    page.get_by_label("Password", exact=True).fill("nina-Secret-pw-4")
    page.get_by_label("Role", exact=True).select_option("viewer")
    page.get_by_role("button", name="Create user").click()
    page.locator('tr[data-user="nina"]').wait_for()
    assert "Created nina (viewer)" in page.inner_text("#accounts-status")
    page.screenshot(path=artifacts / "admin-session-desktop-light.png", full_page=True)
    # A plugin action goes through with the session (and its CSRF header).
    page.get_by_role("button", name="Disable toy_words").click()
    page.get_by_role("button", name="Enable toy_words").wait_for()
    page.get_by_role("button", name="Enable toy_words").click()
    page.get_by_role("button", name="Disable toy_words").wait_for()

    # The new viewer: no upload, no editing controls, 403 for the upload page.
    with httpx.Client(base_url=server.url) as api:
        r = api.post("/api/auth/login", json={"username": "erin", "password": PASSWORDS["erin"]})
        api.headers["X-CSRFToken"] = r.json()["csrf_token"]
        files = {"file": ("v.png", image_bytes("red", pattern=72), "image/png")}
        sha = api.post("/api/images", files=files).json()["sha256"]
    context = open_context(browser, recorder)
    viewer = context.new_page()
    try:
        viewer.goto(server.url + "/")
        viewer.get_by_label("Username").fill("nina")
        viewer.get_by_label("Password").fill("nina-Secret-pw-4")
        viewer.get_by_role("button", name="Log in").click()
        viewer.wait_for_url(server.url + "/")
        assert viewer.locator("[data-role]").inner_text() == "viewer"
        nav = viewer.get_by_role("navigation", name="Main")
        assert nav.get_by_role("link", name="Upload").count() == 0
        assert nav.get_by_role("link", name="Admin").count() == 0
        assert viewer.goto(server.url + "/upload").status == 403
        viewer.goto(server.url + f"/images/{sha}")
        assert viewer.get_by_role("link", name="Download original").count() == 1
        assert viewer.locator("#delete-image").count() == 0
        assert viewer.locator("#desc-add").count() == 0
    finally:
        context.close()


def test_too_many_failed_logins_say_when_to_retry(page: Any, server: ServerProcess) -> None:
    page.goto(server.url + "/login")
    for _ in range(8):
        page.get_by_label("Username").fill("mallory")
        page.get_by_label("Password").fill("guess")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_function("() => !document.querySelector('#login-form button').disabled")
        if "Too many" in page.inner_text("#login-status"):
            break
    assert "try again in" in page.inner_text("#login-status")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_login_page_fits_a_phone_and_both_themes(
    browser: Any, recorder: Recorder, server: ServerProcess, artifacts: Path, scheme: str
) -> None:
    for device, viewport in [("phone", PHONE), ("desktop", None)]:
        options: dict[str, Any] = {"color_scheme": scheme}
        if viewport:
            options.update(viewport=viewport, is_mobile=True, device_scale_factor=2)
        context = open_context(browser, recorder, **options)
        page = context.new_page()
        try:
            page.goto(server.url + "/login?next=/upload")
            page.wait_for_load_state("networkidle")
            if viewport:
                assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            page.screenshot(path=artifacts / f"login-{device}-{scheme}.png")
            if device == "phone":
                log_in(page, server, "erin", "/")
                page.screenshot(path=artifacts / f"gallery-editor-{device}-{scheme}.png")
        finally:
            context.close()
    assert recorder.foreign() == []
    assert recorder.errors == []
