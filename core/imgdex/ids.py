"""Image ids and the names that become file or index names: how they are made and checked."""

from __future__ import annotations

import hashlib
import re

from imgdex.errors import BadRequest

__all__ = ["ID_LENGTH", "check_id", "check_name", "image_id", "is_id", "sha256_hex"]

ID_LENGTH = 32
_ID_RE = re.compile(r"[0-9a-f]{32}")
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_id(full_sha256: str) -> str:
    """The image id: the first 32 hex characters (128 bits) of the SHA-256."""
    return full_sha256[:ID_LENGTH]


def is_id(value: str) -> bool:
    return bool(_ID_RE.fullmatch(value))


def check_id(value: str) -> str:
    """Validate an image id from a client; raises 400 for anything but 32 lowercase hex."""
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise BadRequest(
            f"invalid image id {str(value)[:80]!r}: expected 32 lowercase hex characters",
            code="invalid_id",
        )
    return value


def check_name(value: str, what: str = "name") -> str:
    """Names that become file names (methods, indexes): letters, digits, ``_ . -``."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value) or ".." in value:
        raise BadRequest(
            f"invalid {what} {str(value)[:80]!r}: use 1-64 letters, digits, '_', '.', '-'",
            code="invalid_name",
        )
    return value
