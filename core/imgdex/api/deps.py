"""Dependencies shared by the controllers."""

from __future__ import annotations

import secrets
from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

from imgdex.library import Library
from imgdex.search import Searcher

__all__ = ["LibraryDep", "SearcherDep", "admin_guard", "provide_library", "provide_searcher"]


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
    expected: str = connection.app.state.admin_token
    header = connection.headers.get("authorization", "")
    scheme, _sep, token = header.partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), expected):
        raise NotAuthorizedException("admin endpoints need 'Authorization: Bearer <admin token>'")
