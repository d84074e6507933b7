"""Near-duplicates: resized, re-encoded or lightly edited copies of an image.

Exact byte copies are already one image. A `find_duplicates` job per image and image
index compares the image's stored vector with its nearest neighbours in that index and
records the pairs at least ``duplicates.min_score`` alike. `DuplicateFinder.run_once`,
which the app runs every ``worker.interval``, plans jobs for the images the index holds
and has not checked (at start every one, a backfill; then those embedded since) and
runs them.
`groups` lists a page of the groups the pairs make (`imgdex.ops.duplicate_groups`,
which keeps them while the pairs stay the same); `resolve` keeps one image of a group
and moves the others to the trash (a soft delete, restorable).
"""

from __future__ import annotations

import logging
import time
from typing import Annotated

from msgspec import Meta, Struct

from imgdex.blobs import BlobStore
from imgdex.catalog import Catalog
from imgdex.config import Config, DuplicatesConfig
from imgdex.errors import BadRequest, NotFound
from imgdex.ids import check_id
from imgdex.index import IndexManager
from imgdex.ops.deletion import Deletion
from imgdex.ops.duplicate_groups import DuplicateImage, GroupCache
from imgdex.pools import Pools
from imgdex.registry import Registry

__all__ = [
    "DuplicateFinder",
    "DuplicateGroup",
    "DuplicateImage",
    "Duplicates",
    "DuplicatesResponse",
    "GroupsQuery",
    "ResolveRequest",
    "ResolveResponse",
]

log = logging.getLogger(__name__)

MAX_TRASH = 1000
# A page of groups, and the images shown of each: a library of near-identical pictures
# (or a low threshold) chains thousands of images into one group.
DEFAULT_LIMIT = 100
DEFAULT_PER_GROUP = 100
MAX_PAGE = 1000
Sha = Annotated[str, Meta(pattern="^[0-9a-f]{32}$")]


class DuplicateGroup(Struct, kw_only=True, frozen=True):
    id: str  # the group's smallest image id: stable while the group stays the same
    size: int  # all its images; `images` holds at most `per_group` of them
    images: list[DuplicateImage]


class DuplicatesResponse(Struct, kw_only=True, frozen=True):
    threshold: float
    total: int  # groups in all
    offset: int
    limit: int
    per_group: int
    groups: list[DuplicateGroup]


class GroupsQuery(Struct, kw_only=True, frozen=True):
    """Which groups a listing shows: `threshold` (None: ``duplicates.threshold``), a
    page of `limit` groups from `offset`, at most `per_group` images each."""

    threshold: float | None = None
    offset: int = 0
    limit: int = DEFAULT_LIMIT
    per_group: int = DEFAULT_PER_GROUP


