"""What a job of each kind reads and writes: an image or a description in, vectors or a
caption out (run in the model pool, a batch at a time)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imgdex.blobs import BlobStore
from imgdex.catalog import Catalog, Job
from imgdex.config import ImagesConfig
from imgdex.errors import ImgdexError, ServiceUnavailable
from imgdex.imaging import decode_image
from imgdex.models import DescriberSlot, EmbedderSlot
from imgdex.ops.descriptions import Descriptions
from imgdex.ops.locks import ImageLocks
from imgdex.ops.vectors import VectorWriter
from imgdex.pools import Wakeup
from imgdex.registry import IMAGE_METHOD
from imgdex.tags import parse_tag_list

__all__ = ["Gone", "Handlers", "Item"]

Item = tuple[Job, Any]


class Gone(Exception):
    """The job's input is gone for good (its stored file cannot be read)."""


@dataclass(frozen=True)
class Handlers:
    images: ImagesConfig
    catalog: Catalog
    blobs: BlobStore
    vectors: VectorWriter
    descriptions: Descriptions
    wakeup: Wakeup
    locks: ImageLocks

    def load_image(self, job: Job) -> Any:
        # Read under the image's lock: a hard delete in flight finishes first (and the
        # job is gone with its image) rather than leaving an unreadable file behind.
        with self.locks.of(job.image_sha256):
            row = self.catalog.get_image(job.image_sha256)
            if row is None:
                return None
            try:
                data = self.blobs.read(row.sha256, row.filename)
            except OSError as exc:
                raise Gone(f"stored file unreadable: {exc}") from exc
        try:
            return decode_image(data, self.images).image
        except ImgdexError as exc:
            raise Gone(f"stored file unreadable: {exc.detail}") from exc

    def load_text(self, job: Job) -> str | None:
        return self.catalog.get_description(job.image_sha256, job.method)

    def store_images(self, slot: EmbedderSlot | DescriberSlot, items: list[Item]) -> None:
        assert isinstance(slot, EmbedderSlot)
        vectors = slot.embed_images([image for _, image in items])
        self.vectors.store(
            slot,
            [
                (job.image_sha256, IMAGE_METHOD, v, None)
                for (job, _), v in zip(items, vectors, strict=True)
            ],
        )

    def store_texts(self, slot: EmbedderSlot | DescriberSlot, items: list[Item]) -> None:
        assert isinstance(slot, EmbedderSlot)
        vectors = slot.embed_texts([text for _, text in items], query=False)
        self.vectors.store(
            slot,
            [
                (job.image_sha256, job.method, v, text)
                for (job, text), v in zip(items, vectors, strict=True)
            ],
        )

    def store_captions(self, slot: EmbedderSlot | DescriberSlot, items: list[Item]) -> None:
        assert isinstance(slot, DescriberSlot)
        method = slot.provider.method
        captions = slot.describe_images([image for _, image in items])
        for (job, _), caption in zip(items, captions, strict=True):
            # A describer that may find nothing to say (OCR of a photo without text) says
            # so with `empty_ok`; from others an empty answer is a fault.
            if not caption.text and not caption.tags and not slot.provider.empty_ok:
                raise ServiceUnavailable(f"{slot.name}: empty caption for {job.item}")
        for (job, _), caption in zip(items, captions, strict=True):
            tags = normalise_tags(caption.tags)
            self.descriptions.write_caption(job.image_sha256, method, caption.text, tags, job.id)
        self.wakeup.ring()  # new descriptions for the text embedders


def normalise_tags(tags: tuple[str, ...]) -> list[str]:
    """A describer's tags in their normal form, bounded: whatever a model writes."""
    return parse_tag_list(",".join(t.replace(",", " ") for t in tags), limit=20)
