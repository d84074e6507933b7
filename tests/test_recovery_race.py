"""Start-up recovery runs while the server already takes uploads: an upload stores its
files before its row, so recovery must not take an upload in flight for a kill's
leftovers (it did: the upload then failed with a 500, UNIQUE constraint on images,
seen in a full test run on a loaded machine)."""

from __future__ import annotations

import threading
from typing import Any

from litestar.testing import TestClient

from imgdex.ids import image_id, sha256_hex
from imgdex.ops.recovery import recover_storage
from imgdex.runtime import Runtime
from imgdex.testing import image_bytes


def settled(client: TestClient[Any]) -> Runtime:
    """The app's runtime once its start-up recovery has ended: were it still listing
    files, it would register a test's files before the test's own recovery does."""
    runtime: Runtime = client.app.state.runtime
    assert runtime.recovered.wait(60)
    return runtime


def recover(runtime: Runtime) -> dict[str, int]:
    """Storage recovery, as the app runs it at start."""
    return recover_storage(
        runtime.config.images,
        runtime.catalog,
        runtime.blobs,
        runtime.registry,
        runtime.wakeup,
        runtime.locks,
    )


def test_recovery_waits_for_an_upload_in_flight(imgdex_client: TestClient[Any]) -> None:
    runtime = settled(imgdex_client)
    data = image_bytes("green", pattern=3)
    full = sha256_hex(data)
    id_ = image_id(full)
    report: dict[str, int] = {}

    def recover_in_background() -> None:
        report.update(recover(runtime))

    # An upload between storing its files and committing its row, as `Ingest` does it.
    with runtime.locks.of(id_):
        runtime.blobs.put_image(id_, "image.png", data, b"thumbnail")
        recovery = threading.Thread(target=recover_in_background)
        recovery.start()
        recovery.join(1.0)
        assert recovery.is_alive(), "recovery waits for the image's lock"
        with runtime.catalog.transaction() as db:
            runtime.catalog.insert_image(
                db, id_=id_, full=full, width=64, height=48, file_size=len(data), fmt="PNG",
                filename="image.png", source="camera", status="pending",
            )  # fmt: skip
    recovery.join(30)
    assert report["recovered"] == 0 and report["orphans_removed"] == 0
    row = runtime.catalog.get_image(id_)
    assert row is not None and row.source == "camera", "the upload's row, not a recovered one"


def test_recovery_still_registers_a_killed_uploads_files(imgdex_client: TestClient[Any]) -> None:
    runtime = settled(imgdex_client)
    data = image_bytes("blue", pattern=5)
    id_ = image_id(sha256_hex(data))
    runtime.blobs.put_image(id_, "image.png", data, b"thumbnail")  # no row: a kill came
    report = recover(runtime)
    assert report["recovered"] == 1
    r = imgdex_client.get(f"/api/images/{id_}")
    assert r.status_code == 200, r.text
