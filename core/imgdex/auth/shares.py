"""Album share links: create, list, revoke, and check a token (for ``/s/{token}``).

The albums API plugs in here: its ``POST/GET/DELETE /api/albums/{id}/shares`` handlers
call `Shares.create`, `.list` and `.revoke` (behind ``require("write")``), and the public
``/s/{token}`` routes call `Shares.album_of(token, password)` to learn the one album the
request may read. An unknown, expired or revoked token, or a wrong password, is the same
404: the answer never tells which.
"""

from __future__ import annotations

import time

from imgdex.auth.passwords import DUMMY_HASH, check_strength, hash_password, verify_password
from imgdex.auth.policy import Principal
from imgdex.auth.tokens import hash_token, new_session_token
from imgdex.catalog.shares import ShareRow, ShareStore
from imgdex.errors import BadRequest, NotFound

__all__ = ["Shares"]


class Shares:
    """Share links over the catalog's `ShareStore`. Blocking: call from threads."""

    def __init__(self, store: ShareStore) -> None:
        self.store = store

    def create(
        self,
        principal: Principal,
        album_id: str,
        *,
        expires_at: float | None = None,
        password: str | None = None,
    ) -> tuple[ShareRow, str]:
        """A new link of an album; returns its row and the token (shown once)."""
        if expires_at is not None and expires_at <= time.time():
            raise BadRequest("expires_at is in the past", code="bad_expiry")
        if password is not None:
            check_strength(password)
        token = new_session_token()
        row = self.store.create_share(
            album_id,
            hash_token(token),
            created_by=principal.name,
            expires_at=expires_at,
            password_hash=hash_password(password) if password is not None else None,
        )
        return row, token

    def list(self, album_id: str) -> list[ShareRow]:
        return self.store.list_shares(album_id)

    def revoke(self, album_id: str, share_id: int) -> None:
        if not self.store.revoke_share(album_id, share_id):
            raise NotFound(f"no share {share_id} of this album", code="unknown_share")

    def album_of(self, token: str, password: str | None = None) -> str:
        """The album a live link shows; 404 (the same every time) when it shows none."""
        found = self.store.live_share(hash_token(token))
        stored = found[1] if found else None
        # Always one argon2 check when a password is given: no timing tells links apart.
        ok = verify_password(stored or DUMMY_HASH, password) if password is not None else True
        if found is None or (stored is not None and (password is None or not ok)):
            raise NotFound("no such share link", code="unknown_share")
        return found[0].album_id
