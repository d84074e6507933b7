"""What a filtered or date-sorted search needs from the catalog, as two narrow callables.

The searcher never reads image metadata itself: `Allowed` turns filters into the set of
live images that match (None: no condition, everything is allowed) and `TakenAt` looks up
when images were taken. `Scope` evaluates a search's filters once, lazily, in whichever
worker call needs them first, so the per-index calls of one search share the answer.

A broad filter's set is most of the library (90k ids read from the catalog and mapped
to labels per search, 175 ms at 100k). So an `Allowed` that can also answer about a few
ids (`CatalogAllowed.among`) lets a search ask only about its candidates, and the set
is enumerated only when few images near the query match (`imgdex.index.filtered`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from imgdex.errors import BadRequest
from imgdex.filters import ImageFilters
from imgdex.index.filtered import FilteredSearch

if TYPE_CHECKING:
    from imgdex.catalog import Catalog
    from imgdex.index import ManagedIndex
    from imgdex.ops.fusion import FusedResult, Hit

__all__ = [
    "Allowed",
    "CatalogAllowed",
    "Scope",
    "TakenAt",
    "catalog_allowed",
    "catalog_taken_at",
    "sort_by_taken_at",
]

Allowed = Callable[[ImageFilters], "set[str] | None"]
"""Filters -> the live images matching them, or None when the filters are empty."""
TakenAt = Callable[[Sequence[str]], "dict[str, str | None]"]
"""Image ids -> when each was taken (ISO 8601), None when unknown."""


class CatalogAllowed:
    """`Allowed` answered by the catalog, which can also say which of a few images match
    (`among`) and check filters without evaluating them (`check`)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def __call__(self, filters: ImageFilters) -> set[str] | None:
        return None if filters.empty else self.catalog.images.filter_ids(filters)

    def among(self, filters: ImageFilters, images: Collection[str]) -> set[str]:
        return self.catalog.images.matching_among(filters, images)

    def check(self, filters: ImageFilters) -> None:
        self.catalog.images.check_filters(filters)

    def count(self, filters: ImageFilters, limit: int) -> int:
        return self.catalog.images.count_matching(filters, limit)


def catalog_allowed(catalog: Catalog) -> Allowed:
    """`Allowed` answered by the catalog (`CatalogAllowed`)."""
    return CatalogAllowed(catalog)


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

    @property
    def filtered(self) -> bool:
        return self.filters is not None and not self.filters.empty

    def check(self) -> None:
        """Raise now what evaluating the filters would (a bad filter fails the request,
        not one index); with an `Allowed` that cannot check, evaluate them."""
        if not self.filtered:
            return
        check = getattr(self._allowed, "check", None)
        if check is None or self._done:
            self.images()
        else:
            assert self.filters is not None
            check(self.filters)

    def matching(self, images: Sequence[str]) -> set[str]:
        """Those of `images` a result may be: asked of the catalog about these ids
        alone, unless the whole set is at hand already."""
        if not self.filtered:
            return set(images)
        among = getattr(self._allowed, "among", None)
        if among is None or self._done:
            allowed = self.images()
            return set(images) if allowed is None else {i for i in images if i in allowed}
        assert self.filters is not None
        found: set[str] = among(self.filters, images)
        return found

    def count(self, limit: int) -> int | None:
        """How many images a result may be, counting at most `limit`; None when the
        `Allowed` cannot count (or any may be). Asked again each time: one search's
        indexes ask once each, and a count costs less than a lock."""
        if not self.filtered:
            return None
        if self._done:
            return None if self._images is None else min(len(self._images), limit)
        count = getattr(self._allowed, "count", None)
        if count is None:
            return None
        assert self.filters is not None
        found: int = count(self.filters, limit)
        return found

    def keep(self, hits: list[Hit]) -> list[Hit]:
        """The hits whose image a result may be."""
        if not self.filtered:
            return hits
        ok = self.matching(list({h.image for h in hits}))
        return [h for h in hits if h.image in ok]

    def search(self, index: ManagedIndex, methods: Collection[str] | None) -> FilteredSearch:
        """One index's filtered search (see `imgdex.index.filtered`)."""

        def among(methods: Collection[str] | None) -> npt.NDArray[np.int64]:
            allowed = self.images()
            if allowed is None:
                return np.empty(0, np.int64)
            return index.labels.labels_of(allowed, methods)

        keep = self.matching if self.filtered else None
        return FilteredSearch(index, keep, among, methods, self.count)


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
