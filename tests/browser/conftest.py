"""A real imgdex server (toy plugins) and a real headless Chromium, driven by Playwright.

Playwright's own browser download does not work here: the tests drive Debian's
``chromium`` (``make test`` installs it). Screenshots go to ``IMGDEX_TEST_ARTIFACTS``
(default ``test-artifacts/browser`` in the repository).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from imgdex.testing import make_config

from ..serverproc import ServerProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    # Without these Chromium talks to Google on its own, which would break the
    # "no request leaves the origin" check and needs a network the tests must not need.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ADMIN_TOKEN = "test-admin-token"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

playwright_sync = pytest.importorskip("playwright.sync_api")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser" in str(item.path):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    root = Path(__file__).resolve().parents[2]
    path = Path(os.environ.get("IMGDEX_TEST_ARTIFACTS", root / "test-artifacts" / "browser"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("web")
    config = make_config(tmp / "data")
    path = tmp / "imgdex.yaml"
    path.write_bytes(msgspec.yaml.encode(msgspec.to_builtins(config)))
    proc = ServerProcess(path).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


# Module scope, not session: sync Playwright keeps an event loop running in the main
# thread while it is open, and later tests that call asyncio.run() would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (make test installs it)")
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


class Recorder:
    """Every request the page made and every console error (CSP violations land there)."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.urls: list[str] = []
        self.errors: list[str] = []

    def console(self, msg: Any) -> None:
        # A 4xx the test provoked (a rejected upload) is logged as "Failed to load
        # resource"; the tests check those answers themselves. Everything else counts.
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            self.errors.append(msg.text)

    def response(self, response: Any) -> None:
        if response.status >= 500:
            self.errors.append(f"{response.status} from {response.url}")

    def foreign(self) -> list[str]:
        local = (self.origin + "/", "data:", "blob:")
        return [u for u in self.urls if not u.startswith(local)]


@pytest.fixture
def recorder(server: ServerProcess) -> Recorder:
    return Recorder(server.url)


def open_context(browser: Any, recorder: Recorder, **options: Any) -> Any:
    context = browser.new_context(**{"viewport": DESKTOP, **options})
    context.on("request", lambda request: recorder.urls.append(request.url))
    context.on("console", recorder.console)
    context.on("response", recorder.response)
    context.on("weberror", lambda err: recorder.errors.append(str(err.error)))
    return context


def boxes(page: Any, selector: str) -> list[dict[str, float]]:
    """Where each element matching `selector` is drawn, in CSS pixels."""
    return list(
        page.locator(selector).evaluate_all(
            "els => els.map(e => e.getBoundingClientRect().toJSON())"
        )
    )


@pytest.fixture
def page(browser: Any, recorder: Recorder) -> Iterator[Any]:
    """A desktop page; after the test: nothing left the origin, no script errors."""
    context = open_context(browser, recorder)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()
    assert recorder.urls, "the page made no request at all"
    assert recorder.foreign() == [], f"requests to another origin: {recorder.foreign()}"
    assert recorder.errors == [], f"errors in the page: {recorder.errors}"
