"""Album share links on a real server in ``auth.mode: users``, through HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from .serverproc import ServerProcess
from .test_auth import PASSWORDS, ROLES, cli, login, upload, write_config

WRONG_TRIES = 3  # the per-account (here: per-link) limit of the server below


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("sharedata")
    for name in ("erin", "victor"):
        r = cli(
            data, "users", "create", name, "--role", ROLES[name], "--password-stdin",
            stdin=PASSWORDS[name] + "\n",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
    config = write_config(data.parent / "shares.yaml", data, login_attempts_per_account=WRONG_TRIES)
    proc = ServerProcess(config).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def album(server: ServerProcess) -> Iterator[tuple[int, list[str], str]]:
    """An album of two images, and one image outside it."""
    with closing(login(server, "erin")) as editor:
        shas = [upload(editor, p).json()["sha256"] for p in (11, 12, 13)]
        r = editor.post("/api/albums", json={"name": "Holiday <2026>"})
        assert r.status_code == 201, r.text
        album_id = r.json()["id"]
        r = editor.post(f"/api/albums/{album_id}/images", json={"images": shas[:2]})
        assert r.status_code == 200, r.text
    yield album_id, shas[:2], shas[2]


def share(server: ServerProcess, album_id: int, **body: object) -> dict[str, object]:
    with closing(login(server, "erin")) as editor:
        r = editor.post(f"/api/albums/{album_id}/shares", json=body)
        assert r.status_code == 201, r.text
        out: dict[str, object] = r.json()
    assert out["url"] == f"/s/{out['token']}"
    return out


def test_a_link_shows_its_album_and_nothing_else(
    server: ServerProcess, album: tuple[int, list[str], str]
) -> None:
    album_id, inside, outside = album
    link = share(server, album_id)
    base = str(link["url"])
    with server.client() as anon:  # never logged in
        page = anon.get(base)
        assert page.status_code == 200, page.text
        assert "Holiday &lt;2026&gt;" in page.text  # the name, escaped
        assert "<script" not in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        for sha in inside:
            assert f"{base}/api/images/{sha}/thumbnail" in page.text
            assert f"{base}/api/images/{sha}/file" in page.text
        assert outside not in page.text

        r = anon.get(f"{base}/api/images", params={"limit": 1})
        assert r.status_code == 200, r.text
        assert r.json()["total"] == 2 and len(r.json()["images"]) == 1
        r = anon.get(f"{base}/api/images", params={"limit": 1, "offset": 1})
        listed = {r.json()["images"][0]["sha256"]}
        r = anon.get(f"{base}/api/images")
        assert {i["sha256"] for i in r.json()["images"]} == set(inside) >= listed

        for sha in inside:
            thumb = anon.get(f"{base}/api/images/{sha}/thumbnail")
            assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
            original = anon.get(f"{base}/api/images/{sha}/file")
            assert original.status_code == 200 and original.content.startswith(b"\x89PNG")
        for kind in ("thumbnail", "file"):
            r = anon.get(f"{base}/api/images/{outside}/{kind}")
            assert r.status_code == 404 and r.json()["error"] == "image_not_found"
        assert anon.get(f"{base}/api/images/{inside[0]}/descriptions").status_code == 404

        # The token is no credential of the rest of the API.
        for method, path in (
            ("GET", "/api/images"),
            ("GET", f"/api/images/{inside[0]}/file"),
            ("GET", f"/api/albums/{album_id}"),
            ("GET", f"/api/albums/{album_id}/images"),
            ("GET", "/api/albums"),
            ("POST", "/api/search/text"),
        ):
            auth = {"Authorization": f"Bearer {link['token']}"}
            r = anon.request(method, path, headers=auth, json={"query": "x"})
            assert r.status_code == 401, (path, r.text)
            assert anon.request(method, path, json={"query": "x"}).status_code == 401, path
        # Unknown tokens: 404 everywhere under /s/.
        for path in ("/s/nope", "/s/nope/api/images", f"/s/nope/api/images/{inside[0]}/file"):
            r = anon.get(path)
            assert r.status_code == 404, (path, r.text)


def test_listing_and_revoking(server: ServerProcess, album: tuple[int, list[str], str]) -> None:
    album_id, inside, _ = album
    link = share(server, album_id)
    with closing(login(server, "erin")) as editor, server.client() as anon:
        listed = editor.get(f"/api/albums/{album_id}/shares")
        assert listed.status_code == 200
        ids = [s["id"] for s in listed.json()["shares"]]
        assert link["id"] in ids
        assert str(link["token"]) not in listed.text
        assert anon.get(f"{link['url']}/api/images").status_code == 200

        r = editor.delete(f"/api/albums/{album_id}/shares/{link['id']}")
        assert r.status_code == 200, r.text
        for path in ("", "/api/images", f"/api/images/{inside[0]}/thumbnail"):
            r = anon.get(f"{link['url']}{path}")
            assert r.status_code == 404 and r.json()["error"] == "unknown_share", path
        listed = editor.get(f"/api/albums/{album_id}/shares").json()["shares"]
        assert link["id"] not in [s["id"] for s in listed]
        assert editor.delete(f"/api/albums/{album_id}/shares/{link['id']}").status_code == 404
        assert editor.post("/api/albums/999999/shares", json={}).status_code == 404
        assert editor.get("/api/albums/999999/shares").status_code == 404


def test_audit_log_records_shares(server: ServerProcess, album: tuple[int, list[str], str]) -> None:
    link = share(server, album[0])
    with closing(login(server, "erin")) as editor:
        editor.delete(f"/api/albums/{album[0]}/shares/{link['id']}")
    with server.client() as admin:
        headers = {"Authorization": "Bearer test-admin-token"}
        entries = admin.get("/api/admin/audit", headers=headers).json()["entries"]
        actions = {(e["action"], e["target"]) for e in entries}
    target = f"album {album[0]} share {link['id']}"
    assert ("share_created", target) in actions and ("share_revoked", target) in actions


def test_expired_link(server: ServerProcess, album: tuple[int, list[str], str]) -> None:
    with closing(login(server, "erin")) as editor:
        # The expiry is set after logging in (password hashing is slow on a busy machine).
        soon = datetime.now(UTC) + timedelta(seconds=4)
        r = editor.post(f"/api/albums/{album[0]}/shares", json={"expires_at": soon.isoformat()})
        assert r.status_code == 201, r.text
        link = r.json()
    with server.client() as anon:
        assert anon.get(f"{link['url']}/api/images").status_code == 200
        time.sleep(max(0.0, soon.timestamp() - time.time()) + 0.2)
        r = anon.get(f"{link['url']}/api/images")
        assert r.status_code == 404 and r.json()["error"] == "unknown_share"
        assert anon.get(str(link["url"])).status_code == 404
    with closing(login(server, "erin")) as editor:
        past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        r = editor.post(f"/api/albums/{album[0]}/shares", json={"expires_at": past})
        assert r.status_code == 400


def test_password_protected_link(server: ServerProcess, album: tuple[int, list[str], str]) -> None:
    password = "a-Share-pass-77"
    link = share(server, album[0], password=password)
    base = str(link["url"])
    with server.client() as anon:
        page = anon.get(base)
        assert page.status_code == 200 and f'action="{base}/unlock"' in page.text
        assert "Holiday" not in page.text and album[1][0] not in page.text
        r = anon.get(f"{base}/api/images")
        assert r.status_code == 401 and r.json()["error"] == "share_locked"
        assert anon.get(f"{base}/api/images/{album[1][0]}/file").status_code == 401

        r = anon.post(f"{base}/unlock", data={"password": "wrong-Pass-1"})
        assert r.status_code == 401 and "Wrong password" in r.text
        r = anon.post(f"{base}/unlock", data={"password": password})
        assert r.status_code == 303 and r.headers["location"] == base
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and f"Path={base}" in cookie and "Max-Age=" in cookie
        assert anon.get(f"{base}/api/images").json()["total"] == 2
        assert "Holiday" in anon.get(base).text
        assert anon.get(f"{base}/api/images/{album[1][0]}/thumbnail").status_code == 200

    # The cookie is bound to its link: another locked link of the album stays locked.
    other = share(server, album[0], password=password)
    with server.client() as anon:
        anon.post(f"{base}/unlock", data={"password": password})
        unlocked = anon.cookies.get("imgdex_share")
        assert unlocked
        r = httpx.get(f"{server.url}{other['url']}/api/images", cookies={"imgdex_share": unlocked})
        assert r.status_code == 401


def test_wrong_passwords_are_rate_limited(
    server: ServerProcess, album: tuple[int, list[str], str]
) -> None:
    password = "a-Share-pass-88"
    link = share(server, album[0], password=password)
    with server.client() as anon:
        codes = [
            anon.post(f"{link['url']}/unlock", data={"password": f"nope-{i}"}).status_code
            for i in range(WRONG_TRIES + 1)
        ]
        assert codes == [401] * WRONG_TRIES + [429]
        r = anon.post(f"{link['url']}/unlock", data={"password": password})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


def test_viewer_cannot_make_links(server: ServerProcess, album: tuple[int, list[str], str]) -> None:
    with closing(login(server, "victor")) as viewer:
        r = viewer.post(f"/api/albums/{album[0]}/shares", json={})
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
        assert viewer.get(f"/api/albums/{album[0]}/shares").status_code == 403
    with server.client() as anon:
        assert anon.post(f"/api/albums/{album[0]}/shares", json={}).status_code == 401


def test_logged_in_unlock_needs_no_csrf(
    server: ServerProcess, album: tuple[int, list[str], str]
) -> None:
    """The /s/ routes ignore the session: a logged-in visitor unlocks like anyone."""
    password = "a-Share-pass-99"
    link = share(server, album[0], password=password)
    with closing(login(server, "victor")) as viewer:
        del viewer.headers["X-CSRFToken"]
        r = viewer.post(f"{link['url']}/unlock", data={"password": password})
        assert r.status_code == 303, r.text
        assert viewer.get(f"{link['url']}/api/images").status_code == 200
