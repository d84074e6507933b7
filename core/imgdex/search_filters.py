"""What a filtered or date-sorted search needs from the catalog.

The searcher never reads image metadata itself: a `FilterSource` turns filters into the
live images that match, says which of a few images match (`among`: a broad filter's set
is most of the library, 90k ids read and mapped to labels per search, 175 ms at 100k,
so a search asks about its candidates instead), counts matches up to a limit, and may
keep what a filter allows between searches (`imgdex.filter_sets`). `Scope` holds one
search's filters and evaluates them at most once, lazily, in whichever worker call
needs them first, so the per-index calls of one search share the answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from imgdex.filter_sets import FilterSets
from imgdex.filters import ImageFilters
from imgdex.index.filtered import FilteredSearch

if TYPE_CHECKING:
    from imgdex.catalog import Catalog
    from imgdex.index import ManagedIndex
    from imgdex.ops.fusion import FusedResult, Hit

__all__ = ["CatalogAllowed", "FilterSource", "Scope", "TakenAt", "sort_by_taken_at"]

TakenAt = Callable[[Sequence[str]], "dict[str, str | None]"]
"""Image ids -> when each was taken (ISO 8601), None when unknown."""


class FilterSource(Protocol):
    """Answers about filters (blocking: call from a worker)."""

    sets: FilterSets | None  # what filters allow, kept between searches

    def images(self, filters: ImageFilters) -> set[str]:
        """The live images matching non-empty `filters`."""

    def among(self, filters: ImageFilters, images: Collection[str]) -> set[str]:
        """Those of `images` that are live and match."""

    def check(self, filters: ImageFilters) -> None:
        """Raise the 4xx evaluating `filters` would, without evaluating them."""

    def count(self, filters: ImageFilters, limit: int) -> int:
        """How many live images match, counting at most `limit`."""


class CatalogAllowed:
    """The `FilterSource` of a catalog."""

    def __init__(self, catalog: Catalog, sets: FilterSets | None = None) -> None:
        self.catalog = catalog
        self.sets = sets

    def images(self, filters: ImageFilters) -> set[str]:
        return self.catalog.images.filter_ids(filters)

    def among(self, filters: ImageFilters, images: Collection[str]) -> set[str]:
        return self.catalog.images.matching_among(filters, images)

    def check(self, filters: ImageFilters) -> None:
        self.catalog.images.check_filters(filters)

    def count(self, filters: ImageFilters, limit: int) -> int:
        return self.catalog.images.count_matching(filters, limit)


class Scope:
    """One search's filters, evaluated at most once (blocking: call from a worker)."""

    def __init__(self, filters: ImageFilters | None, source: FilterSource) -> None:
        self.filters = filters if filters is not None and not filters.empty else None
        self._source = source
        self._lock = threading.Lock()
        self._images: set[str] | None = None
        self._revision_lock = threading.Lock()
        self._revision: int | None = None

    @property
    def filtered(self) -> bool:
        return self.filters is not None

    def images(self) -> set[str] | None:
        """The images a result may be, None when any may."""
        if self.filters is None:
            return None
        with self._lock:
            if self._images is None:
                self._images = self._source.images(self.filters)
            return self._images

    def check(self) -> None:
        """Raise now what evaluating the filters would (a bad filter fails the request,
        not one index)."""
        if self.filters is not None:
            self._source.check(self.filters)

    def matching(self, images: Sequence[str]) -> set[str]:
        """Those of `images` a result may be: asked of the catalog about these ids
        alone, unless the whole set is at hand already."""
        if self.filters is None:
            return set(images)
        allowed = self._images
        if allowed is not None:
            return {i for i in images if i in allowed}
        return self._source.among(self.filters, images)

    def count(self, limit: int) -> int | None:
        """How many images a result may be, counting at most `limit` (None: any may).
        Asked again each time: one search's indexes ask once each, and a count costs
        less than a lock."""
        if self.filters is None:
            return None
        allowed = self._images
        if allowed is not None:
            return min(len(allowed), limit)
        return self._source.count(self.filters, limit)

    def revision(self) -> int:
        """The facts revision this search reads at (once, before anything derived)."""
        sets = self._source.sets
        assert sets is not None
        with self._revision_lock:
            if self._revision is None:
                self._revision = sets.revision()
            return self._revision

    def keep(self, hits: list[Hit]) -> list[Hit]:
        """The hits whose image a result may be."""
        if self.filters is None:
            return hits
        ok = self.matching(list({h.image for h in hits}))
        return [h for h in hits if h.image in ok]

    def search(self, index: ManagedIndex, methods: Collection[str] | None) -> FilteredSearch:
        """One index's filtered search (see `imgdex.index.filtered`), with the labels
        the filters allow when they were kept (`imgdex.filter_sets`)."""
        filters, sets = self.filters, self._source.sets
        if filters is None:
            return FilteredSearch(index, None, _nothing, methods)
        subset, remember = None, None
        if sets is not None:
            revision = self.revision()
            version = index.labels.version  # read before the labels are
            subset = sets.get(filters, methods, index, revision)
            remember = partial(sets.remember, filters, methods, index, revision, version)

        def among(methods: Collection[str] | None) -> npt.NDArray[np.int64]:
            allowed = self.images()
            assert allowed is not None
            return index.labels.labels_of(allowed, methods)

        return FilteredSearch(
            index, self.matching, among, methods, self.count, subset=subset, remember=remember
        )


def _nothing(_: Collection[str] | None) -> npt.NDArray[np.int64]:
    return np.empty(0, np.int64)


def sort_by_taken_at(results: Iterable[FusedResult], taken_at: TakenAt) -> list[FusedResult]:
    """Newest first; images with no capture date after the dated ones, by relevance."""
    results = list(results)
    when = taken_at([r.image for r in results])
    dated = sorted((r for r in results if when.get(r.image)), key=lambda r: str(when[r.image]))
    dated.reverse()
    return dated + [r for r in results if not when.get(r.image)]
