"""A filtered vector search that asks about its candidates, not about the whole filter.

A search with filters wants the `k` nearest labels whose image matches. Two ways:

- **Post-filter.** Search the graph without a filter for more than `k` labels, and ask
  which of those candidates' images match (`Keep`: one indexed query about a few dozen
  ids). Costs about an unfiltered search when most images match.
- **Enumerate.** Turn every matching image into its labels (`Among`) and search only
  those (`VectorIndex.search_among`: exactly for a few, else hnswlib skipping the
  others through a Python callback). Costs in proportion to the matches, plus a graph
  walk that slows down as the filter narrows.

First, a count of the matching images that stops at a few thousand (`Count`, an
indexed query: 0.1 ms for 1,000): a filter matching at most `_ENUMERATE_AT_MOST`
images (or under `_MIN_SHARE` of the index) is enumerated at once, and its few labels
searched exactly. Otherwise which way is cheaper depends on the share of matching
images *near the query*, which is also what decides how far a post-filter must widen.
So the first round post-filters, and its candidates give that share: enough matches,
done; a share at or above `_MIN_SHARE`, widen by its inverse (at most `_MAX_ASK`
candidates); below it, or still short after `_ROUNDS` rounds, enumerate.

A filter used again finds its labels kept (`LabelSubset`, by `imgdex.filter_sets`, only
while nothing they depend on has changed), with the share of the index it allows: a
broad one post-filters through a bit mask, without asking the catalog; a narrower one
is searched exactly over its vectors, gathered once into one matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence

import numpy as np
import numpy.typing as npt

from imgdex.index.managed import ManagedIndex

__all__ = ["Among", "FilteredSearch", "Keep", "LabelSubset", "gathers"]

Keep = Callable[[Sequence[str]], Collection[str]]
"""Image ids -> those of them that match the filter."""
Among = Callable[[Collection[str] | None], npt.NDArray[np.int64]]
"""methods -> every label of a matching image (of those methods), ascending."""
Count = Callable[[int], "int | None"]
"""limit -> how many images match, counting at most `limit` (None: cannot tell)."""
Remember = Callable[[npt.NDArray[np.int64]], None]
"""Called with the labels an enumeration found, to keep them for the next search."""

# Below this share of matching candidates, widening until `k` match costs more than
# enumerating the matches (bench/filtered.py: a graph search for 3,000 labels and the
# catalog's answer about them take about what the enumeration of 1% of 100k does).
_MIN_SHARE = 0.02
_MAX_ASK = 4096
_ROUNDS = 3
_MARGIN = 1.3  # ask for 30% more than the share predicts, plus a few
# A filter matching at most this many images (or under `_MIN_SHARE` of the index) is
# enumerated straight away, without a first post-filter round that would find almost
# none of them: the enumeration and an exact search over the vectors of a few thousand
# labels cost less than one graph round plus the catalog's answer about it.
_ENUMERATE_AT_MOST = 2048
# A kept subset allowing at least this share of the index is post-filtered through its
# mask (a graph search for k / share labels costs under twice an unfiltered one); below
# it, an exact search over its gathered vectors costs less (bench/filtered.py: 0.3 ms
# for 10% of 100k x 384, where a graph search for 650 candidates takes 4 ms).
_POST_SHARE = 0.3
# The share a kept set allows is exact over the index (a first round's was a guess from a
# few dozen candidates): 20% more than it predicts falls short about once in 200
# searches at 50% (then a second round, twice as wide).
_KEPT_MARGIN = 1.2


class LabelSubset:
    """The labels of one index a filter allows (unique), and their vectors as one matrix,
    a row per label, when the index gathered them (`VectorIndex.gather`)."""

    def __init__(
        self, labels: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32] | None = None
    ) -> None:
        self.labels = labels
        self.vectors = vectors
        self._mask = np.zeros(int(labels.max()) + 1 if len(labels) else 0, np.bool_)
        self._mask[labels] = True

    def changed(
        self,
        allowed: npt.NDArray[np.int64],
        refused: npt.NDArray[np.int64],
        gather: Callable[[npt.NDArray[np.int64]], npt.NDArray[np.float32] | None],
    ) -> LabelSubset:
        """This set with the labels `allowed` in and `refused` out; the vectors of new
        labels come from `gather` (the set drops its matrix when it cannot give them)."""
        # Through the mask, in time linear in the set (sorting 90k labels took 35 ms).
        leaving = refused[self.allows(refused)]
        new = np.unique(allowed[~self.allows(allowed)])
        if not len(leaving) and not len(new):
            return self
        labels, vectors = self.labels, self.vectors
        if len(leaving):
            gone = np.zeros(len(self._mask), np.bool_)
            gone[leaving] = True
            stay = ~gone[labels]
            labels = labels[stay]
            vectors = None if vectors is None else vectors[stay]
        if len(new):
            labels = np.concatenate([labels, new])
            more = None if vectors is None else gather(new)
            vectors = None if vectors is None or more is None else np.concatenate([vectors, more])
        return LabelSubset(labels, vectors)

    def allows(self, labels: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        inside = labels < len(self._mask)
        out = np.zeros(len(labels), np.bool_)
        out[inside] = self._mask[labels[inside]]
        return out

    @property
    def nbytes(self) -> int:
        vectors = 0 if self.vectors is None else self.vectors.nbytes
        return self.labels.nbytes + self._mask.nbytes + vectors


def gathers(allowed: int, size: int) -> bool:
    """Whether a kept subset of `allowed` labels of an index of `size` is searched
    exactly, so worth its vectors gathered (else it is post-filtered)."""
    return allowed < _POST_SHARE * size


class FilteredSearch:
    """The `k` nearest labels of one index whose images match; called with a growing `k`
    while the caller needs more images. `total` bounds how many labels it can return
    (the index's size, until the matches are enumerated or exhausted)."""

    def __init__(
        self,
        index: ManagedIndex,
        keep: Keep | None,
        among: Among,
        methods: Collection[str] | None = None,
        count: Count | None = None,
        *,
        subset: LabelSubset | None = None,
        remember: Remember | None = None,
    ) -> None:
        self.index = index
        self._keep = keep
        self._among = among
        self._count = count
        self._methods = None if methods is None else set(methods)
        self._matches: dict[str, bool] = {}  # images asked about in this search
        self._labels: npt.NDArray[np.int64] | None = None  # enumerated, once needed
        self._subset = subset
        self._remember = remember
        self.total = len(index) if subset is None else len(subset.labels)
        self.enumerated = False
        self.rounds = 0  # post-filter rounds run

    def __call__(
        self, vector: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        if k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        if self._keep is None:
            return self.index.search(vector, k)
        if self._subset is not None:
            return self._search_subset(self._subset, vector, k)
        if self._labels is not None:
            return self.index.search(vector, k, self._labels)
        size = len(self.index)
        if self._count is not None:
            few = max(_ENUMERATE_AT_MOST, math.ceil(_MIN_SHARE * size))
            count, self._count = self._count, None  # once per search
            counted = count(few + 1)
            if counted is not None and counted <= few:
                return self._enumerate(vector, k)
        ask = min(size, k + k // 4 + 8)  # enough when most images match
        for _ in range(_ROUNDS):
            labels, scores = self.index.search(vector, ask)
            self.rounds += 1
            mask = self._match(labels)
            matched = int(np.count_nonzero(mask))
            if matched >= k or ask >= size:
                if ask >= size:  # every label was a candidate: these are all the matches
                    self.total = matched
                return labels[mask][:k], scores[mask][:k]
            if len(labels) < ask:
                break  # the graph could not give `ask` labels: let the enumeration answer
            share = matched / len(labels)
            if share < _MIN_SHARE:
                break
            ask = min(size, max(2 * ask, math.ceil(k / share * _MARGIN) + 16))
            if ask > _MAX_ASK:
                break
        return self._enumerate(vector, k)

    def _search_subset(
        self, subset: LabelSubset, vector: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        size = len(self.index)
        allowed = len(subset.labels)
        if not allowed:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        if subset.vectors is None and not gathers(allowed, size):
            ask = min(size, math.ceil(k * size / allowed * _KEPT_MARGIN) + 8)
            while ask <= _MAX_ASK:
                labels, scores = self.index.search(vector, ask)
                self.rounds += 1
                mask = subset.allows(labels)
                if int(np.count_nonzero(mask)) >= k or ask >= size:
                    return labels[mask][:k], scores[mask][:k]
                if len(labels) < ask:
                    break  # many hidden: the graph could not give `ask` labels
                ask = min(size, 2 * ask)
        self.enumerated = True
        return self.index.search(vector, k, subset.labels, subset.vectors)

    def _enumerate(
        self, vector: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        self._labels = self._among(self._methods)
        if self._remember is not None:
            self._remember(self._labels)
        self.total = len(self._labels)
        self.enumerated = True
        if not len(self._labels):
            return np.empty(0, np.int64), np.empty(0, np.float32)
        return self.index.search(vector, k, self._labels)

    def _match(self, labels: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Which candidates may be returned: their image matches (asking `keep` only about
        images not asked before) and their method is wanted. A label the label map cannot
        answer for is kept: the caller resolves it through the catalog and checks it."""
        assert self._keep is not None
        entries, _, _ = self.index.resolve(labels.tolist())
        fresh = list({image for image, _ in entries.values() if image not in self._matches})
        if fresh:
            kept = self._keep(fresh)
            for image in fresh:
                self._matches[image] = image in kept
        methods = self._methods
        out = np.ones(len(labels), np.bool_)
        for i, label in enumerate(labels.tolist()):
            entry = entries.get(label)
            if entry is not None:
                image, method = entry
                out[i] = self._matches[image] and (methods is None or method in methods)
        return out
