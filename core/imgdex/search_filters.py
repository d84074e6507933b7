"""What a filtered or date-sorted search needs from the catalog, as two narrow callables.

The searcher never reads image metadata itself: `Allowed` turns filters into the set of
live images that match (None: no condition, everything is allowed) and `TakenAt` looks up
when images were taken. `Scope` evaluates a search's filters once, lazily, in whichever
worker call needs them first, so the per-index calls of one search share the answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from imgdex.errors import BadRequest
from imgdex.filters import ImageFilters

if TYPE_CHECKING:
    from imgdex.catalog import Catalog
    from imgdex.ops.fusion import FusedResult

__all__ = ["Allowed", "Scope", "TakenAt", "catalog_allowed", "catalog_taken_at", "sort_by_taken_at"]

Allowed = Callable[[ImageFilters], "set[str] | None"]
"""Filters -> the live images matching them, or None when the filters are empty."""
TakenAt = Callable[[Sequence[str]], "dict[str, str | None]"]
"""Image ids -> when each was taken (ISO 8601), None when unknown."""


def catalog_allowed(catalog: Catalog) -> Allowed:
    """`Allowed` answered by the catalog's ``images.filter_ids``."""

    def allowed(filters: ImageFilters) -> set[str] | None:
        return None if filters.empty else catalog.images.filter_ids(filters)

    return allowed


def catalog_taken_at(catalog: Catalog) -> TakenAt | None:
    """`TakenAt` from the catalog's ``images.taken_at``, None while the catalog has no
    capture dates (the metadata work adds them)."""
    lookup: TakenAt | None = getattr(catalog.images, "taken_at", None)
    return lookup


class Scope:
    """One search's filters, evaluated at most once (blocking: call from a worker)."""

    def __init__(self, filters: ImageFilters | None, allowed: Allowed) -> None:
        self.filters = filters
        self._allowed = allowed
        self._lock = threading.Lock()
        self._done = filters is None or filters.empty
        self._images: set[str] | None = None

    def images(self) -> set[str] | None:
        """The images a result may be, None when any may."""
        if self._done:
            return self._images
        with self._lock:
            if not self._done:
                assert self.filters is not None
                self._images = self._allowed(self.filters)
                self._done = True
        return self._images


def sort_by_taken_at(results: Iterable[FusedResult], taken_at: TakenAt) -> list[FusedResult]:
    """Newest first; images with no capture date after the dated ones, by relevance."""
    results = list(results)
    when = taken_at([r.image for r in results])
    dated = sorted((r for r in results if when.get(r.image)), key=lambda r: str(when[r.image]))
    dated.reverse()
    return dated + [r for r in results if not when.get(r.image)]


def no_taken_at() -> BadRequest:
    """The 400 for ``sort: taken_at`` while capture dates are not recorded."""
    return BadRequest(
        "sort: taken_at is not available (this catalog does not record capture dates yet); "
        "use relevance",
        code="bad_sort",
    )
