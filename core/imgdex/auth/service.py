"""`AuthService`: the blocking operations on users, sessions and keys that the API and
the CLI share, each writing its audit row. Call from worker threads."""

from __future__ import annotations

import re
import secrets
import time

from imgdex.auth.passwords import DUMMY_HASH, check_strength, hash_password, verify_password
from imgdex.auth.policy import ROLES, SCOPES, Principal, role_scopes
from imgdex.auth.ratelimit import LoginLimiter
from imgdex.auth.tokens import KEY_PREFIX, hash_token, new_key, new_session_token
from imgdex.catalog.users import ApiKeyRow, Identity, UserRow, UserStore
from imgdex.config import AuthConfig
from imgdex.errors import BadRequest, Conflict, ImgdexError, NotFound

__all__ = ["ADMIN_TOKEN_NAME", "AuthService", "Forbidden", "LoginFailed", "TooManyAttempts"]

ADMIN_TOKEN_NAME = "admin-token"
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class Forbidden(ImgdexError):
    status = 403
    code = "forbidden"


class LoginFailed(ImgdexError):
    status = 401
    code = "unauthorized"


class TooManyAttempts(ImgdexError):
    status = 429
    code = "too_many_requests"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins: try again in {retry_after} s")
        self.retry_after = retry_after


def check_username(name: str) -> str:
    if not _USERNAME.match(name):
        raise BadRequest(
            "a username has 1-64 characters: letters, digits and . _ @ - "
            "(starting with a letter or digit)",
            code="bad_username",
        )
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise BadRequest(f"unknown role {role!r}: one of {', '.join(ROLES)}", code="bad_role")
    return role


