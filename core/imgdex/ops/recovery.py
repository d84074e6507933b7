"""Start-up recovery: the catalog made to agree with the blob store after a kill.

Run in the background after start: finishes hard deletes interrupted by a kill,
removes staging leftovers, re-registers images whose files were stored but whose row was
never committed (a kill between the two), and marks images whose original file has
disappeared as failed. The server takes uploads and deletes meanwhile, and an upload
stores its files before its row: each image is looked at again under its lock (which
uploads and deletes hold from their first look to their commit), so an upload in
flight is never taken for a kill's leftovers. (Indexes are *reconciled* with the
catalog when they are opened: `imgdex.index.IndexManager.reconcile`; the glossary in
docs/architecture.md has both.)
"""

from __future__ import annotations

import logging

from imgdex.blobs import BlobStore
from imgdex.catalog import Catalog
from imgdex.config import ImagesConfig
from imgdex.errors import ImgdexError
from imgdex.ids import sha256_hex
from imgdex.imaging import decode_image
from imgdex.ops.locks import ImageLocks
from imgdex.pools import Wakeup
from imgdex.registry import Registry

__all__ = ["recover_storage"]

log = logging.getLogger(__name__)


def recover_storage(
    images: ImagesConfig,
    catalog: Catalog,
    blobs: BlobStore,
    registry: Registry,
    wakeup: Wakeup,
    locks: ImageLocks,
) -> dict[str, int]:
    report = {
        "tmp_removed": blobs.clean_tmp() + blobs.clean_stray_tmp(),
        "deletes_finished": 0,
        "recovered": 0,
        "orphans_removed": 0,
        "missing_files": 0,
    }
    for id_ in blobs.trashed_ids():
        with locks.of(id_):
            if catalog.get_image(id_) is not None:
                with catalog.transaction() as db:
                    catalog.delete_image_rows(db, id_)
                report["deletes_finished"] += 1
    blobs.empty_trash()

    known = catalog.all_image_ids()
    for id_ in list(blobs.list_ids()):
        if id_ in known:
            known.discard(id_)
            continue
        with locks.of(id_):
            if catalog.get_image(id_) is None:
                _recover(images, catalog, blobs, registry, id_, report)
    blobs.empty_trash()

    # Whatever is left in `known` had a catalog row but no files.
    for id_ in sorted(known):
        with locks.of(id_):
            row = catalog.get_image(id_)
            if row is None or row.is_deleted or row.status == "failed":
                continue
            if blobs.original_of(id_) is None:
                catalog.set_status(id_, "failed", "original file missing from storage")
                report["missing_files"] += 1
    if any(report.values()):
        log.info("storage recovered: %s", report)
    if report["recovered"]:
        wakeup.ring()
    return report


def _recover(
    images: ImagesConfig,
    catalog: Catalog,
    blobs: BlobStore,
    registry: Registry,
    id_: str,
    report: dict[str, int],
) -> None:
    """Register the stored image `id_`, which has no row (under its lock)."""
    filename = blobs.original_of(id_)
    try:
        if filename is None:
            raise ValueError("no single original file")
        data = blobs.read(id_, filename)
        full = sha256_hex(data)
        if not full.startswith(id_):
            raise ValueError("content does not match its id")
        decoded = decode_image(data, images)
    except (OSError, ValueError, ImgdexError) as exc:
        log.warning("removing unusable orphan image %s: %s", id_, exc)
        blobs.trash_image(id_)
        report["orphans_removed"] += 1
        return
    assert filename is not None
    with catalog.transaction() as db:
        catalog.insert_image(
            db,
            id_=id_,
            full=full,
            width=decoded.width,
            height=decoded.height,
            file_size=len(data),
            fmt=decoded.format,
            filename=filename,
            source=None,
            status="pending",
        )
        registry.queue_image_jobs(db, id_)
    report["recovered"] += 1
