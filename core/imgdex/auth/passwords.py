"""Password hashing with argon2id (argon2-cffi's defaults, RFC 9106's low-memory profile).

`verify` against `DUMMY_HASH` when the user does not exist, so an unknown username
costs the same time as a wrong password and login answers do not reveal which names
exist.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from imgdex.errors import BadRequest

__all__ = ["DUMMY_HASH", "MIN_LENGTH", "check_strength", "hash_password", "verify_password"]

MIN_LENGTH = 8
MAX_LENGTH = 1024  # argon2 hashes any length; a megabyte password is only a way to burn CPU

_hasher = PasswordHasher()  # argon2id
DUMMY_HASH = _hasher.hash("imgdex: no such user")


def check_strength(password: str) -> None:
    """Refuse passwords too short to resist guessing (or absurdly long)."""
    if len(password) < MIN_LENGTH:
        raise BadRequest(
            f"the password must have at least {MIN_LENGTH} characters", code="weak_password"
        )
    if len(password) > MAX_LENGTH:
        raise BadRequest(
            f"the password must have at most {MAX_LENGTH} characters", code="bad_password"
        )


def hash_password(password: str) -> str:
    """An argon2id hash (blocking: ~50 ms of CPU)."""
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    """Whether `password` matches the stored hash (blocking)."""
    try:
        return _hasher.verify(stored, password[:MAX_LENGTH])
    except (VerificationError, InvalidHashError):
        return False
