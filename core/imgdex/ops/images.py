"""Reading images: one image with its descriptions, a page of images, a stored file."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

from imgdex.blobs import THUMBNAIL, BlobStore
from imgdex.catalog import Catalog, DescriptionRow, ImageRow
from imgdex.catalog.images import Deleted
from imgdex.errors import NotFound
from imgdex.filters import ImageFilters
from imgdex.ids import check_id
from imgdex.photos import image_out
from imgdex.pools import Pools
from imgdex.schemas import DescriptionOut, ImageListResponse, ImageOut

__all__ = ["ImageReader", "OpenedFile", "description_out", "row_of"]

_READ_WHOLE = 1 << 20  # files up to this size are read in one go (thumbnails, most photos)


@dataclass(frozen=True)
class OpenedFile:
    """A stored file opened for a reply: its bytes (`data`) when small, else the open
    `file`, which whoever sends it closes."""

    row: ImageRow
    size: int
    data: bytes | None = None
    file: BinaryIO | None = None

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def row_of(catalog: Catalog, id_: str) -> ImageRow:
    """The image's catalog row, or 404."""
    row = catalog.get_image(check_id(id_))
    if row is None:
        raise NotFound(f"image {id_} not found", code="image_not_found")
    return row


class ImageReader:
    def __init__(self, catalog: Catalog, blobs: BlobStore, pools: Pools) -> None:
        self._catalog = catalog
        self._blobs = blobs
        self._pools = pools

    async def get_image(self, id_: str) -> ImageOut:
        return await self._pools.run_io(self._image_out, check_id(id_))

    def _image_out(self, id_: str) -> ImageOut:
        row = row_of(self._catalog, id_)
        return image_out(
            row,
            [description_out(d) for d in self._catalog.get_descriptions(id_)],
            sorted(self._catalog.image_indexes(id_)),
            [t.tag for t in self._catalog.tags.tags_of(id_)],
        )

    async def list_images(
        self,
        *,
        offset: int,
        limit: int,
        status: str | None = None,
        source: str | None = None,
        include_deleted: bool = False,
        deleted: Deleted | None = None,
        filters: ImageFilters | None = None,
        sort: str = "created_at",
        order: Literal["asc", "desc"] = "desc",
    ) -> ImageListResponse:
        """A page of images; organise (issue 14): filters, sorting, the trash."""

        def read() -> ImageListResponse:
            rows, total = self._catalog.images.list_images(
                offset=offset,
                limit=limit,
                status=status,
                source=source,
                include_deleted=include_deleted,
                deleted=deleted,
                filters=filters,
                sort=sort,
                order=order,
            )
            tags = self._catalog.tags.tags_of_many(r.sha256 for r in rows)
            images = [image_out(r, tags=tags.get(r.sha256, ())) for r in rows]
            return ImageListResponse(images=images, total=total, offset=offset, limit=limit)

        return await self._pools.run_io(read)

    async def open_file(self, id_: str, kind: str) -> OpenedFile:
        """Open an image's original (``file``) or ``thumbnail`` for reading.

        The file is opened before anything is sent, and the reply reads from that open
        descriptor: a hard delete or re-upload that moves the directory away meanwhile
        cannot break a read in flight, and a file already gone is a 404."""
        return await self._pools.run_io(self._open_file, check_id(id_), kind)

    def _open_file(self, id_: str, kind: str) -> OpenedFile:
        row = row_of(self._catalog, id_)
        if row.is_deleted:
            raise NotFound(f"image {id_} is deleted", code="image_deleted")
        try:
            file = self._blobs.open(id_, row.filename if kind == "file" else THUMBNAIL)
        except FileNotFoundError:
            raise NotFound(
                f"the {kind} of image {id_} is missing on disk", code="file_missing"
            ) from None
        size = os.fstat(file.fileno()).st_size
        if size > _READ_WHOLE:
            return OpenedFile(row=row, size=size, file=file)
        with file:
            data = file.read()
        return OpenedFile(row=row, size=len(data), data=data)

    async def chunks(self, file: BinaryIO, size: int = 256 * 1024) -> AsyncIterator[bytes]:
        """Read an opened file in the io pool, chunk by chunk, and close it."""
        try:
            while chunk := await self._pools.run_io(file.read, size):
                yield chunk
        finally:
            file.close()

    async def descriptions_of(self, ids: Iterable[str]) -> dict[str, list[DescriptionRow]]:
        """The descriptions of several images (none for an unknown id), in one I/O call."""
        wanted = list(ids)

        def read() -> dict[str, list[DescriptionRow]]:
            return {id_: self._catalog.get_descriptions(id_) for id_ in wanted}

        return await self._pools.run_io(read)

    async def get_descriptions(self, id_: str) -> list[DescriptionOut]:
        def read() -> list[DescriptionOut]:
            row_of(self._catalog, id_)
            return [description_out(d) for d in self._catalog.get_descriptions(id_)]

        return await self._pools.run_io(read)


def description_out(d: Any) -> DescriptionOut:
    return DescriptionOut(
        method=d.method,
        content=d.content,
        has_embedding=d.has_embedding,
        indexes=list(d.indexes),
        created_at=d.created_at,
        updated_at=d.updated_at,
    )
