"""The `images` table: one row per stored image, its status and its soft deletion."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from imgdex.catalog import keyword
from imgdex.catalog.dialect import Connection
from imgdex.catalog.engine import Store, chunks, marks
from imgdex.catalog.rows import ImageRow
from imgdex.errors import BadRequest
from imgdex.filters import ImageFilters

__all__ = ["ImageStore"]

_IMAGE_COLUMNS = (
    "sha256, sha256_full, width, height, file_size, format, filename, created_at, source, "
    "status, error, is_deleted, deleted_at, original_name"
)


class ImageStore(Store):
    """Image rows. Methods are blocking; call them from worker threads."""

    def get_image(self, id_: str) -> ImageRow | None:
        """One image's row, deleted or not."""
        rows = self._read(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE sha256 = ?", (id_,))
        return ImageRow(*rows[0]) if rows else None

    def get_images(self, ids: Iterable[str]) -> dict[str, ImageRow]:
        """``{id: row}`` of the images among `ids` that exist."""
        out: dict[str, ImageRow] = {}
        for chunk in chunks(list(ids)):
            for row in self._read(
                f"SELECT {_IMAGE_COLUMNS} FROM images WHERE sha256 IN ({marks(len(chunk))})",
                chunk,
            ):
                out[row[0]] = ImageRow(*row)
        return out

    def has_image(self, db: Connection, id_: str) -> bool:
        """Whether the image has a row (deleted or not), inside transaction `db`."""
        return db.execute("SELECT 1 FROM images WHERE sha256 = ?", (id_,)).fetchone() is not None

    def image_sizes(self, db: Connection | None, ids: Iterable[str]) -> dict[str, tuple[int, int]]:
        """``{image: (width, height)}`` of the images among `ids` that exist."""
        conn = db or self.engine.connection()
        out: dict[str, tuple[int, int]] = {}
        for chunk in chunks(list(set(ids))):
            for id_, width, height in conn.execute(
                f"SELECT sha256, width, height FROM images WHERE sha256 IN ({marks(len(chunk))})",
                chunk,
            ):
                out[id_] = (int(width), int(height))
        return out

    def insert_image(
        self,
        db: Connection,
        *,
        id_: str,
        full: str,
        width: int,
        height: int,
        file_size: int,
        fmt: str,
        filename: str,
        source: str | None,
        status: str,
        original_name: str | None = None,
    ) -> None:
        """Add an image's row; an existing id raises the engine's integrity error."""
        db.execute(
            "INSERT INTO images (sha256, sha256_full, width, height, file_size, format, "
            "filename, source, status, original_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (id_, full, width, height, file_size, fmt, filename, source, status, original_name),
        )
        keyword.index_text(self.dialect, db, id_, keyword.FILENAME, original_name)

    def set_status(self, id_: str, status: str, error: str | None = None) -> None:
        """Set an image's status and error, in a transaction of its own."""
        with self.engine.transaction() as db:
            db.execute(
                "UPDATE images SET status = ?, error = ? WHERE sha256 = ?", (status, error, id_)
            )

    def set_deleted(self, db: Connection, id_: str, deleted: bool) -> None:
        """Soft-delete an image (hidden, restorable) or restore it."""
        db.execute(
            "UPDATE images SET is_deleted = ?, deleted_at = "
            f"CASE WHEN ? THEN {self.dialect.now} ELSE NULL END WHERE sha256 = ?",
            (int(deleted), int(deleted), id_),
        )

    def delete_image_rows(self, db: Connection, id_: str) -> None:
        """Remove an image and everything recorded of it: jobs, vectors, descriptions."""
        db.execute("DELETE FROM jobs WHERE image_sha256 = ?", (id_,))
        db.execute("DELETE FROM vector_entries WHERE image_sha256 = ?", (id_,))
        db.execute("DELETE FROM descriptions WHERE image_sha256 = ?", (id_,))
        db.execute("DELETE FROM keyword_docs WHERE image_sha256 = ?", (id_,))
        db.execute("DELETE FROM images WHERE sha256 = ?", (id_,))

    # --- INTERIM (find branch): the organise branch owns `filter_ids`; replace this
    # method with theirs when merging. It answers the filters the catalog can evaluate
    # today (source, format) and refuses the others clearly.
    def filter_ids(self, filters: ImageFilters) -> set[str]:
        """The live images matching every condition of `filters`."""
        unsupported = sorted(
            name
            for name in ImageFilters.__struct_fields__
            if name not in ("source", "format") and getattr(filters, name) is not None
        )
        if unsupported:
            raise BadRequest(
                f"filters: {', '.join(unsupported)} not available yet (source and format are)",
                code="bad_filter",
            )
        where, params = ["is_deleted = 0"], []
        if filters.source is not None:
            where.append("source = ?")
            params.append(filters.source)
        if filters.format is not None:
            where.append("UPPER(format) = UPPER(?)")
            params.append(filters.format)
        return {
            str(r[0])
            for r in self._read(f"SELECT sha256 FROM images WHERE {' AND '.join(where)}", params)
        }

    # --- end INTERIM

    def list_images(
        self,
        *,
        offset: int,
        limit: int,
        status: str | None,
        source: str | None,
        include_deleted: bool,
    ) -> tuple[list[ImageRow], int]:
        """A page of images, newest first, and how many match in all."""
        where, params = ["1=1"], []
        if not include_deleted:
            where.append("is_deleted = 0")
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if source is not None:
            where.append("source = ?")
            params.append(source)
        clause = " AND ".join(where)
        total = self._read(f"SELECT COUNT(*) FROM images WHERE {clause}", params)[0][0]
        rows = self._read(
            f"SELECT {_IMAGE_COLUMNS} FROM images WHERE {clause} "
            "ORDER BY created_at DESC, sha256 LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [ImageRow(*r) for r in rows], int(total)

    def all_image_ids(self) -> set[str]:
        """Every image id, deleted or not."""
        return {r[0] for r in self._read("SELECT sha256 FROM images")}

    def stats(self) -> dict[str, Any]:
        """Counts and sizes for the system report."""
        by_status = dict(
            self._read("SELECT status, COUNT(*) FROM images WHERE is_deleted = 0 GROUP BY status")
        )
        deleted = self._read("SELECT COUNT(*) FROM images WHERE is_deleted = 1")[0][0]
        size = self._read("SELECT COALESCE(SUM(file_size), 0) FROM images WHERE is_deleted = 0")
        methods = dict(self._read("SELECT method, COUNT(*) FROM descriptions GROUP BY method"))
        return {
            "image_count": int(sum(by_status.values())),
            "by_status": {k: int(v) for k, v in by_status.items()},
            "deleted_count": int(deleted),
            "total_file_size": int(size[0][0]),
            "description_count": int(sum(methods.values())),
            "descriptions_by_method": {k: int(v) for k, v in methods.items()},
        }
