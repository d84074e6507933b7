"""What a filter allows in each index, kept between searches while nothing it depends on
has changed.

A user filters the library (a rating, a tag, an album) and then searches it again and
again. Each filtered search would ask the catalog about its candidates or enumerate the
matches (`imgdex.index.filtered`): a few milliseconds a search for a broad filter and
tens for one matching a tenth of the library, where an unfiltered search takes half a
millisecond. So the labels a filter allows in an index are kept (`LabelSubset`: a bit
mask, and for a narrower filter its vectors gathered into one matrix), and a search
with the same filter uses them at once.

Kept sets never go stale: each is valid for one *facts revision*, the last entry of a
log the catalog appends to in the transaction of every write a filter can depend on
(SQLite triggers, so writers in other processes count too; migration 10), and for one
version of the index's label map. A search reads the revision first. A set of an older
revision or label map is brought forward through the images the log names since (a
person's edits between two searches) and the labels the map changed since (vectors
added as a library is described, or hidden): the catalog is asked about those few. It
is dropped when there were many, the map was loaded anew, or any image's matches may
have changed (an album's rule). A set is built the second time a search uses its filter
at the same revision and label map (a library being written to fast does not rebuild
sets the next writes would retire), in the background, from the catalog's matching
ids; an enumerating search hands over the labels it found. The entries share a memory
budget (``search.filter_cache_mb``), least recently used first out.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec
import numpy as np
import numpy.typing as npt

from imgdex.filters import ImageFilters
from imgdex.index.filtered import LabelSubset, gathers

if TYPE_CHECKING:
    from imgdex.catalog import Catalog
    from imgdex.index import ManagedIndex
    from imgdex.providers import VectorIndex

__all__ = ["FilterSets"]

log = logging.getLogger(__name__)

_Key = tuple[bytes, tuple[str, ...] | None, str]  # filters, methods, index name
Background = Callable[[Callable[[], None]], None]

# Filters searched without a kept set, remembered to build one on their second search.
_SEEN_AT_MOST = 512
# A kept set is brought forward through at most this many changed facts (else rebuilt).
_ADVANCE_AT_MOST = 1024
# An enumerating search keeps at most this many labels itself (gathering their vectors
# takes about 0.2 ms per 1,000 at 384-d); more are kept in the background.
_GATHER_INLINE = 4096


@dataclass(frozen=True)
class _Entry:
    revision: int
    version: int  # the label map's
    # The index object the vectors were gathered from (weakly: a set must not keep a
    # rebuilt or dropped index's graph in memory).
    index: weakref.ref[VectorIndex]
    subset: LabelSubset


class FilterSets:
    """Kept `LabelSubset`s by filter, methods and index (thread-safe)."""

    def __init__(
        self, catalog: Catalog, budget_bytes: int, background: Background | None = None
    ) -> None:
        """`background` runs a build without waiting for it (None: in the caller)."""
        self._catalog = catalog
        self._budget = budget_bytes
        self._background = background
        self._lock = threading.Lock()
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        self._bytes = 0
        # key -> (revision, label-map version) of its last search without a kept set
        self._seen: OrderedDict[_Key, tuple[int, int]] = OrderedDict()
        self._building: set[_Key] = set()

    def revision(self) -> int:
        """The catalog's facts revision: read it before anything a search derives."""
        return self._catalog.images.facts_revision()

    def get(
        self,
        filters: ImageFilters,
        methods: Collection[str] | None,
        index: ManagedIndex,
        revision: int,
    ) -> LabelSubset | None:
        """The kept set for these filters at `revision`, or None (and a build started
        when this is the filter's second search at this revision and label map: an
        index filling up with new vectors would retire each set as soon as it is built)."""
        key = _key(filters, methods, index)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and _valid(entry, revision, index):
                self._entries.move_to_end(key)
                return entry.subset
        if entry is not None and _behind(entry, revision, index):
            subset = self._advance(key, entry, filters, methods, index, revision)
            if subset is not None:
                return subset
        with self._lock:
            if entry is not None and self._entries.get(key) is entry:
                self._drop(key)
            now = (revision, index.labels.version)
            again = self._seen.pop(key, None) == now
            self._seen[key] = now
            while len(self._seen) > _SEEN_AT_MOST:
                self._seen.popitem(last=False)
            if not again or key in self._building or self._budget <= 0:
                return None
            self._building.add(key)
        version, vindex = index.labels.version, index.index

        def build() -> None:
            try:
                images = self._catalog.images.filter_ids(filters)
                index.labels.order_by_image()  # so that bringing the set forward is quick
                self._keep(key, revision, version, vindex, index.labels.labels_of(images, methods))
            except Exception:  # a build only saves time: the search went on without it
                log.exception("building the labels filter %s allows failed", filters)
            finally:
                with self._lock:
                    self._building.discard(key)

        if self._background is None:
            build()
        else:
            self._background(build)
        return None

    def _advance(
        self,
        key: _Key,
        entry: _Entry,
        filters: ImageFilters,
        methods: Collection[str] | None,
        index: ManagedIndex,
        revision: int,
    ) -> LabelSubset | None:
        """`entry`'s set brought forward to `revision` and the label map's version now,
        through the images whose facts changed since (the few a person edits between
        two searches) and the labels mapped, hidden or shown again since (vectors being
        added as a library is described): the catalog is asked about those few, not
        about the whole filter. None when there were many."""
        vindex = entry.index()
        changes = index.labels.changes_since(entry.version)
        if vindex is None or changes is None or len(changes[0]) > _ADVANCE_AT_MOST:
            return None
        changed, version = changes
        images: set[str] = set()
        if entry.revision < revision:
            found = self._catalog.images.facts_changed(entry.revision, _ADVANCE_AT_MOST)
            if found is None:
                return None
            images = found
        subset = entry.subset
        if images or len(changed):
            # Those a search can return now (alive, mapped, of `methods`) stay or come in
            # if their image matches; the others (hidden, of other methods) leave.
            labels = np.union1d(index.labels.labels_of(images, methods), changed)
            owners, _, _ = index.labels.resolve(labels.tolist())
            kinds = None if methods is None else set(methods)
            owner = {
                label: image
                for label, (image, method) in owners.items()
                if kinds is None or method in kinds
            }
            matching = self._catalog.images.matching_among(filters, set(owner.values()))
            mine = np.fromiter(
                (owner.get(label) in matching for label in labels.tolist()), np.bool_, len(labels)
            )
            subset = subset.changed(labels[mine], labels[~mine], vindex.gather)
            if subset.vectors is None and entry.subset.vectors is not None:
                return None  # a new label not in the graph yet (mapped first): build anew
        with self._lock:
            if self._entries.get(key) is entry:
                self._store(key, _Entry(revision, version, entry.index, subset))
        return subset

    def remember(
        self,
        filters: ImageFilters,
        methods: Collection[str] | None,
        index: ManagedIndex,
        revision: int,
        version: int,
        labels: npt.NDArray[np.int64],
    ) -> None:
        """Keep the labels a search enumerated for `filters` (read after `revision` and
        label-map `version` were); many are kept in the background, as gathering their
        vectors takes a while (8 ms for 10,000 at 384-d)."""
        key, vindex = _key(filters, methods, index), index.index

        def keep() -> None:
            index.labels.order_by_image()  # so that bringing the set forward is quick
            self._keep(key, revision, version, vindex, labels)

        if self._background is None:
            keep()
        elif len(labels) <= _GATHER_INLINE:
            self._keep(key, revision, version, vindex, labels)
            self._background(index.labels.order_by_image)
        else:
            self._background(keep)

    def _keep(
        self,
        key: _Key,
        revision: int,
        version: int,
        vindex: VectorIndex,
        labels: npt.NDArray[np.int64],
    ) -> None:
        vectors = None
        # One filter's vectors may take half the budget.
        if gathers(len(labels), len(vindex)) and 8 * vindex.dimension * len(labels) <= self._budget:
            vectors = vindex.gather(labels)
        subset = LabelSubset(labels, vectors)
        if subset.nbytes > self._budget:
            subset = LabelSubset(labels)  # without its vectors, it may still fit
        if subset.nbytes > self._budget:
            return
        with self._lock:
            self._store(key, _Entry(revision, version, weakref.ref(vindex), subset))

    def _store(self, key: _Key, entry: _Entry) -> None:
        """Under the lock: `entry` in place of the key's, within the budget (a set brought
        forward may have grown), the least recently used out."""
        self._drop(key)
        self._entries[key] = entry
        self._bytes += entry.subset.nbytes
        while self._bytes > self._budget:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: _Key) -> None:
        """Under the lock."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.subset.nbytes

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def _key(filters: ImageFilters, methods: Collection[str] | None, index: ManagedIndex) -> _Key:
    return (
        msgspec.json.encode(filters),
        None if methods is None else tuple(sorted(methods)),
        index.name,
    )


def _valid(entry: _Entry, revision: int, index: ManagedIndex) -> bool:
    return (entry.revision, entry.version) == (revision, index.labels.version) and (
        entry.index() is index.index
    )


def _behind(entry: _Entry, revision: int, index: ManagedIndex) -> bool:
    """Whether `entry` is of an older revision or label map (not both the same) of
    the same index."""
    mine, now = (entry.revision, entry.version), (revision, index.labels.version)
    older = mine[0] <= now[0] and mine[1] <= now[1] and mine != now
    return older and entry.index() is index.index
