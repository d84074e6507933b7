"""The `albums` and `album_images` tables: albums people fill by hand, and smart albums
that store a search (evaluated live, elsewhere)."""

from __future__ import annotations

from collections.abc import Sequence

from imgdex.catalog.dialect import Connection
from imgdex.catalog.engine import Store, chunks, marks
from imgdex.catalog.rows import AlbumRow

__all__ = ["AlbumStore"]

_ALBUM = (
    "SELECT a.id, a.name, a.description, a.cover, a.smart, a.created_at, a.updated_at, "
    "(SELECT COUNT(*) FROM album_images ai JOIN images i ON i.sha256 = ai.image_sha256 "
    " WHERE ai.album_id = a.id AND i.is_deleted = 0) FROM albums a"
)


class AlbumStore(Store):
    """Album rows. Methods are blocking; call them from worker threads."""

    def get_album(self, album_id: int, db: Connection | None = None) -> AlbumRow | None:
        """One album, or None."""
        conn = db or self.engine.connection()
        row = conn.execute(f"{_ALBUM} WHERE a.id = ?", (album_id,)).fetchone()
        return AlbumRow(*row) if row else None

    def list_albums(self) -> list[AlbumRow]:
        """Every album, by name."""
        return [AlbumRow(*r) for r in self._read(f"{_ALBUM} ORDER BY a.name, a.id")]

    def create_album(
        self,
        db: Connection,
        *,
        name: str,
        description: str | None,
        smart: str | None,
        cover: str | None,
    ) -> int:
        """Add an album; returns its id."""
        row = db.execute(
            "INSERT INTO albums (name, description, smart, cover) VALUES (?, ?, ?, ?) RETURNING id",
            (name, description, smart, cover),
        ).fetchone()
        return int(row[0])

    def update_album(self, db: Connection, album_id: int, changes: dict[str, object]) -> None:
        """Set the given columns (name, description, smart, cover) of an album."""
        allowed = {"name", "description", "smart", "cover"}
        columns = [c for c in changes if c in allowed]
        sets = ", ".join(f"{c} = ?" for c in columns)
        db.execute(
            f"UPDATE albums SET {sets}{', ' if sets else ''}updated_at = {self.dialect.now} "
            "WHERE id = ?",
            (*(changes[c] for c in columns), album_id),
        )

    def delete_album(self, db: Connection, album_id: int) -> bool:
        """Remove an album (its images stay in the library)."""
        db.execute("DELETE FROM album_images WHERE album_id = ?", (album_id,))
        return db.execute("DELETE FROM albums WHERE id = ?", (album_id,)).rowcount > 0

    def add_to_album(self, db: Connection, album_id: int, ids: Sequence[str]) -> int:
        """Add images to an album; returns how many were new to it."""
        added = 0
        for id_ in ids:
            added += db.execute(
                "INSERT INTO album_images (album_id, image_sha256) VALUES (?, ?) "
                f"{self.dialect.insert_ignore()}",
                (album_id, id_),
            ).rowcount
        self.update_album(db, album_id, {})
        return added

    def remove_from_album(self, db: Connection, album_id: int, ids: Sequence[str]) -> int:
        """Take images out of an album; returns how many were in it."""
        removed = 0
        for chunk in chunks(list(ids)):
            removed += db.execute(
                f"DELETE FROM album_images WHERE album_id = ? "
                f"AND image_sha256 IN ({marks(len(chunk))})",
                (album_id, *chunk),
            ).rowcount
        self.update_album(db, album_id, {})
        return removed

    def latest_image(self, album_id: int) -> str | None:
        """The live image added to an album last (its default cover)."""
        rows = self._read(
            "SELECT ai.image_sha256 FROM album_images ai JOIN images i "
            "ON i.sha256 = ai.image_sha256 WHERE ai.album_id = ? AND i.is_deleted = 0 "
            "ORDER BY ai.added_at DESC, ai.image_sha256 LIMIT 1",
            (album_id,),
        )
        return str(rows[0][0]) if rows else None
