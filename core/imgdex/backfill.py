"""Photo metadata for images stored before imgdex read it: a one-shot background task.

New uploads record their metadata as they are stored; the catalog migration that added
the columns left every older image unread (``meta_read = 0``). The background loop reads
those in batches while it has nothing else to do, and ``GET /api/admin/jobs`` reports
the progress under ``metadata``. Each image is one transaction; an unreadable file is
recorded as "nothing known", so the task always ends.
"""

from __future__ import annotations

import logging

from imgdex.blobs import BlobStore
from imgdex.catalog import Catalog
from imgdex.photos import facts_of

__all__ = ["BATCH", "backfill_metadata", "metadata_progress"]

log = logging.getLogger(__name__)

BATCH = 64


def backfill_metadata(catalog: Catalog, blobs: BlobStore, limit: int = BATCH) -> int:
    """Read the metadata of up to `limit` images that lack it; returns how many."""
    rows = catalog.images.unread_metadata(limit)
    for row in rows:
        try:
            data = blobs.read(row.sha256, row.filename)
        except FileNotFoundError:
            data = None
        facts = facts_of(data) if data is not None else None
        with catalog.transaction() as db:
            catalog.images.set_facts(db, row.sha256, facts)
    if rows:
        log.info("read the photo metadata of %d stored images", len(rows))
    return len(rows)


def metadata_progress(catalog: Catalog) -> dict[str, int]:
    """``{"done", "total"}``: images whose metadata has been read, of all."""
    done, total = catalog.images.metadata_progress()
    return {"done": done, "total": total}
