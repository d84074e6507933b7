"""Access control on a real server in ``auth.mode: users``, through HTTP."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import msgspec
import pytest
from litestar.routes import HTTPRoute

from imgdex.api import create_app
from imgdex.testing import image_bytes, make_config

from .serverproc import ServerProcess

ADMIN_TOKEN = "test-admin-token"
PASSWORDS = {
    "alice": "alice-Secret-pw-1",  # admin
    "erin": "erin-Secret-pw-2",  # editor
    "victor": "victor-Secret-pw-3",  # viewer
}
ROLES = {"alice": "admin", "erin": "editor", "victor": "viewer"}
# Routes that answer without credentials, on purpose: the log-in page and its
# stylesheet and scripts too.
PUBLIC = {
    "/health",
    "/api/auth/login",
    "/api/auth/logout",
    "/login",
    "/static/{file_path:path}",
    # Album share links: the token is the credential (tests/test_shares_api.py).
    "/s/{token:str}",
    "/s/{token:str}/unlock",
    "/s/{token:str}/api/images",
    "/s/{token:str}/api/images/{sha256:str}/{kind:str}",
}


def cli(data: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imgdex.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "IMGDEX_DATA_DIR": str(data)},
    )


def write_config(path: Path, data: Path, **auth: object) -> Path:
    raw = {
        "data_dir": str(data),
        "server": {"admin_token": ADMIN_TOKEN},
        "auth": {"mode": "users", "login_attempts_per_address": 100, **auth},
        "worker": {"interval": 0.2},
    }
    path.write_bytes(msgspec.yaml.encode(raw))
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("authdata")
    for name, password in PASSWORDS.items():
        r = cli(
            data,
            "users",
            "create",
            name,
            "--role",
            ROLES[name],
            "--password-stdin",
            stdin=password + "\n",
        )
        assert r.returncode == 0, r.stderr
    return data


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(write_config(data_dir.parent / "auth.yaml", data_dir)).start()
    try:
        yield proc
    finally:
        proc.stop()


def login(server: ServerProcess, name: str) -> httpx.Client:
    client = server.client()
    r = client.post("/api/auth/login", json={"username": name, "password": PASSWORDS[name]})
    assert r.status_code == 200, r.text
    assert r.json()["role"] == ROLES[name]
    cookie = r.headers.get_list("set-cookie")
    assert any("HttpOnly" in c and "SameSite=lax" in c.replace("Lax", "lax") for c in cookie)
    client.headers["X-CSRFToken"] = r.json()["csrf_token"]
    return client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_key(client: httpx.Client, scopes: list[str], **extra: object) -> dict[str, object]:
    r = client.post("/api/keys", json={"name": "k", "scopes": scopes, **extra})
    assert r.status_code == 201, r.text
    body: dict[str, object] = r.json()
    assert str(body["key"]).startswith("imgdex_")
    return body


def upload(client: httpx.Client, pattern: int, **kw: object) -> httpx.Response:
    files = {"file": (f"p{pattern}.png", image_bytes("blue", pattern=pattern), "image/png")}
    return client.post("/api/images", files=files, **kw)  # type: ignore[arg-type]


def _fill(path: str) -> str:
    path = re.sub(r"\{sha256:str\}", "0" * 32, path)
    path = re.sub(r"\{\w+:int\}", "1", path)
    return re.sub(r"\{\w+:\w+\}", "x", path)


def _login_page(route: HTTPRoute, method: str) -> bool:
    """Whether the route is a page of the web app, which sends visitors to /login."""
    handler = route.route_handler_map[method][0]
    return any(
        getattr(getattr(g, "func", g), "login_redirect", False) for g in handler.resolve_guards()
    )


def test_no_route_answers_without_credentials(server: ServerProcess, tmp_path: Path) -> None:
    app = create_app(make_config(tmp_path))
    checked = pages = 0
    with server.client() as client:
        for route in app.routes:
            if not isinstance(route, HTTPRoute) or route.path in PUBLIC:
                continue
            if route.path.startswith("/docs"):
                continue
            for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
                path = _fill(route.path)
                r = client.request(method, path)
                checked += 1
                if _login_page(route, method):
                    # Pages of the web app send the visitor to the log-in form and back.
                    assert r.status_code == 303, (method, route.path, r.text)
                    assert r.headers["location"] == "/login?next=" + quote(path, safe="")
                    pages += 1
                    continue
                assert r.status_code == 401, (method, route.path, r.text)
                assert r.json()["error"] == "unauthorized"
                assert r.headers["www-authenticate"].startswith("Bearer")
        # A wrong token is refused too, and says why.
        r = client.get("/api/images", headers=bearer("imgdex_not-a-real-key"))
        assert r.status_code == 401 and "invalid" in r.json()["detail"]
    assert checked > 20 and pages >= 6


def test_roles(server: ServerProcess) -> None:
    with (
        closing(login(server, "victor")) as viewer,
        closing(login(server, "erin")) as editor,
        closing(login(server, "alice")) as admin,
    ):
        r = upload(viewer, 1)
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
        assert viewer.get("/api/images").status_code == 200
        assert viewer.get("/api/auth/me").json()["username"] == "victor"

        r = upload(editor, 2)
        assert r.status_code == 201, r.text
        sha = r.json()["sha256"]
        r = editor.post(f"/api/images/{sha}/descriptions", json={"method": "human", "content": "x"})
        assert r.status_code == 201
        assert editor.delete(f"/api/images/{sha}", params={"hard": "true"}).status_code == 403
        assert editor.get("/api/admin/plugins").status_code == 403
        assert editor.get("/api/admin/users").status_code == 403
        assert editor.get("/api/keys", params={"all_users": "true"}).status_code == 403
        assert editor.delete(f"/api/images/{sha}").status_code == 200  # to the trash

        assert admin.get("/api/admin/plugins").status_code == 200
        assert admin.delete(f"/api/images/{sha}", params={"hard": "true"}).status_code == 200
        # The admin token is an admin credential in this mode too.
        assert admin.get("/api/admin/users", headers=bearer(ADMIN_TOKEN)).status_code == 200
        entries = admin.get("/api/admin/audit").json()["entries"]
        actions = {(e["action"], e["actor"]) for e in entries}
        assert ("image_hard_deleted", "alice") in actions
        assert ("login", "erin") in actions


def test_created_by_is_recorded(server: ServerProcess, data_dir: Path) -> None:
    import sqlite3

    with closing(login(server, "erin")) as editor:
        sha = upload(editor, 3).json()["sha256"]
        editor.post(f"/api/images/{sha}/descriptions", json={"method": "human", "content": "y"})
    db = sqlite3.connect(data_dir / "imgdex.db")
    try:
        assert db.execute("SELECT created_by FROM images WHERE sha256 = ?", (sha,)).fetchone() == (
            "erin",
        )
        row = db.execute("SELECT created_by FROM descriptions WHERE image_sha256 = ?", (sha,))
        assert row.fetchone() == ("erin",)
    finally:
        db.close()


def test_keys_scopes_revocation_and_query_string(server: ServerProcess) -> None:
    with closing(login(server, "erin")) as editor, server.client() as anon:
        # A key never exceeds its owner's role.
        r = editor.post("/api/keys", json={"name": "too much", "scopes": ["admin"]})
        assert r.status_code == 403
        key = new_key(editor, ["read"])
        secret = str(key["key"])
        r = anon.post("/api/search/text", json={"query": "blue"}, headers=bearer(secret))
        assert r.status_code == 200, r.text
        r = upload(anon, 4, headers=bearer(secret))
        assert r.status_code == 403
        listed = editor.get("/api/keys").json()["keys"]
        assert [k["id"] for k in listed] == [key["id"]] and "key" not in listed[0]
        # In a query string: refused, and the answer says why.
        r = anon.get("/api/images", params={"api_key": secret})
        assert r.status_code == 400 and r.json()["error"] == "key_in_query"
        assert "Authorization" in r.json()["detail"]
        # Revoked: refused at once.
        assert editor.delete(f"/api/keys/{key['id']}").status_code == 200
        r = anon.get("/api/images", headers=bearer(secret))
        assert r.status_code == 401
        audit = anon.get("/api/admin/audit", headers=bearer(ADMIN_TOKEN)).json()["entries"]
        assert {"key_created", "key_revoked"} <= {e["action"] for e in audit}


def test_expired_key_is_refused(server: ServerProcess) -> None:
    with closing(login(server, "victor")) as viewer, server.client() as anon:
        expiry = datetime.now(UTC) + timedelta(seconds=3)
        key = str(new_key(viewer, ["read"], expires_at=expiry.isoformat())["key"])
        r = anon.get("/api/images", headers=bearer(key))
        assert r.status_code == 200 or datetime.now(UTC) >= expiry, r.text  # a slow machine
        time.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()) + 0.5)
        assert anon.get("/api/images", headers=bearer(key)).status_code == 401


def test_csrf_applies_to_cookie_sessions(server: ServerProcess) -> None:
    with closing(login(server, "erin")) as editor:
        sha = upload(editor, 5).json()["sha256"]
        token = editor.headers.pop("X-CSRFToken")
        body = {"method": "human", "content": "z"}
        r = editor.post(f"/api/images/{sha}/descriptions", json=body)
        assert r.status_code == 403 and "CSRF" in r.json()["detail"]
        r = editor.post(
            f"/api/images/{sha}/descriptions", json=body, headers={"X-CSRFToken": token}
        )
        assert r.status_code == 201
        # Logged out: the cookie no longer works.
        assert editor.post("/api/auth/logout", headers={"X-CSRFToken": token}).status_code == 200
        assert editor.get("/api/images").status_code == 401


def test_repeated_bad_logins_get_429(server: ServerProcess) -> None:
    with server.client() as client:
        bad = {"username": "victor", "password": "wrong-password"}
        codes = [client.post("/api/auth/login", json=bad).status_code for _ in range(5)]
        assert codes == [401] * 5
        r = client.post(
            "/api/auth/login", json={"username": "victor", "password": PASSWORDS["victor"]}
        )
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) > 0 and r.json()["error"] == "too_many_requests"
        # Unknown users get the same answer as a wrong password.
        r = client.post("/api/auth/login", json={"username": "nobody", "password": "whatever1"})
        assert r.status_code == 401 and r.json()["detail"] == "wrong username or password"


def test_html_responses_carry_security_headers(server: ServerProcess) -> None:
    with server.client() as client:
        r = client.get("/docs")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp.split("style")[0]
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"]
        spec = client.get("/docs/openapi.json").json()
        assert set(spec["components"]["securitySchemes"]) == {"bearer", "cookie"}
        upload_op = spec["paths"]["/api/images"]["post"]
        assert {"401", "403"} <= set(upload_op["responses"]) and "'write'" in upload_op[
            "description"
        ]
        assert spec["paths"]["/health"]["get"]["security"] == [{}]


def test_cors_origins(tmp_path: Path) -> None:
    from litestar.testing import TestClient

    from imgdex.testing import toy_plugins

    for origins, allowed in (((), False), (("https://photos.example",), True)):
        config = make_config(tmp_path / str(allowed), server={"cors_origins": list(origins)})
        app = create_app(config, plugins=toy_plugins(), entry_points=False, preload=False)
        with TestClient(app) as client:
            r = client.options(
                "/api/images",
                headers={
                    "Origin": "https://photos.example",
                    "Access-Control-Request-Method": "POST",
                },
            )
            got = r.headers.get("access-control-allow-origin")
            assert (got == "https://photos.example") is allowed, r.headers


def test_no_secret_is_stored_in_plain(server: ServerProcess, data_dir: Path) -> None:
    with closing(login(server, "alice")) as admin:
        key = str(new_key(admin, ["read", "admin"])["key"])
        assert admin.get("/api/admin/users", headers=bearer(key)).status_code == 200
    secrets = [key.encode(), *(p.encode() for p in PASSWORDS.values())]
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert any(p.name.startswith("imgdex.db") for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret not in data, path.name


def test_sessions_end_when_idle_or_expired(tmp_path: Path) -> None:
    data = tmp_path / "data"
    made = cli(data, "users", "create", "sam", "--password-stdin", stdin="sam-Secret-pw\n")
    assert made.returncode == 0, made.stderr
    config = write_config(tmp_path / "c.yaml", data, session_lifetime=6, session_idle_timeout=3)
    server = ServerProcess(config).start()

    def session() -> dict[str, str]:
        with server.client() as client:
            body = {"username": "sam", "password": "sam-Secret-pw"}
            r = client.post("/api/auth/login", json=body)
            assert r.status_code == 200
        # Sent by hand: the server itself must refuse an old cookie (a browser drops an
        # expired one, a stolen one is replayed).
        return {"Cookie": f"imgdex_session={r.cookies['imgdex_session']}"}

    try:
        with server.client() as client:
            cookie = session()
            for _ in range(8):  # in use for longer than the idle timeout: still valid
                assert client.get("/api/images", headers=cookie).status_code == 200
                time.sleep(0.5)
            time.sleep(3.5)  # idle
            r = client.get("/api/images", headers=cookie)
            assert r.status_code == 401 and "expired" in r.json()["detail"]

            cookie, start = session(), time.monotonic()
            while client.get("/api/images", headers=cookie).status_code == 200:
                assert time.monotonic() - start < 9, "the session outlived its lifetime"
                time.sleep(0.5)
            assert time.monotonic() - start > 5.5
    finally:
        server.stop()


def test_open_mode_refuses_a_public_address(tmp_path: Path) -> None:
    r = cli(tmp_path / "data", "serve", "--host", "0.0.0.0", "--port", "1")
    assert r.returncode == 2
    assert "imgdex users create" in r.stderr and "auth" in r.stderr


def test_admin_manages_users_and_sessions(server: ServerProcess, data_dir: Path) -> None:
    with closing(login(server, "alice")) as admin, server.client() as anon:
        r = admin.post(
            "/api/admin/users", json={"username": "tess", "password": "short", "role": "viewer"}
        )
        assert r.status_code == 400 and r.json()["error"] == "weak_password"
        body = {"username": "tess", "password": "tess-Secret-pw", "role": "viewer"}
        assert admin.post("/api/admin/users", json=body).status_code == 201
        assert admin.post("/api/admin/users", json=body).status_code == 409
        r = admin.patch("/api/admin/users/alice", json={"role": "editor"})
        assert r.status_code == 409 and r.json()["error"] == "last_admin"
        login_body = {"username": "tess", "password": "tess-Secret-pw"}
        tess = server.client()
        with tess:
            r = tess.post("/api/auth/login", json=login_body)
            assert r.status_code == 200 and r.json()["role"] == "viewer"
            csrf = {"X-CSRFToken": r.json()["csrf_token"]}
            sessions = tess.get("/api/auth/sessions").json()["sessions"]
            assert len(sessions) == 1 and "imgdex_session" not in str(sessions)
            r = admin.patch("/api/admin/users/tess", json={"role": "editor"})
            assert r.status_code == 200 and r.json()["role"] == "editor"
            assert upload(tess, 7, headers=csrf).status_code == 201  # the new role, at once
            assert admin.patch("/api/admin/users/tess", json={"disabled": True}).status_code == 200
            assert tess.get("/api/images").status_code == 401  # sessions ended
            r = anon.post("/api/auth/login", json=login_body)
            assert r.status_code == 401
        users = {u["username"]: u for u in admin.get("/api/admin/users").json()["users"]}
        assert users["tess"]["disabled"] and users["tess"]["role"] == "editor"
        assert "password" not in str(users)
        audit = admin.get("/api/admin/audit", params={"action": "role_changed"}).json()
        assert [(e["actor"], e["target"]) for e in audit["entries"]][:1] == [("alice", "tess")]
    # The CLI sees and changes the same accounts.
    r = cli(data_dir, "users", "list")
    assert r.returncode == 0 and re.search(r"tess\s+editor\s+disabled", r.stdout), r.stdout
    r = cli(
        data_dir, "users", "reset-password", "tess", "--password-stdin", stdin="tess-New-pw-9\n"
    )
    assert r.returncode == 0, r.stderr
    r = cli(data_dir, "users", "disable", "tess", "--enable")
    assert r.returncode == 0
    with server.client() as tess:
        body = {"username": "tess", "password": "tess-New-pw-9"}
        assert tess.post("/api/auth/login", json=body).status_code == 200


def test_import_to_a_users_server_needs_a_write_key(
    server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        (folder / f"{i}.png").write_bytes(image_bytes("green", pattern=20 + i))
    args = ["import", str(folder), "--server", server.url, "--quiet"]
    r = cli(tmp_path / "unused", *args)
    assert r.returncode == 1 and "IMGDEX_API_KEY" in r.stderr
    with closing(login(server, "erin")) as editor:
        read_key = str(new_key(editor, ["read"])["key"])
        write_key = str(new_key(editor, ["read", "write"])["key"])
    monkeypatch.setenv("IMGDEX_API_KEY", read_key)
    r = cli(tmp_path / "unused", *args)
    assert r.returncode == 1 and "write" in r.stderr
    monkeypatch.setenv("IMGDEX_API_KEY", write_key)
    r = cli(tmp_path / "unused", *args)
    assert r.returncode == 0 and "2 added" in r.stdout, r.stdout + r.stderr


def test_session_cookie_is_secure_over_https(tmp_path: Path) -> None:
    from litestar.testing import TestClient

    from imgdex.testing import toy_plugins

    config = make_config(tmp_path, auth={"mode": "users"})
    app = create_app(config, plugins=toy_plugins(), entry_points=False, preload=False)
    body = {"username": "hana", "password": "hana-Secret-pw"}
    for base, secure in (("http://testserver.local", False), ("https://testserver.local", True)):
        with TestClient(app, base_url=base) as client:
            if not secure:
                app.state.auth.create_user("hana", body["password"], "viewer", None)
            r = client.post("/api/auth/login", json=body)
            assert r.status_code == 200
            (cookie,) = [c for c in r.headers.get_list("set-cookie") if "imgdex_session" in c]
            assert ("Secure" in cookie) is secure and "HttpOnly" in cookie
