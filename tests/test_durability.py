"""Crash safety and restart consistency: real processes killed with SIGKILL."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import TestClient

from imgdex.testing import image_bytes, make_config

from .conftest import ADMIN, wait_for
from .serverproc import ServerProcess


def write_config(tmp_path: Path) -> Path:
    config = make_config(tmp_path / "data", index={"save_interval": 3600.0})
    path = tmp_path / "imgdex.yaml"
    path.write_bytes(msgspec.yaml.encode(msgspec.to_builtins(config)))
    return path


def stored_dirs(data: Path) -> set[str]:
    storage = data / "storage"
    return {
        a.name + b.name + c.name
        for a in storage.glob("[0-9a-f][0-9a-f]")
        for b in a.iterdir()
        for c in b.iterdir()
    }


@pytest.mark.slow
def test_sigkill_during_uploads_loses_nothing_acknowledged(tmp_path: Path) -> None:
    config_file = write_config(tmp_path)
    server = ServerProcess(config_file).start()
    acknowledged: dict[str, bytes] = {}
    described: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def worker(start: int) -> None:
        with server.client() as http:
            for n in range(start, start + 10_000, 4):
                if stop.is_set():
                    return
                payload = image_bytes(
                    (n * 53 % 256, n * 17 % 256, n * 29 % 256), (96, 64), pattern=n % 7 + 1
                )
                try:
                    r = http.post("/api/images", files={"file": (f"{n}.png", payload, "image/png")})
                    if r.status_code in (200, 201):
                        sha = r.json()["sha256"]
                        with lock:
                            acknowledged[sha] = payload
                        d = http.post(
                            f"/api/images/{sha}/descriptions",
                            json={"method": "human", "content": f"photo number {n}"},
                        )
                        if d.status_code == 201:
                            with lock:
                                described.add(sha)
                except httpx.HTTPError:
                    return

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(worker, i) for i in range(4)]
        wait_for(lambda: len(described) >= 40, timeout=120)
        server.kill()  # mid-flight: requests are being served right now
        stop.set()
        for f in futures:
            f.result()
    assert len(acknowledged) >= 40

    server = ServerProcess(config_file).start()
    try:
        with server.client() as http:
            data = tmp_path / "data"
            for sha, payload in acknowledged.items():
                r = http.get(f"/api/images/{sha}")
                assert r.status_code == 200, sha
                assert http.get(f"/api/images/{sha}/file").content == payload
            for sha in described:
                texts = [d["content"] for d in http.get(f"/api/images/{sha}/descriptions").json()]
                assert len(texts) == 1 and texts[0].startswith("photo number")

            # Start-up reconciliation: catalog and disk agree, nothing left half-written.
            def consistent() -> bool:
                total = http.get("/api/images", params={"include_deleted": True}).json()["total"]
                return total == len(stored_dirs(data)) and not list(
                    (data / "storage" / ".tmp").iterdir()
                )

            wait_for(consistent)
            # Every image is searchable by itself after the restart (index rebuilt from .npy).
            wait_for(
                lambda: http.get("/api/images", params={"status": "pending"}).json()["total"] == 0
            )
            stats = http.get("/api/stats").json()
            assert stats["indexes"]["toy_color_v1"] == stats["image_count"]
            for payload in list(acknowledged.values())[:10]:
                r = http.post(
                    "/api/search/image",
                    files={"file": ("q.png", payload, "image/png")},
                    data={"index": "toy_color_v1", "top_k": "1"},
                )
                assert r.json()["results"][0]["score"] > 0.999
    finally:
        server.stop()


def test_restart_keeps_everything(tmp_path: Path, imgdex_app_factory: Any) -> None:
    config = make_config(tmp_path / "data")
    with TestClient(imgdex_app_factory(config)) as client:
        shas = []
        for i, color in enumerate(["red", "green", "blue"]):
            r = client.post(
                "/api/images", files={"file": ("a.png", image_bytes(color, pattern=i), "image/png")}
            )
            shas.append(r.json()["sha256"])
        client.post(
            f"/api/images/{shas[0]}/descriptions", json={"method": "human", "content": "red barn"}
        )
        client.delete(f"/api/images/{shas[2]}")
        before = client.post("/api/search/text", json={"query": "red barn", "top_k": 5}).json()[
            "results"
        ]
    with TestClient(imgdex_app_factory(config)) as client:
        after = client.post("/api/search/text", json={"query": "red barn", "top_k": 5}).json()[
            "results"
        ]
        assert [r["sha256"] for r in after] == [r["sha256"] for r in before]
        assert shas[2] not in [r["sha256"] for r in after]
        assert client.get(f"/api/images/{shas[2]}").json()["is_deleted"] == 1


def test_lost_index_files_are_rebuilt_from_vectors(tmp_path: Path, imgdex_app_factory: Any) -> None:
    config = make_config(tmp_path / "data")
    with TestClient(imgdex_app_factory(config)) as client:
        shas = [
            client.post(
                "/api/images", files={"file": ("a.png", image_bytes(c, pattern=i), "image/png")}
            ).json()["sha256"]
            for i, c in enumerate(["red", "green", "blue", "yellow"])
        ]
    index_dir = tmp_path / "data" / "vector_index" / "toy_color_v1"
    for f in index_dir.iterdir():
        if f.name != "meta.json":
            f.unlink()
    with TestClient(imgdex_app_factory(config)) as client:
        r = client.post(
            "/api/search/image",
            files={"file": ("q.png", image_bytes("blue", pattern=2), "image/png")},
        ).json()
        assert r["results"][0]["sha256"] == shas[2]
        assert r["results"][0]["score"] > 0.999
        assert len(r["results"]) == 4


def test_interrupted_writes_are_reconciled(tmp_path: Path, imgdex_app_factory: Any) -> None:
    """A kill between the directory rename and the catalog commit, and one mid hard-delete."""
    from imgdex.blobs import LocalBlobStore

    config = make_config(tmp_path / "data")
    with TestClient(imgdex_app_factory(config)) as client:
        keep = client.post(
            "/api/images", files={"file": ("k.png", image_bytes("green"), "image/png")}
        ).json()
        doomed = client.post(
            "/api/images", files={"file": ("d.png", image_bytes("red"), "image/png")}
        ).json()
    storage = LocalBlobStore(tmp_path / "data" / "storage")
    # 1. Files of an image whose catalog commit never happened.
    orphan = image_bytes("blue", (120, 80), "JPEG")
    import hashlib

    orphan_id = hashlib.sha256(orphan).hexdigest()[:32]
    storage.put_image(orphan_id, "image.jpg", orphan, image_bytes("blue", (12, 8), "JPEG"))
    # 2. A staging leftover and a directory with garbage under a well-formed id.
    (storage.tmp / "deadbeef.partial").mkdir()
    junk = storage.image_dir("f" * 32)
    junk.mkdir(parents=True)
    (junk / "image.png").write_bytes(b"not the right bytes")
    # 3. A hard delete killed after moving the files to the trash.
    storage.trash_image(doomed["sha256"])

    with TestClient(imgdex_app_factory(config)) as client:

        def settled() -> bool:
            return client.get(f"/api/images/{orphan_id}").status_code == 200 and not list(
                storage.tmp.iterdir()
            )

        wait_for(settled)
        assert client.get(f"/api/images/{orphan_id}").json()["width"] == 120
        assert client.get(f"/api/images/{doomed['sha256']}").status_code == 404
        assert not junk.exists()
        assert client.get(f"/api/images/{keep['sha256']}").status_code == 200
        # The recovered image gets its vectors from the enricher and becomes ready.
        wait_for(lambda: client.get(f"/api/images/{orphan_id}").json()["status"] == "ready")


def test_parallel_uploads_of_the_same_file_store_it_once(tmp_path: Path) -> None:
    server = ServerProcess(write_config(tmp_path)).start()
    try:
        payload = image_bytes("orange", (200, 150), "JPEG")

        def send(_: int) -> tuple[int, str]:
            with server.client() as http:
                r = http.post("/api/images", files={"file": ("same.jpg", payload, "image/jpeg")})
                return r.status_code, r.json()["sha256"]

        with ThreadPoolExecutor(12) as pool:
            outcomes = list(pool.map(send, range(24)))
        statuses = sorted(s for s, _ in outcomes)
        assert statuses.count(201) == 1 and statuses.count(200) == 23
        assert len({sha for _, sha in outcomes}) == 1
        with server.client() as http:
            assert http.get("/api/images").json()["total"] == 1
            assert http.get("/api/stats").json()["indexes"]["toy_color_v1"] == 1
        assert len(stored_dirs(tmp_path / "data")) == 1
    finally:
        server.stop()


def catalog_rows(data: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(data / "imgdex.db") as db:
        return db.execute(sql, params).fetchall()


@pytest.mark.slow
def test_sigkill_during_backfill_and_upgrade_finishes_every_job_once(tmp_path: Path) -> None:
    """Kill the server again and again while background jobs run (a backfill of a newly
    enabled plugin, then a model upgrade), with uploads coming in: in the end every
    image is ready, every index holds exactly one vector per (image, method), and no
    job is left."""
    data = tmp_path / "data"

    def config_file(color_version: str, words_delay: float, color_delay: float) -> Path:
        config = make_config(
            data,
            index={"save_interval": 3600.0},
            worker={"batch_size": 4, "retry_delay": 0.1},
            plugins={
                "toy_color": {"version": color_version, "delay": color_delay},
                "toy_words": {"delay": words_delay},
            },
        )
        path = tmp_path / f"imgdex-{color_version}-{words_delay}.yaml"
        path.write_bytes(msgspec.yaml.encode(msgspec.to_builtins(config)))
        return path

    def up(http: httpx.Client, n: int) -> str:
        payload = image_bytes((n * 53 % 256, n * 17 % 256, n * 29 % 256), (64, 48), pattern=n)
        r = http.post("/api/images", files={"file": (f"{n}.png", payload, "image/png")})
        assert r.status_code in (200, 201), r.text
        sha = str(r.json()["sha256"])
        r = http.post(
            f"/api/images/{sha}/descriptions",
            json={"method": "human", "content": f"photo number {n}"},
        )
        assert r.status_code == 201, r.text
        return sha

    # A library of 60 described images, with the words plugin disabled.
    first = config_file("1", 0.0, 0.0)
    server = ServerProcess(first).start()
    with server.client() as http:
        http.post("/api/admin/plugins/toy_words/disable", headers=ADMIN).raise_for_status()
        shas = {up(http, n) for n in range(1, 61)}
        # Enabling it queues a backfill of 60 descriptions, slowed to 50 ms each.
        http.post("/api/admin/plugins/toy_words/enable", headers=ADMIN).raise_for_status()
    server.kill()

    slow_words = config_file("1", 0.05, 0.0)
    n = 100
    left: list[int] = []
    for _ in range(3):  # killed in the middle of the backfill, three times
        server = ServerProcess(slow_words).start()
        with server.client() as http:
            for _ in range(3):
                shas.add(up(http, n))
                n += 1
            time.sleep(0.4)
        server.kill()
        left.append(catalog_rows(data, "SELECT COUNT(*) FROM jobs")[0][0])
    assert max(left) > 0  # the kills did land in the middle of the backfill

    # A model upgrade (toy_color v1 -> v2, slowed), killed twice while it builds.
    upgrade = config_file("2", 0.0, 0.06)
    for _ in range(2):
        server = ServerProcess(upgrade).start()
        with server.client() as http:
            shas.add(up(http, n))
            n += 1
            body = http.post("/api/search/text", json={"query": "photo number 5"}).json()
            assert body["results"], body
            time.sleep(0.5)
        server.kill()
        roles = dict(catalog_rows(data, "SELECT name, role FROM index_roles"))
        assert roles["toy_color_v2"] == "building"  # killed while the new index builds

    server = ServerProcess(upgrade).start()
    try:
        with server.client() as http:

            def settled() -> bool:
                listed = {i["index"]: i for i in http.get("/api/indexes").json()["indexes"]}
                return (
                    listed["toy_color_v2"]["role"] == "active"
                    and not catalog_rows(data, "SELECT 1 FROM jobs")
                    and http.get("/api/images", params={"status": "pending"}).json()["total"] == 0
                )

            wait_for(settled, timeout=120)
            images = http.get("/api/images", params={"limit": 500}).json()
            assert images["total"] == len(shas) == len(stored_dirs(data))
            assert {i["sha256"] for i in images["images"]} == shas
            assert {i["status"] for i in images["images"]} == {"ready"}
            # Exactly one vector per (image, method) in each index that is written.
            for index, method in (("toy_color_v2", "image"), ("toy_words_v1", "human")):
                rows = catalog_rows(
                    data,
                    "SELECT image_sha256 FROM vector_entries WHERE index_name = ? AND method = ?",
                    (index, method),
                )
                assert sorted(r[0] for r in rows) == sorted(shas), index
            stats = http.get("/api/stats").json()
            assert stats["indexes"]["toy_color_v2"] == len(shas)
            assert stats["indexes"]["toy_words_v1"] == len(shas)
            report = http.get("/api/admin/jobs", headers=ADMIN).json()
            assert report["jobs"] == {} and report["errors"] == {}
            hits = http.post(
                "/api/search/text", json={"query": "photo number 107", "index": "toy_words_v1"}
            ).json()
            texts = [m["matched_text"] for m in hits["results"][0]["matches"]]
            assert "photo number 107" in texts
    finally:
        server.stop()


@pytest.mark.slow
def test_sigkill_during_tags_albums_and_restores_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    """Tags, album additions, soft deletes and restores acknowledged before a SIGKILL are
    all there after the restart; a restored image is searchable, a trashed one is not."""
    config_file = write_config(tmp_path)
    server = ServerProcess(config_file).start()
    images: list[list[str]] = [[], [], [], []]
    payloads: dict[str, bytes] = {}
    with server.client() as http:
        for n in range(24):
            payload = image_bytes((n * 41 % 256, n * 13 % 256, n * 97 % 256), (80, 60), pattern=n)
            r = http.post("/api/images", files={"file": (f"{n}.png", payload, "image/png")})
            images[n % 4].append(r.json()["sha256"])
            payloads[r.json()["sha256"]] = payload
        albums = [http.post("/api/albums", json={"name": f"w{i}"}).json()["id"] for i in range(4)]
    tags: dict[str, set[str]] = {sha: set() for sha in payloads}
    in_album: dict[str, int] = {}
    deleted: dict[str, bool] = {sha: False for sha in payloads}
    uncertain: set[str] = set()  # the image whose request was in flight at the kill
    done = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def worker(w: int) -> None:
        with server.client() as http:
            for step in range(10_000):
                sha = images[w][step % len(images[w])]
                if stop.is_set():
                    return
                try:
                    match step // len(images[w]) % 4:
                        case 0:
                            tag = f"w{w} step {step}"
                            r = http.post(f"/api/images/{sha}/tags", json={"tags": [tag]})
                            assert r.status_code == 200, r.text
                            tags[sha].add(tag)
                        case 1:
                            r = http.post(f"/api/albums/{albums[w]}/images", json={"images": [sha]})
                            assert r.status_code == 200, r.text
                            in_album[sha] = albums[w]
                        case 2:
                            assert http.delete(f"/api/images/{sha}").status_code == 200
                            deleted[sha] = True
                        case 3:
                            assert http.post(f"/api/images/{sha}/restore").status_code == 200
                            deleted[sha] = False
                    with lock:
                        done[0] += 1
                except httpx.HTTPError:
                    uncertain.add(sha)
                    return

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(worker, i) for i in range(4)]
        wait_for(lambda: done[0] >= 150, timeout=120)
        server.kill()
        stop.set()
        for f in futures:
            f.result()

    server = ServerProcess(config_file).start()
    try:
        with server.client() as http:
            for sha in payloads:
                info = http.get(f"/api/images/{sha}").json()
                assert tags[sha] <= set(info["tags"]), sha
                if sha in uncertain:
                    continue
                assert info["is_deleted"] == int(deleted[sha]), sha
            for sha, album in in_album.items():
                listed = http.get(
                    "/api/images", params={"album": album, "deleted": "include", "limit": 100}
                ).json()
                assert sha in {i["sha256"] for i in listed["images"]}
            trash = {
                i["sha256"]
                for i in http.get("/api/images", params={"deleted": "only", "limit": 100}).json()[
                    "images"
                ]
            }
            for sha, payload in payloads.items():
                if sha in uncertain:
                    continue
                r = http.post(
                    "/api/search/image",
                    files={"file": ("q.png", payload, "image/png")},
                    data={"index": "toy_color_v1", "top_k": "1"},
                ).json()["results"]
                if deleted[sha]:
                    assert sha in trash and (not r or r[0]["sha256"] != sha)
                else:
                    assert r[0]["sha256"] == sha and r[0]["score"] > 0.999
    finally:
        server.stop()
