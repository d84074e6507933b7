"""The `image_tags` table: normalised tags on images, from people and from models."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from imgdex.catalog import keyword
from imgdex.catalog.dialect import Connection
from imgdex.catalog.engine import Store, chunks, marks
from imgdex.catalog.rows import TagRow

__all__ = ["TagStore"]


class TagStore(Store):
    """Tag rows. Tags arrive normalised (`imgdex.tags`). Methods are blocking."""

    def tags_of(self, id_: str) -> list[TagRow]:
        """An image's tags, alphabetically."""
        rows = self._read(
            "SELECT tag, source, confidence, created_at FROM image_tags "
            "WHERE image_sha256 = ? ORDER BY tag",
            (id_,),
        )
        return [TagRow(*r) for r in rows]

    def tags_of_many(self, ids: Iterable[str]) -> dict[str, list[str]]:
        """``{image: [tag, ...]}`` for the images among `ids` that have tags."""
        out: dict[str, list[str]] = {}
        for chunk in chunks(list(ids)):
            for image, tag in self._read(
                "SELECT image_sha256, tag FROM image_tags "
                f"WHERE image_sha256 IN ({marks(len(chunk))}) ORDER BY tag",
                chunk,
            ):
                out.setdefault(image, []).append(tag)
        return out

    def add_tags(
        self,
        db: Connection,
        id_: str,
        tags: Sequence[str],
        source: str,
        confidence: float | None = None,
    ) -> None:
        """Tag an image. A person's tag (source ``user``) takes over a model's; a model
        never overwrites a tag that is already there."""
        if source == "user":
            clause = self.dialect.upsert(
                "image_sha256, tag", "source = excluded.source, confidence = NULL"
            )
        else:
            clause = self.dialect.insert_ignore()
        for tag in tags:
            db.execute(
                "INSERT INTO image_tags (image_sha256, tag, source, confidence) "
                f"VALUES (?, ?, ?, ?) {clause}",
                (id_, tag, source, confidence),
            )
        if tags:
            self._reindex(db, id_)

    def remove_tags(self, db: Connection, id_: str, tags: Sequence[str]) -> int:
        """Untag an image; returns how many of `tags` it had."""
        removed = 0
        for chunk in chunks(list(tags)):
            removed += db.execute(
                f"DELETE FROM image_tags WHERE image_sha256 = ? AND tag IN ({marks(len(chunk))})",
                (id_, *chunk),
            ).rowcount
        if removed:
            self._reindex(db, id_)
        return removed

    def _reindex(self, db: Connection, id_: str) -> None:
        # The keyword index holds an image's tags as one document, kept in step here.
        rows = db.execute("SELECT tag FROM image_tags WHERE image_sha256 = ?", (id_,))
        keyword.index_tags(self.dialect, db, id_, [str(r[0]) for r in rows.fetchall()])

    def tag_counts(self, *, prefix: str | None = None, limit: int = 1000) -> list[tuple[str, int]]:
        """``(tag, live images with it)``, most used first."""
        where, params = "i.is_deleted = 0", []
        if prefix:
            where += " AND t.tag LIKE ? ESCAPE '\\'"
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params.append(escaped + "%")
        rows = self._read(
            "SELECT t.tag, COUNT(*) FROM image_tags t JOIN images i ON i.sha256 = t.image_sha256 "
            f"WHERE {where} GROUP BY t.tag ORDER BY COUNT(*) DESC, t.tag LIMIT ?",
            (*params, limit),
        )
        return [(str(tag), int(n)) for tag, n in rows]
