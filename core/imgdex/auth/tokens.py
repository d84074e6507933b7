"""Session tokens and API keys: 32 random bytes, stored only as a SHA-256 hash.

A fast hash is enough here (unlike passwords): 256 random bits cannot be guessed, so the
hash only has to be one-way.
"""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["KEY_PREFIX", "hash_token", "new_key", "new_session_token"]

KEY_PREFIX = "imgdex_"


def new_key() -> str:
    """A new API key: ``imgdex_`` + 32 random bytes (url-safe base64)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_session_token() -> str:
    """A new session cookie value (32 random bytes)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The hex SHA-256 of a token: what the catalog keeps."""
    return hashlib.sha256(token.encode()).hexdigest()
