"""Start-up reconciliation of the catalog with the files on disk.

Run in the background after start: finishes hard deletes interrupted by a kill,
removes staging leftovers, re-registers image directories that were written but never
committed (a kill between the rename and the catalog commit), and marks images whose
original file has disappeared as failed. Indexes are reconciled when they are opened
(`imgdex.index.IndexManager.reconcile`).
"""

from __future__ import annotations

import logging

from imgdex.errors import ImgdexError
from imgdex.imaging import decode_image
from imgdex.library import Library
from imgdex.storage import sha256_hex

__all__ = ["reconcile_storage"]

log = logging.getLogger(__name__)


def reconcile_storage(library: Library) -> dict[str, int]:
    catalog, storage = library.catalog, library.storage
    report = {
        "tmp_removed": storage.clean_tmp() + storage.clean_stray_tmp(),
        "deletes_finished": 0,
        "recovered": 0,
        "orphans_removed": 0,
        "missing_files": 0,
    }
    for id_ in storage.trashed_ids():
        if catalog.get_image(id_) is not None:
            with catalog.transaction() as db:
                catalog.delete_image_rows(db, id_)
            report["deletes_finished"] += 1
    storage.empty_trash()

    known = catalog.all_image_ids()
    for id_, path in storage.iter_image_dirs():
        if id_ in known:
            known.discard(id_)
            continue
        originals = [p for p in path.iterdir() if p.is_file() and p.name.startswith("image.")]
        try:
            if len(originals) != 1:
                raise ValueError("no single original file")
            data = originals[0].read_bytes()
            full = sha256_hex(data)
            if not full.startswith(id_):
                raise ValueError("content does not match its id")
            decoded = decode_image(data, library.config.images)
        except (OSError, ValueError, ImgdexError) as exc:
            log.warning("removing unusable orphan directory %s: %s", path, exc)
            storage.trash_image(id_)
            report["orphans_removed"] += 1
            continue
        with catalog.transaction() as db:
            catalog.insert_image(
                db,
                id_=id_,
                full=full,
                width=decoded.width,
                height=decoded.height,
                file_size=len(data),
                fmt=decoded.format,
                filename=originals[0].name,
                source=None,
                status="pending",
            )
            library.queue_image_jobs(db, id_)
        report["recovered"] += 1
    storage.empty_trash()

    # Whatever is left in `known` has a catalog row but no directory.
    for id_ in sorted(known):
        row = catalog.get_image(id_)
        if row is not None and not row.is_deleted and row.status != "failed":
            catalog.set_status(id_, "failed", "original file missing from storage")
            report["missing_files"] += 1
    if any(report.values()):
        log.info("storage reconciled: %s", report)
    if report["recovered"]:
        library.on_work()
    return report