class AuthService:
    """Users, sessions and keys over the catalog's `UserStore`."""

    def __init__(self, store: UserStore, config: AuthConfig, admin_token: str | None) -> None:
        self.store = store
        self.config = config
        self.admin_token = admin_token
        self.limiter = LoginLimiter(
            config.login_attempts_per_account,
            config.login_attempts_per_address,
            config.login_window,
        )

    @property
    def open_mode(self) -> bool:
        return self.config.mode == "none"

    # --- credentials -> principal --------------------------------------------------

    def bearer(self, token: str) -> Principal | None:
        """The principal of a bearer credential (admin token or API key); None if invalid."""
        if self.admin_token and secrets.compare_digest(token.encode(), self.admin_token.encode()):
            return Principal(
                name=ADMIN_TOKEN_NAME, role="admin", scopes=frozenset(SCOPES), via="bearer"
            )
        if not token.startswith(KEY_PREFIX):
            return None
        identity = self.store.key_identity(hash_token(token))
        if identity is None:
            return None
        return _principal(identity, "bearer")

    def session(self, token: str) -> Principal | None:
        """The principal of a session cookie; None when unknown, expired or idle."""
        identity = self.store.session_identity(hash_token(token), self.config.session_idle_timeout)
        return None if identity is None else _principal(identity, "cookie")

    # --- login -------------------------------------------------------------------

    def login(self, username: str, password: str, client: str) -> tuple[UserRow, str]:
        """Check a password; returns the user and a new session token (the cookie value)."""
        if wait := self.limiter.retry_after(username, client):
            self.store.audit("login_throttled", actor=username[:64], client=client)
            raise TooManyAttempts(wait)
        found = self.store.password_hash(username) if _USERNAME.match(username) else None
        # Unknown users are checked against a dummy hash: the same time as a wrong password.
        ok = verify_password(found[1] if found else DUMMY_HASH, password)
        if not found or not ok or found[0].disabled:
            self.limiter.failed(username, client)
            self.store.audit("login_failed", actor=username[:64], client=client)
            raise LoginFailed("wrong username or password")
        user = found[0]
        self.limiter.succeeded(username)
        token = new_session_token()
        self.store.create_session(hash_token(token), user.id, self.config.session_lifetime, client)
        self.store.audit("login", actor=user.username, client=client)
        return user, token

    def logout(self, principal: Principal) -> None:
        if principal.session_id is not None and principal.user_id is not None:
            self.store.delete_sessions(principal.user_id, principal.session_id)
            self.store.audit("logout", actor=principal.name)

    # --- users -------------------------------------------------------------------

    def create_user(self, username: str, password: str, role: str, actor: str | None) -> UserRow:
        check_username(username)
        check_role(role)
        check_strength(password)
        if self.store.get_user(username) is not None:
            raise Conflict(f"user {username!r} exists", code="user_exists")
        user = self.store.create_user(username, hash_password(password), role)
        self.store.audit("user_created", actor=actor, target=username, detail=f"role={role}")
        return user

    def update_user(
        self,
        username: str,
        actor: str | None,
        *,
        role: str | None = None,
        disabled: bool | None = None,
        password: str | None = None,
    ) -> UserRow:
        if role is not None:
            check_role(role)
        if password is not None:
            check_strength(password)
        demoted = (role is not None and role != "admin") or disabled is True
        current = self.store.get_user(username)
        if demoted and current is not None and current.role == "admin" and not current.disabled:
            admins = [u for u in self.store.list_users() if u.role == "admin" and not u.disabled]
            if len(admins) == 1:
                raise Conflict(
                    f"{username} is the last active admin: make another admin first",
                    code="last_admin",
                )
        pw_hash = hash_password(password) if password is not None else None
        user = self.store.update_user(username, role=role, disabled=disabled, password_hash=pw_hash)
        if user is None:
            raise NotFound(f"no user {username!r}", code="unknown_user")
        if role is not None:
            self.store.audit("role_changed", actor=actor, target=username, detail=f"role={role}")
        if disabled is not None:
            action = "user_disabled" if disabled else "user_enabled"
            self.store.audit(action, actor=actor, target=username)
        if password is not None:
            self.store.audit("password_reset", actor=actor, target=username)
        return user

    # --- API keys ----------------------------------------------------------------

    def create_key(
        self, owner: Principal, name: str, scopes: list[str], expires_at: float | None
    ) -> tuple[ApiKeyRow, str]:
        """A new key of `owner` (a user); returns its row and the key, shown once."""
        if owner.user_id is None or owner.role is None:
            raise Forbidden("API keys belong to users: log in as one", code="not_a_user")
        if not name.strip() or len(name) > 100:
            raise BadRequest("a key needs a name of 1-100 characters", code="bad_key_name")
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown or not scopes:
            raise BadRequest(
                f"scopes must be a non-empty list of {', '.join(SCOPES)}", code="bad_scopes"
            )
        beyond = sorted(set(scopes) - role_scopes(owner.role))
        if beyond:
            raise Forbidden(
                f"a key cannot exceed its owner's role ({owner.role}): {', '.join(beyond)}",
                code="scope_exceeds_role",
            )
        if expires_at is not None and expires_at <= time.time():
            raise BadRequest("expires_at is in the past", code="bad_expiry")
        key = new_key()
        row = self.store.create_key(
            owner.user_id,
            name.strip(),
            key_hash=hash_token(key),
            scopes=tuple(sorted(set(scopes))),
            expires_at=expires_at,
        )
        self.store.audit(
            "key_created", actor=owner.name, target=str(row.id), detail=",".join(row.scopes)
        )
        return row, key

    def revoke_key(self, actor: Principal, key_id: int) -> None:
        """Revoke a key of one's own, or anyone's as admin; 404 either way when not
        visible (no telling whether a key id exists)."""
        row = self.store.get_key(key_id)
        if row is None or not (row.user_id == actor.user_id or actor.allows("admin")):
            raise NotFound(f"no key {key_id}", code="unknown_key")
        self.store.revoke_key(key_id)
        self.store.audit("key_revoked", actor=actor.name, target=str(key_id), detail=row.username)


def _principal(identity: Identity, via: str) -> Principal:
    scopes = role_scopes(identity.role)
    if identity.scopes is not None:
        scopes = scopes & frozenset(identity.scopes)  # never beyond the owner's role
    return Principal(
        name=identity.username,
        role=identity.role,
        scopes=scopes,
        via="cookie" if via == "cookie" else "bearer",
        user_id=identity.user_id,
        key_id=identity.key_id,
        session_id=identity.session_id,
    )
