"""Roles, scopes and the principal a request acts as.

A scope names a kind of action: ``read`` (browse, download, search), ``write`` (upload,
describe), ``delete`` (to the trash), ``admin`` (hard delete, plugins, services, jobs,
users, everyone's keys). A role is a set of scopes; a key carries scopes of its own and
never exceeds its owner's role, checked on every request (a demoted owner's keys shrink
at once).
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["ROLES", "SCOPES", "Principal", "anonymous", "role_scopes"]

SCOPES: tuple[str, ...] = ("read", "write", "delete", "admin")

ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "editor": frozenset({"read", "write", "delete"}),
    "admin": frozenset(SCOPES),
}

# What anyone may do in `auth.mode: none` (loopback only): today's open API. Admin
# endpoints still take the admin token.
OPEN_SCOPES = frozenset({"read", "write", "delete"})


def role_scopes(role: str) -> frozenset[str]:
    """The scopes of a role (none for an unknown one)."""
    return ROLES.get(role, frozenset())


class Principal(msgspec.Struct, kw_only=True, frozen=True):
    """Who a request acts as, and what it may do."""

    name: str | None  # a username, "admin-token", or None when anonymous
    role: str | None
    scopes: frozenset[str]
    via: Literal["none", "cookie", "bearer"] = "none"
    user_id: int | None = None
    key_id: int | None = None
    session_id: str | None = None
    # Why credentials that came with the request were not accepted (for the 401).
    refused: str | None = None

    @property
    def authenticated(self) -> bool:
        return self.name is not None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


def anonymous(open_mode: bool, refused: str | None = None) -> Principal:
    """The principal of a request without (valid) credentials."""
    return Principal(
        name=None, role=None, scopes=OPEN_SCOPES if open_mode else frozenset(), refused=refused
    )
