"""The `vector_entries` table: which vector of which item each index label holds."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from imgdex.catalog.dialect import Connection
from imgdex.catalog.engine import Store, chunks, marks
from imgdex.catalog.rows import IndexEntry, VectorEntry

__all__ = ["VectorStore"]


class VectorStore(Store):
    """Vector entries (index labels). Methods are blocking; call them from worker threads."""

    def add_vector_entry(
        self,
        db: Connection,
        image: str,
        method: str,
        model: str,
        version: str,
        index: str,
        content: str | None = None,
    ) -> int | None:
        """Insert an entry and return its id; None when it exists already, when the
        image is gone, or (for descriptions, `content` given) when the description no
        longer has the text that was embedded: a late write never resurrects stale data.
        """
        guard = "EXISTS (SELECT 1 FROM images WHERE sha256 = ? AND is_deleted = 0)"
        params: list[Any] = [image, method, model, version, index, image]
        if content is not None:
            guard += (
                " AND EXISTS (SELECT 1 FROM descriptions WHERE image_sha256 = ? "
                "AND method = ? AND content = ?)"
            )
            params += [image, method, content]
        row = db.execute(
            "INSERT INTO vector_entries (image_sha256, method, model, model_version, index_name) "
            f"SELECT ?, ?, ?, ?, ? WHERE {guard} {self.dialect.insert_ignore()} RETURNING id",
            params,
        ).fetchone()
        return int(row[0]) if row else None

    def vector_entries_of(
        self, db: Connection | None, image: str, method: str | None = None
    ) -> list[VectorEntry]:
        """An image's entries in every index (of one method when `method` is given)."""
        conn = db or self.engine.connection()
        sql = (
            "SELECT id, image_sha256, method, index_name FROM vector_entries WHERE image_sha256 = ?"
        )
        params: list[Any] = [image]
        if method is not None:
            sql += " AND method = ?"
            params.append(method)
        return [VectorEntry(*r) for r in conn.execute(sql, params).fetchall()]

    def delete_vector_entries(self, db: Connection, ids: Sequence[int]) -> None:
        """Remove entries by id."""
        for chunk in chunks(list(ids)):
            db.execute(f"DELETE FROM vector_entries WHERE id IN ({marks(len(chunk))})", chunk)

    def resolve_entries(self, ids: Sequence[int]) -> dict[int, tuple[str, str]]:
        """Map vector ids to ``(image, method)`` for search results.

        No join with `images`: soft-deleted images' vectors are hidden in the index, and
        the page of results re-reads its image rows anyway (the race guard). The values
        stay ``(image, method)`` tuples: they merge into the label maps' answers on the
        search path, which hold the same tuples.
        """
        out: dict[int, tuple[str, str]] = {}
        for chunk in chunks(list(ids)):
            for id_, image, method in self._read(
                f"SELECT id, image_sha256, method FROM vector_entries WHERE id IN "
                f"({marks(len(chunk))})",
                chunk,
            ):
                out[id_] = (image, method)
        return out

    def index_entry_batches(self, index: str, size: int = 2000) -> Iterator[list[IndexEntry]]:
        """Every entry of an index by label, with its image's size and deletion flag, a
        batch at a time, so that a large index is never held as millions of Python objects
        at once (memory the process would keep after freeing them). Each batch is its own
        query, from the last label on (no statement stays open between batches, so the
        caller may write meanwhile); entries added during the iteration with higher
        labels are included."""
        after = -1
        while rows := self._read(
            "SELECT v.id, v.image_sha256, v.method, i.width, i.height, i.is_deleted "
            "FROM vector_entries v JOIN images i ON i.sha256 = v.image_sha256 "
            "WHERE v.index_name = ? AND v.id > ? ORDER BY v.id LIMIT ?",
            (index, after, size),
        ):
            yield [
                IndexEntry(int(id_), image, method, int(width), int(height), bool(deleted))
                for id_, image, method, width, height, deleted in rows
            ]
            after = int(rows[-1][0])

    def index_counts(self) -> dict[str, int]:
        """Entries per index, soft-deleted images' included."""
        return {
            name: int(n)
            for name, n in self._read(
                "SELECT index_name, COUNT(*) FROM vector_entries GROUP BY index_name"
            )
        }

    def soft_deleted_counts(self) -> dict[str, int]:
        """Vectors per index that belong to soft-deleted images (hidden, not searchable)."""
        return {
            name: int(n)
            for name, n in self._read(
                "SELECT v.index_name, COUNT(*) FROM images i JOIN vector_entries v "
                "ON v.image_sha256 = i.sha256 WHERE i.is_deleted = 1 GROUP BY v.index_name"
            )
        }

    def image_indexes(self, id_: str) -> set[str]:
        """The indexes holding a vector of the image itself."""
        rows = self._read(
            "SELECT index_name FROM vector_entries WHERE image_sha256 = ? AND method = 'image'",
            (id_,),
        )
        return {r[0] for r in rows}
