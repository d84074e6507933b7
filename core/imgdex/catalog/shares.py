"""The `shares` table: album share links (``/s/{token}``), stored as token hashes."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from imgdex.catalog.engine import Store

__all__ = ["ShareRow", "ShareStore"]


class ShareRow(msgspec.Struct, kw_only=True, frozen=True):
    id: int
    album_id: str
    created_by: str | None
    created_at: float
    expires_at: float | None
    has_password: bool


_COLS = "id, album_id, created_by, created_at, expires_at, password_hash IS NOT NULL"


def _row(r: tuple[Any, ...]) -> ShareRow:
    return ShareRow(
        id=r[0],
        album_id=r[1],
        created_by=r[2],
        created_at=r[3],
        expires_at=r[4],
        has_password=bool(r[5]),
    )


class ShareStore(Store):
    """Share link rows. Methods are blocking; call them from worker threads."""

    def create_share(
        self,
        album_id: str,
        token_hash: str,
        *,
        created_by: str | None,
        expires_at: float | None,
        password_hash: str | None,
    ) -> ShareRow:
        with self.engine.transaction() as db:
            db.execute(
                "INSERT INTO shares (album_id, token_hash, password_hash, created_by, "
                "created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                (album_id, token_hash, password_hash, created_by, time.time(), expires_at),
            )
        rows = self._read(f"SELECT {_COLS} FROM shares WHERE token_hash = ?", (token_hash,))
        return _row(rows[0])

    def list_shares(self, album_id: str) -> list[ShareRow]:
        """An album's live links (unrevoked, unexpired), oldest first."""
        rows = self._read(
            f"SELECT {_COLS} FROM shares WHERE album_id = ? AND revoked_at IS NULL "
            "AND (expires_at IS NULL OR expires_at > ?) ORDER BY id",
            (album_id, time.time()),
        )
        return [_row(r) for r in rows]

    def revoke_share(self, album_id: str, share_id: int) -> bool:
        with self.engine.transaction() as db:
            return bool(
                db.execute(
                    "UPDATE shares SET revoked_at = ? "
                    "WHERE id = ? AND album_id = ? AND revoked_at IS NULL",
                    (time.time(), share_id, album_id),
                ).rowcount
            )

    def live_share(self, token_hash: str) -> tuple[ShareRow, str | None] | None:
        """The live link with this token hash and its password hash; None otherwise."""
        rows = self._read(
            f"SELECT {_COLS}, password_hash FROM shares WHERE token_hash = ? "
            "AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)",
            (token_hash, time.time()),
        )
        return (_row(rows[0]), rows[0][6]) if rows else None
