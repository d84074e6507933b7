"""Photo facts: an image file's metadata (`imgdex.metadata`) made into catalog columns,
and catalog rows made into the image info clients read.

Reading never fails an upload: anything unreadable is stored as "nothing known".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
from PIL import Image

from imgdex.catalog import ImageRow
from imgdex.catalog.images import PhotoFacts
from imgdex.metadata import PhotoMetadata, read_metadata
from imgdex.schemas import CameraOut, DescriptionOut, GpsOut, ImageOut

__all__ = ["facts_of", "image_out"]

log = logging.getLogger(__name__)


def facts_of(data: bytes | Path) -> PhotoFacts | None:
    """What the file says about the photo, ready for the catalog; None when unreadable."""
    try:
        if isinstance(data, Path):
            with Image.open(data) as im:  # only the header and metadata are read
                meta = read_metadata(im)
        else:
            meta = read_metadata(data)
        return _facts(meta)
    except Exception:  # hostile metadata must never fail an upload or a backfill
        log.warning("unreadable photo metadata; stored without it", exc_info=True)
        return None


def _facts(meta: PhotoMetadata) -> PhotoFacts:
    camera, gps = meta.camera, meta.gps
    details = {k: v for k, v in msgspec.to_builtins(meta.exif).items() if v is not None}
    return PhotoFacts(
        taken_at=meta.taken_at,
        # The wall-clock part, which filters and sorting compare (offsets are rare).
        taken_local=meta.taken_at[:19] if meta.taken_at else None,
        camera_make=camera.make if camera else None,
        camera_model=camera.model if camera else None,
        camera_lens=camera.lens if camera else None,
        gps_lat=gps.lat if gps else None,
        gps_lon=gps.lon if gps else None,
        gps_alt=gps.alt if gps else None,
        exif=msgspec.json.encode(details).decode() if details else None,
    )


def image_out(
    row: ImageRow,
    descriptions: Sequence[DescriptionOut] = (),
    indexes: Sequence[str] = (),
    tags: Sequence[str] = (),
) -> ImageOut:
    """The image info of one catalog row."""
    camera = None
    if row.camera_make or row.camera_model or row.camera_lens:
        camera = CameraOut(make=row.camera_make, model=row.camera_model, lens=row.camera_lens)
    gps = None
    if row.gps_lat is not None and row.gps_lon is not None:
        gps = GpsOut(lat=row.gps_lat, lon=row.gps_lon, alt=row.gps_alt)
    exif: dict[str, Any] = {}
    if row.exif:
        try:
            exif = msgspec.json.decode(row.exif)
        except msgspec.DecodeError:
            exif = {}
    return ImageOut(
        sha256=row.sha256,
        width=row.width,
        height=row.height,
        file_size=row.file_size,
        format=row.format,
        created_at=row.created_at,
        source=row.source,
        status=row.status,
        is_deleted=row.is_deleted,
        deleted_at=row.deleted_at,
        filename=row.original_name or row.filename,
        error=row.error,
        taken_at=row.taken_at,
        camera=camera,
        gps=gps,
        exif=exif,
        favorite=bool(row.favorite),
        rating=int(row.rating),
        tags=list(tags),
        indexes=list(indexes),
        descriptions=list(descriptions),
    )
