"""Dependencies shared by the controllers."""

from __future__ import annotations

import secrets
from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from imgdex.library import Library
from imgdex.search import Searcher

__all__ = [
    "LibraryDep",
    "SearcherDep",
    "admin_guard",
    "check_admin",
    "provide_library",
    "provide_searcher",
]


LibraryDep = NamedDependency[Library]
SearcherDep = NamedDependency[Searcher]


def provide_library(state: State) -> Library:
    library: Library = state.library
    return library


def provide_searcher(state: State) -> Searcher:
    searcher: Searcher = state.searcher
    return searcher


def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """``Authorization: Bearer <token>`` must carry the admin token (constant-time check)."""
    check_admin(connection)


def check_admin(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """401 without a bearer token, 403 with a wrong one (compared in constant time)."""
    expected: str = connection.app.state.admin_token
    header = connection.headers.get("authorization", "")
    scheme, _sep, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthorizedException(
            "this needs the admin credential: 'Authorization: Bearer <admin token>'"
        )
    if not secrets.compare_digest(token.strip().encode(), expected.encode()):
        raise PermissionDeniedException("the admin token is wrong")
