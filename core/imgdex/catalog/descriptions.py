"""The `descriptions` table: texts about an image, one per method (caption, ocr, ...)."""

from __future__ import annotations

from collections.abc import Iterable

from imgdex.catalog import keyword
from imgdex.catalog.dialect import Connection
from imgdex.catalog.engine import Store, chunks
from imgdex.catalog.rows import DescriptionRow

__all__ = ["DescriptionStore"]


class DescriptionStore(Store):
    """Description rows. Methods are blocking; call them from worker threads."""

    def get_descriptions(self, id_: str) -> list[DescriptionRow]:
        """An image's descriptions, oldest first, each with the indexes holding its vector."""
        indexes = self.dialect.list_agg("v.index_name", ",")
        rows = self._read(
            "SELECT d.method, d.content, d.created_at, d.updated_at, "
            f"(SELECT {indexes} FROM vector_entries v "
            " WHERE v.image_sha256 = d.image_sha256 AND v.method = d.method) "
            "FROM descriptions d WHERE d.image_sha256 = ? ORDER BY d.created_at, d.method",
            (id_,),
        )
        return [
            DescriptionRow(m, c, ca, ua, tuple(sorted(ix.split(","))) if ix else ())
            for m, c, ca, ua, ix in rows
        ]

    def get_description(self, id_: str, method: str) -> str | None:
        """The text of one description, None when there is none."""
        rows = self._read(
            "SELECT content FROM descriptions WHERE image_sha256 = ? AND method = ?",
            (id_, method),
        )
        return str(rows[0][0]) if rows else None

    def description_texts(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """``{(image, method): text}`` of the descriptions among `keys` that exist."""
        out: dict[tuple[str, str], str] = {}
        for chunk in chunks(list(set(keys)), 400):
            pairs = ",".join("(?, ?)" for _ in chunk)
            flat = [x for key in chunk for x in key]
            for image, method, content in self._read(
                "SELECT image_sha256, method, content FROM descriptions "
                f"WHERE (image_sha256, method) IN (VALUES {pairs})",
                flat,
            ):
                out[(image, method)] = content
        return out

    def description_count(self, method: str) -> int:
        """Descriptions written under `method` for live images."""
        return int(
            self._read(
                "SELECT COUNT(*) FROM descriptions d JOIN images i ON i.sha256 = d.image_sha256 "
                "WHERE d.method = ? AND i.is_deleted = 0",
                (method,),
            )[0][0]
        )

    def upsert_description(self, db: Connection, id_: str, method: str, content: str) -> None:
        """Write (or replace) a description's text, and its keyword index document."""
        upsert = self.dialect.upsert(
            "image_sha256, method",
            f"content = excluded.content, updated_at = {self.dialect.now}",
        )
        db.execute(
            f"INSERT INTO descriptions (image_sha256, method, content) VALUES (?, ?, ?) {upsert}",
            (id_, method, content),
        )
        keyword.index_text(self.dialect, db, id_, keyword.description_field(method), content)

    def delete_description(self, db: Connection, id_: str, method: str) -> int:
        """Remove a description, its embedding jobs and its keyword index document; returns
        the rows removed (0 or 1)."""
        keyword.index_text(self.dialect, db, id_, keyword.description_field(method), None)
        db.execute(
            "DELETE FROM jobs WHERE kind = 'embed_text' AND image_sha256 = ? AND method = ?",
            (id_, method),
        )
        return db.execute(
            "DELETE FROM descriptions WHERE image_sha256 = ? AND method = ?", (id_, method)
        ).rowcount
