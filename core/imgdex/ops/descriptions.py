"""Descriptions: store, replace or delete one `(image, method) -> text`, and embed it
in every enabled text index at once (what fails is left to the background workers)."""

from __future__ import annotations

from imgdex.blobs import BlobStore
from imgdex.catalog import Catalog
from imgdex.errors import BadRequest, Conflict, NotFound
from imgdex.ids import check_id, check_name
from imgdex.models import EmbedderSlot
from imgdex.ops.fanout import embedding_info, fan_out
from imgdex.ops.images import row_of
from imgdex.ops.locks import ImageLocks
from imgdex.ops.vectors import VectorWriter
from imgdex.pools import Pools, Wakeup
from imgdex.registry import IMAGE_METHOD, Registry
from imgdex.schemas import DescriptionResponse

__all__ = ["Descriptions"]


class Descriptions:
    def __init__(
        self,
        catalog: Catalog,
        blobs: BlobStore,
        registry: Registry,
        vectors: VectorWriter,
        pools: Pools,
        locks: ImageLocks,
        wakeup: Wakeup,
    ) -> None:
        self._catalog = catalog
        self._blobs = blobs
        self._registry = registry
        self._vectors = vectors
        self._pools = pools
        self._locks = locks
        self._wakeup = wakeup

    async def add(
        self, id_: str, method: str, content: str, creator: str | None = None
    ) -> DescriptionResponse:
        """Store (or replace) a description and embed it with every text embedder;
        `creator` is the user who wrote it (or last replaced it)."""
        check_id(id_)
        check_name(method, "description method")
        if method == IMAGE_METHOD:
            raise BadRequest(
                "the method name 'image' is reserved for image vectors", code="reserved_method"
            )
        content = content.strip()
        if not content:
            raise BadRequest("the description content is empty", code="empty_description")
        have, replaced = await self._pools.run_io(self._put, id_, method, content)
        if creator is not None:
            users = self._catalog.users
            await self._pools.run_io(users.set_description_creator, id_, method, creator)
        text_slots = self._registry.embedder_slots(stores="text")
        done, failed = await fan_out(
            self._pools,
            [s for s in text_slots if s.name not in have],
            lambda slot: self._embed(slot, id_, method, content),
            self._wakeup.ring,
        )
        kept = [embedding_info(s) for s in text_slots if s.name in have]
        embeddings = sorted(kept + done, key=lambda e: e.index)
        return DescriptionResponse(
            message="description added",
            sha256=id_,
            method=method,
            embeddings=embeddings,
            embedding_count=len(embeddings),
            errors=failed,
            replaced=replaced,
        )

    def _embed(self, slot: EmbedderSlot, id_: str, method: str, content: str) -> None:
        vector = slot.embed_texts([content], query=False)[0]
        self._vectors.store(slot, [(id_, method, vector, content)])

    def _put(self, id_: str, method: str, content: str) -> tuple[set[str], bool]:
        """Write the description; returns the indexes that already hold its vector and
        whether a description of this method was there before."""
        catalog = self._catalog
        with self._locks.of(id_):
            row = row_of(catalog, id_)
            if row.is_deleted:
                raise Conflict(
                    f"image {id_} is deleted; upload it again to restore it", code="image_deleted"
                )
            old = catalog.vector_entries_of(None, id_, method)
            before = catalog.get_description(id_, method)
            if before == content:
                return {e.index_name for e in old}, True
            self._blobs.put_description(id_, method, content)
            with catalog.transaction() as db:
                catalog.upsert_description(db, id_, method, content)
                catalog.delete_vector_entries(db, [e.id for e in old])
                self._registry.queue_description_jobs(db, id_, method)
            self._vectors.hide(old)
            return set(), before is not None

    def write_caption(
        self, id_: str, method: str, caption: str, tags: list[str], finish: int
    ) -> None:
        """Store a describer's caption (none when empty) and its tags, and finish its job
        `finish`, in one transaction; nothing is written when the image was deleted
        meanwhile (the job still ends)."""
        catalog = self._catalog
        if caption:
            self._blobs.put_description(id_, method, caption)
        with catalog.transaction() as db:
            if catalog.has_image(db, id_):
                if caption:
                    catalog.upsert_description(db, id_, method, caption)
                    self._registry.queue_description_jobs(db, id_, method)
                catalog.tags.add_tags(db, id_, tags, method)
            catalog.finish_jobs(db, [finish])

    async def delete(self, id_: str, method: str) -> None:
        check_id(id_)
        check_name(method, "description method")
        await self._pools.run_io(self._delete, id_, method)

    def _delete(self, id_: str, method: str) -> None:
        catalog = self._catalog
        with self._locks.of(id_):
            row_of(catalog, id_)
            old = catalog.vector_entries_of(None, id_, method)
            with catalog.transaction() as db:
                if not catalog.delete_description(db, id_, method):
                    raise NotFound(
                        f"image {id_} has no description {method!r}",
                        code="description_not_found",
                    )
                catalog.delete_vector_entries(db, [e.id for e in old])
            self._vectors.hide(old)
            self._blobs.remove_description(id_, method)
