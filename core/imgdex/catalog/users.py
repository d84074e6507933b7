"""Access records: users, login sessions, API keys, the audit log, and who created what.

Only hashes of secrets are stored: argon2id for passwords (`imgdex.auth.passwords`),
SHA-256 for session tokens and API keys (both 32 random bytes, so a fast hash is safe).
Times are unix seconds (REAL) so that expiry checks are plain comparisons.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from imgdex.catalog.engine import Store

__all__ = ["ApiKeyRow", "AuditRow", "Identity", "SessionRow", "UserRow", "UserStore"]


class UserRow(msgspec.Struct, kw_only=True, frozen=True):
    id: int
    username: str
    role: str
    disabled: bool
    created_at: str


class SessionRow(msgspec.Struct, kw_only=True, frozen=True):
    id: str  # the hash of the cookie value: safe to show and to name in a revocation
    created_at: float
    last_seen_at: float
    expires_at: float
    client: str | None


class ApiKeyRow(msgspec.Struct, kw_only=True, frozen=True):
    id: int
    user_id: int
    username: str
    name: str
    scopes: tuple[str, ...]
    created_at: float
    last_used_at: float | None
    expires_at: float | None


class AuditRow(msgspec.Struct, kw_only=True, frozen=True):
    id: int
    at: float
    actor: str | None
    action: str
    target: str | None
    client: str | None
    detail: str | None


class Identity(msgspec.Struct, kw_only=True, frozen=True):
    """Who a session or key belongs to, as of this request."""

    user_id: int
    username: str
    role: str
    scopes: tuple[str, ...] | None = None  # a key's scopes; None for a session
    key_id: int | None = None
    session_id: str | None = None


_USER_COLS = "id, username, role, disabled, created_at"


def _user(row: tuple[Any, ...]) -> UserRow:
    return UserRow(
        id=row[0], username=row[1], role=row[2], disabled=bool(row[3]), created_at=str(row[4])
    )


class UserStore(Store):
    """Users, sessions, keys and audit rows. Methods are blocking: call from threads."""

    # --- users ---------------------------------------------------------------------

    def create_user(self, username: str, password_hash: str, role: str) -> UserRow:
        """Insert a user; None-safe callers check `get_user` first for a clear error."""
        with self.engine.transaction() as db:
            db.execute(
                "INSERT INTO users (username, password_hash, role) VALUES (?, ?, ?)",
                (username, password_hash, role),
            )
        user = self.get_user(username)
        assert user is not None
        return user

    def get_user(self, username: str) -> UserRow | None:
        rows = self._read(f"SELECT {_USER_COLS} FROM users WHERE username = ?", (username,))
        return _user(rows[0]) if rows else None

    def list_users(self) -> list[UserRow]:
        return [_user(r) for r in self._read(f"SELECT {_USER_COLS} FROM users ORDER BY id")]

    def user_count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM users")[0][0])

    def password_hash(self, username: str) -> tuple[UserRow, str] | None:
        """The user and their stored hash, for a login check."""
        rows = self._read(
            f"SELECT {_USER_COLS}, password_hash FROM users WHERE username = ?", (username,)
        )
        return (_user(rows[0]), str(rows[0][5])) if rows else None

    def update_user(
        self,
        username: str,
        *,
        role: str | None = None,
        disabled: bool | None = None,
        password_hash: str | None = None,
    ) -> UserRow | None:
        """Change a user; disabling or a new password ends their sessions at once."""
        with self.engine.transaction() as db:
            row = db.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()
            if row is None:
                return None
            uid = row[0]
            if role is not None:
                db.execute("UPDATE users SET role = ? WHERE id = ?", (role, uid))
            if disabled is not None:
                db.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), uid))
            if password_hash is not None:
                db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, uid))
            if disabled or password_hash is not None:
                db.execute("DELETE FROM sessions WHERE user_id = ?", (uid,))
        return self.get_user(username)

    # --- sessions ------------------------------------------------------------------

    def create_session(
        self, session_id: str, user_id: int, lifetime: float, client: str | None
    ) -> None:
        now = time.time()
        with self.engine.transaction() as db:
            # Expired rows of anyone go with each login: the table never grows unbounded.
            db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            db.execute(
                "INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at, "
                "client) VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, user_id, now, now, now + lifetime, client),
            )

    def session_identity(self, session_id: str, idle_timeout: float) -> Identity | None:
        """The live session's user (not disabled), touching its last-seen time; None when
        unknown, expired or idle for longer than `idle_timeout`."""
        now = time.time()
        rows = self._read(
            "SELECT u.id, u.username, u.role, s.last_seen_at FROM sessions s "
            "JOIN users u ON u.id = s.user_id "
            "WHERE s.id = ? AND s.expires_at > ? AND u.disabled = 0",
            (session_id, now),
        )
        if not rows or now - rows[0][3] > idle_timeout:
            return None
        # Touch at most once a minute (a write per request would serialise readers), and
        # often enough that a session in use never looks idle.
        if now - rows[0][3] > min(60.0, idle_timeout / 4):
            with self.engine.transaction() as db:
                db.execute("UPDATE sessions SET last_seen_at = ? WHERE id = ?", (now, session_id))
        uid, username, role, _ = rows[0]
        return Identity(user_id=uid, username=username, role=role, session_id=session_id)

    def list_sessions(self, user_id: int) -> list[SessionRow]:
        rows = self._read(
            "SELECT id, created_at, last_seen_at, expires_at, client FROM sessions "
            "WHERE user_id = ? AND expires_at > ? ORDER BY created_at",
            (user_id, time.time()),
        )
        return [
            SessionRow(id=r[0], created_at=r[1], last_seen_at=r[2], expires_at=r[3], client=r[4])
            for r in rows
        ]

    def delete_sessions(self, user_id: int, session_id: str | None = None) -> int:
        """Revoke one of a user's sessions, or all of them."""
        with self.engine.transaction() as db:
            if session_id is None:
                return db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,)).rowcount
            return db.execute(
                "DELETE FROM sessions WHERE user_id = ? AND id = ?", (user_id, session_id)
            ).rowcount

    # --- API keys ------------------------------------------------------------------

    def create_key(
        self,
        user_id: int,
        name: str,
        key_hash: str,
        scopes: tuple[str, ...],
        expires_at: float | None,
    ) -> ApiKeyRow:
        with self.engine.transaction() as db:
            db.execute(
                "INSERT INTO api_keys (user_id, name, key_hash, scopes, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (user_id, name, key_hash, ",".join(scopes), time.time(), expires_at),
            )
        rows = self._keys("k.key_hash = ?", (key_hash,))
        return rows[0]

    def list_keys(self, user_id: int | None = None) -> list[ApiKeyRow]:
        """Live (unrevoked) keys of one user, or of everyone."""
        if user_id is None:
            return self._keys("1 = 1", ())
        return self._keys("k.user_id = ?", (user_id,))

    def get_key(self, key_id: int) -> ApiKeyRow | None:
        rows = self._keys("k.id = ?", (key_id,))
        return rows[0] if rows else None

    def _keys(self, where: str, params: tuple[Any, ...]) -> list[ApiKeyRow]:
        rows = self._read(
            "SELECT k.id, k.user_id, u.username, k.name, k.scopes, k.created_at, "
            "k.last_used_at, k.expires_at FROM api_keys k JOIN users u ON u.id = k.user_id "
            f"WHERE k.revoked_at IS NULL AND {where} ORDER BY k.id",
            params,
        )
        return [
            ApiKeyRow(
                id=r[0],
                user_id=r[1],
                username=r[2],
                name=r[3],
                scopes=tuple(s for s in r[4].split(",") if s),
                created_at=r[5],
                last_used_at=r[6],
                expires_at=r[7],
            )
            for r in rows
        ]

    def revoke_key(self, key_id: int) -> bool:
        with self.engine.transaction() as db:
            return bool(
                db.execute(
                    "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                    (time.time(), key_id),
                ).rowcount
            )

    def key_identity(self, key_hash: str) -> Identity | None:
        """The owner of a live key (unrevoked, unexpired, owner not disabled)."""
        now = time.time()
        rows = self._read(
            "SELECT u.id, u.username, u.role, k.id, k.scopes, k.last_used_at "
            "FROM api_keys k JOIN users u ON u.id = k.user_id "
            "WHERE k.key_hash = ? AND k.revoked_at IS NULL AND u.disabled = 0 "
            "AND (k.expires_at IS NULL OR k.expires_at > ?)",
            (key_hash, now),
        )
        if not rows:
            return None
        uid, username, role, key_id, scopes, last_used = rows[0]
        if last_used is None or now - last_used > 60:  # at most one write a minute
            with self.engine.transaction() as db:
                db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now, key_id))
        return Identity(
            user_id=uid,
            username=username,
            role=role,
            scopes=tuple(s for s in scopes.split(",") if s),
            key_id=key_id,
        )

    # --- audit ---------------------------------------------------------------------

    def audit(
        self,
        action: str,
        *,
        actor: str | None,
        target: str | None = None,
        client: str | None = None,
        detail: str | None = None,
    ) -> None:
        with self.engine.transaction() as db:
            db.execute(
                "INSERT INTO audit_log (at, actor, action, target, client, detail) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), actor, action, target, client, detail),
            )

    def audit_log(
        self, *, limit: int, before: int | None = None, action: str | None = None
    ) -> list[AuditRow]:
        """Newest first; `before` pages on by id."""
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if before is not None:
            where.append("id < ?")
            params.append(before)
        if action is not None:
            where.append("action = ?")
            params.append(action)
        rows = self._read(
            "SELECT id, at, actor, action, target, client, detail FROM audit_log "
            f"WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            (*params, limit),
        )
        return [
            AuditRow(
                id=r[0], at=r[1], actor=r[2], action=r[3], target=r[4], client=r[5], detail=r[6]
            )
            for r in rows
        ]

    # --- who created what ----------------------------------------------------------

    def set_image_creator(self, image: str, username: str) -> None:
        """Record the uploader of an image that has none yet (the first upload wins)."""
        with self.engine.transaction() as db:
            db.execute(
                "UPDATE images SET created_by = ? WHERE sha256 = ? AND created_by IS NULL",
                (username, image),
            )

    def set_description_creator(self, image: str, method: str, username: str) -> None:
        """Record who wrote (or last replaced) a description."""
        with self.engine.transaction() as db:
            db.execute(
                "UPDATE descriptions SET created_by = ? WHERE image_sha256 = ? AND method = ?",
                (username, image, method),
            )
