"""Dependencies shared by the controllers."""

from __future__ import annotations

from litestar.datastructures import State
from litestar.di import NamedDependency

from imgdex.auth.guards import require
from imgdex.library import Library
from imgdex.search import Searcher

__all__ = [
    "LibraryDep",
    "SearcherDep",
    "admin_guard",
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


# Kept for the controllers that import it: the admin scope, from the admin token, an
# admin's session or an admin key.
admin_guard = require("admin")
