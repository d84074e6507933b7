"""Near-duplicate pairs: images whose vectors in an image index are nearly the same.

The `find_duplicates` job of an image (per image index) records the pairs it finds and
marks the image checked in one transaction; pairs are stored once, ``image_a <
image_b``, and go with either image's hard delete. `duplicates_revision` tells readers
that cache what the pairs make whether they changed.
"""

from __future__ import annotations

from collections.abc import Iterable

from imgdex.catalog.dialect import Connection
from imgdex.catalog.engine import Store

__all__ = ["DuplicateStore"]


class DuplicateStore(Store):
    """Duplicate pairs. Methods are blocking; call them from worker threads."""

    def record_duplicates(
        self, db: Connection, image: str, index: str, pairs: Iterable[tuple[str, float]]
    ) -> None:
        """Record `image`'s near-duplicates ``(other, score)`` in `index` and mark it
        checked there."""
        upsert = self.dialect.upsert("image_a, image_b, index_name", "score = excluded.score")
        for other, score in pairs:
            if other == image:
                continue
            a, b = sorted((image, other))
            db.execute(
                "INSERT INTO duplicate_pairs (image_a, image_b, index_name, score) "
                "SELECT ?, ?, ?, ? WHERE (SELECT COUNT(*) FROM images WHERE sha256 IN (?, ?)) = 2 "
                f"{upsert}",
                (a, b, index, float(score), a, b),
            )
        # Either image may have been hard-deleted since its job was claimed: then there is
        # nothing to record (the foreign keys would refuse it).
        db.execute(
            "INSERT INTO duplicate_checks (image_sha256, index_name) "
            "SELECT ?, ? WHERE EXISTS (SELECT 1 FROM images WHERE sha256 = ?) "
            f"{self.dialect.insert_ignore()}",
            (image, index, image),
        )

    def plan_duplicate_checks(self, index: str, after: int = 0) -> int:
        """Queue a `find_duplicates` job for each live image whose vector in `index` has a
        label above `after` and that the index has not checked; returns how many."""
        with self.engine.transaction() as db:
            return int(
                db.execute(
                    "INSERT INTO jobs (kind, target, image_sha256, method) "
                    "SELECT 'find_duplicates', ?, v.image_sha256, 'image' FROM vector_entries v "
                    "JOIN images i ON i.sha256 = v.image_sha256 "
                    "WHERE v.index_name = ? AND v.method = 'image' AND v.id > ? "
                    "AND i.is_deleted = 0 AND NOT EXISTS (SELECT 1 FROM duplicate_checks c "
                    "WHERE c.image_sha256 = v.image_sha256 AND c.index_name = ?) "
                    f"ORDER BY v.id {self.dialect.insert_ignore()}",
                    (index, index, after, index),
                ).rowcount
            )

    def last_label(self, index: str) -> int:
        """The highest label `index` has given out (0 when none)."""
        rows = self._read("SELECT MAX(id) FROM vector_entries WHERE index_name = ?", (index,))
        return int(rows[0][0] or 0)

    def duplicate_pairs(self, threshold: float) -> list[tuple[str, str, float]]:
        """``(a, b, best score over the indexes)`` of the pairs of live images scoring at
        least `threshold`, in no particular order."""
        # The score range is read off the covering (score, image_a, image_b) index; the
        # trash is one small list checked per pair. Joining `images` twice made the
        # planner walk every live image and all its pairs instead.
        rows = self._read(
            "SELECT p.image_a, p.image_b, p.score FROM duplicate_pairs p WHERE p.score >= ? "
            "AND p.image_a NOT IN (SELECT sha256 FROM images WHERE is_deleted = 1) "
            "AND p.image_b NOT IN (SELECT sha256 FROM images WHERE is_deleted = 1)",
            (threshold,),
        )
        best: dict[tuple[str, str], float] = {}
        for a, b, score in rows:  # one row per image index that found the pair
            key = (str(a), str(b))
            best[key] = max(best.get(key, 0.0), float(score))
        return [(a, b, score) for (a, b), score in best.items()]

    def duplicates_revision(self) -> int:
        """A number that changes whenever what `duplicate_pairs` returns may have: a pair
        recorded, changed or removed, an image with pairs trashed or restored, by any
        process (the schema's triggers keep it). Read it before the pairs."""
        return int(self._read("SELECT revision FROM duplicates_revision WHERE id = 1")[0][0])

    def forget_duplicate_checks(self, db: Connection, index: str) -> None:
        """Forget what `index` checked and found (its vectors changed: a rebuild)."""
        db.execute("DELETE FROM duplicate_checks WHERE index_name = ?", (index,))
        db.execute("DELETE FROM duplicate_pairs WHERE index_name = ?", (index,))
