"""Organising a photo library on a real server process: EXIF photos and a HEIC file,
filtered and sorted by date, camera and place; tags, albums, a smart album, the trash."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from imgdex.testing import make_config

from .photos import photo
from .serverproc import ServerProcess


@pytest.mark.slow
def test_a_photo_library_over_http(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data")
    config_file = tmp_path / "imgdex.yaml"
    config_file.write_bytes(msgspec.yaml.encode(msgspec.to_builtins(config)))
    shots = {
        "rome.jpg": photo(taken="2016:08:01 19:00:00", offset="+02:00", make="NIKON CORPORATION",
                          model="NIKON D750", gps=(41.8902, 12.4922, 30.0), color=(220, 60, 20)),
        "oslo.jpg": photo(taken="2020:12:24 15:30:00", make="Canon", model="Canon EOS R6",
                          gps=(59.9139, 10.7522, 5.0), color=(240, 240, 250)),
        "sf.heic": photo(taken="2022:06:10 08:00:00", offset="-07:00", make="Apple",
                         model="iPhone 13", gps=(37.7749, -122.4194, 16.0), color=(30, 40, 220),
                         fmt="HEIF"),
        "scan.jpg": photo(color=(128, 128, 128)),
    }  # fmt: skip
    server = ServerProcess(config_file).start()
    try:
        with server.client() as http:
            ids = {}
            for name, data in shots.items():
                r = http.post(
                    "/api/images", files={"file": (name, data, "application/octet-stream")}
                )
                assert r.status_code == 201, r.text
                ids[name] = r.json()["sha256"]
            sf = http.get(f"/api/images/{ids['sf.heic']}").json()
            assert sf["format"] == "HEIF" and sf["taken_at"] == "2022-06-10T08:00:00-07:00"
            assert sf["camera"]["make"] == "Apple" and sf["gps"]["lon"] == pytest.approx(
                -122.4194, abs=1e-3
            )
            assert http.get(f"/api/images/{ids['sf.heic']}/thumbnail").status_code == 200

            def names(**params: object) -> list[str]:
                r = http.get("/api/images", params=params)  # type: ignore[arg-type]
                assert r.status_code == 200, r.text
                by_id = {v: k for k, v in ids.items()}
                return [by_id[i["sha256"]] for i in r.json()["images"]]

            assert names(sort="taken_at", order="asc") == [
                "rome.jpg",
                "oslo.jpg",
                "sf.heic",
                "scan.jpg",
            ]
            assert names(taken_after="2020-01-01", sort="taken_at") == ["sf.heic", "oslo.jpg"]
            assert names(camera="nikon") == ["rome.jpg"]
            assert names(near="59.9,10.7,25") == ["oslo.jpg"]
            assert names(has_gps="false") == ["scan.jpg"]
            assert names(format="HEIF") == ["sf.heic"]
            assert http.get("/api/images", params={"near": "95,0,1"}).status_code == 400

            http.patch(f"/api/images/{ids['rome.jpg']}", json={"favorite": True, "rating": 5})
            http.post("/api/tags/bulk", json={"images": [ids["rome.jpg"], ids["sf.heic"]],
                                              "add": ["Holiday", "城市"]})  # fmt: skip
            assert sorted(names(tags="holiday,城市")) == ["rome.jpg", "sf.heic"]
            assert names(favorite="true", min_rating=4) == ["rome.jpg"]

            album = http.post("/api/albums", json={"name": "Trips"}).json()["id"]
            http.post(
                f"/api/albums/{album}/images", json={"images": [ids["oslo.jpg"], ids["sf.heic"]]}
            )
            rule = {"filters": {"tags": ["holiday"], "taken_after": "2020-01-01"}}
            smart = http.post("/api/albums", json={"name": "Recent", "smart": rule}).json()["id"]
            page = http.get(f"/api/albums/{album}/images", params={"sort": "taken_at"}).json()
            assert page["total"] == 2 and page["images"][0]["sha256"] == ids["sf.heic"]
            assert [
                i["sha256"] for i in http.get(f"/api/albums/{smart}/images").json()["images"]
            ] == [ids["sf.heic"]]

            assert http.delete(f"/api/images/{ids['sf.heic']}").status_code == 200
            assert names(deleted="only") == ["sf.heic"]
            assert http.get(f"/api/albums/{smart}/images").json()["total"] == 0
            assert http.post(f"/api/images/{ids['sf.heic']}/restore").status_code == 200
            restored = http.get(f"/api/images/{ids['sf.heic']}").json()
            assert restored["tags"] == ["holiday", "城市"] and restored["is_deleted"] == 0
            assert http.get(f"/api/albums/{album}").json()["image_count"] == 2
    finally:
        server.stop()