class ResolveRequest(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    keep: Sha
    trash: Annotated[list[Sha], Meta(min_length=1, max_length=MAX_TRASH)]


class ResolveResponse(Struct, kw_only=True, frozen=True):
    kept: str
    trashed: list[str]


class DuplicateFinder:
    """Runs `find_duplicates` jobs (blocking: call `run_once` from a worker thread)."""

    def __init__(
        self,
        config: Config,
        registry: Registry,
        catalog: Catalog,
        blobs: BlobStore,
        indexes: IndexManager,
    ) -> None:
        self.config = config.duplicates
        self.batch = config.worker.batch_size * 4
        self._registry = registry
        self._catalog = catalog
        self._blobs = blobs
        self._indexes = indexes
        # Per index, the highest label already planned: each run plans only the vectors
        # added since (a cheap look-up when nothing changed), the first run everything.
        self._planned: dict[str, int] = {}

    def run_once(self) -> int:
        """Plan and run the due jobs of every enabled image index; returns how many ran."""
        if not self.config.enabled:
            return 0
        catalog = self._catalog
        done = 0
        for slot in self._registry.embedder_slots(stores="image"):
            index = self._indexes.get(slot.name)
            if index is None:  # not opened yet (its model is loading)
                continue
            last = catalog.last_label(slot.name)
            if last != self._planned.get(slot.name):
                catalog.plan_duplicate_checks(slot.name, self._planned.get(slot.name, 0))
                self._planned[slot.name] = last
            while jobs := catalog.claim_jobs("find_duplicates", slot.name, self.batch, time.time()):
                for job in jobs:
                    image = job.image_sha256
                    try:
                        vector = self._blobs.read_vector(image, slot.name, "image")
                    except (OSError, ValueError) as exc:
                        catalog.fail_job(job.id, f"no stored vector: {exc}", retry_at=None)
                        continue
                    labels, scores = index.search(vector, self.config.neighbours + 1)
                    entries, _, unknown = index.resolve(labels.tolist())
                    if unknown:
                        entries.update(catalog.resolve_entries(unknown))
                    pairs = [
                        (entries[label][0], score)
                        for label, score in zip(labels.tolist(), scores.tolist(), strict=True)
                        if label in entries and score >= self.config.min_score
                    ]
                    with catalog.transaction() as db:
                        catalog.record_duplicates(db, image, slot.name, pairs)
                        catalog.finish_jobs(db, [job.id])
                    done += 1
        return done


class Duplicates:
    """The duplicates API: groups of near-duplicates, and keeping one of a group."""

    def __init__(self, config: Config, catalog: Catalog, deletion: Deletion, pools: Pools) -> None:
        self.config = config.duplicates
        self._catalog = catalog
        self._deletion = deletion
        self._pools = pools
        # The groups per threshold, kept while the pairs and the trash stay the same.
        self.cache = GroupCache(catalog.duplicates)

    async def groups(self, query: GroupsQuery) -> DuplicatesResponse:
        return await self._pools.run_io(_groups, self.cache, self.config, query)

    async def resolve(self, request: ResolveRequest) -> ResolveResponse:
        """Keep `request.keep`, move the `trash` images to the trash (soft delete)."""
        trash = list(dict.fromkeys(check_id(i) for i in request.trash))
        keep = check_id(request.keep)
        if keep in trash:
            raise BadRequest("keep is also in trash", code="bad_request")
        rows = await self._pools.run_io(self._catalog.get_images, [keep, *trash])
        missing = [i for i in (keep, *trash) if i not in rows or rows[i].is_deleted]
        if missing:
            raise NotFound(
                f"unknown or deleted image(s): {', '.join(missing[:10])}", code="image_not_found"
            )
        for image in trash:  # each soft delete is atomic and idempotent: a retry finishes
            await self._deletion.delete(image, hard=False)
        return ResolveResponse(kept=keep, trashed=trash)


def _groups(cache: GroupCache, config: DuplicatesConfig, query: GroupsQuery) -> DuplicatesResponse:
    """A page of the groups of live images linked by pairs at least `threshold` alike
    (blocking)."""
    threshold = config.threshold if query.threshold is None else query.threshold
    if not config.min_score <= threshold <= 1:
        raise BadRequest(
            f"threshold must be between duplicates.min_score ({config.min_score}) and 1: "
            "less similar pairs are not recorded",
            code="bad_threshold",
        )
    for name, value, low, high in (
        ("offset", query.offset, 0, 1_000_000_000),
        ("limit", query.limit, 1, MAX_PAGE),
        ("per_group", query.per_group, 1, MAX_PAGE),
    ):
        if not low <= value <= high:
            raise BadRequest(f"{name} must be between {low} and {high}", code="bad_request")
    ranked = cache.groups(threshold)
    out = [
        DuplicateGroup(
            id=group.id, size=len(group.images), images=list(group.images[: query.per_group])
        )
        for group in ranked[query.offset : query.offset + query.limit]
    ]
    return DuplicatesResponse(
        threshold=threshold,
        total=len(ranked),
        offset=query.offset,
        limit=query.limit,
        per_group=query.per_group,
        groups=out,
    )
