"""The catalog's typed records, and the kinds of background job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

__all__ = [
    "AlbumRow",
    "DescriptionRow",
    "FailedJob",
    "ImageRow",
    "IndexEntry",
    "IndexRole",
    "Job",
    "JobKind",
    "TagRow",
    "VectorEntry",
    "vector_job_kind",
]

JobKind = Literal["embed_image", "embed_text", "describe", "find_duplicates"]


def vector_job_kind(what: str) -> JobKind:
    """The job that writes a vector of `what`: an embedder's `stores` modality, or a
    vector entry's method (``"image"``, or a description method)."""
    return "embed_image" if what == "image" else "embed_text"


@dataclass(frozen=True, slots=True)
class ImageRow:
    sha256: str
    sha256_full: str
    width: int
    height: int
    file_size: int
    format: str
    filename: str
    created_at: str
    source: str | None
    status: str
    error: str | None
    is_deleted: int
    deleted_at: str | None
    original_name: str | None = None  # the uploaded file's own name, when it had one
    taken_at: str | None = None  # ISO 8601 as the photo says (aware when it has an offset)
    camera_make: str | None = None
    camera_model: str | None = None
    camera_lens: str | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    gps_alt: float | None = None
    exif: str | None = None  # JSON of the remaining EXIF details
    favorite: int = 0
    rating: int = 0


@dataclass(frozen=True, slots=True)
class DescriptionRow:
    method: str
    content: str
    created_at: str
    updated_at: str
    indexes: tuple[str, ...]  # the indexes holding a vector of it

    @property
    def has_embedding(self) -> int:
        """1 when some index holds a vector of the description, else 0."""
        return 1 if self.indexes else 0


@dataclass(frozen=True, slots=True)
class VectorEntry:
    id: int
    image_sha256: str
    method: str
    index_name: str


class IndexEntry(NamedTuple):
    """A vector entry of one index, with what search needs of its image.

    A NamedTuple: one is built per vector when an index's label map loads, and a tuple
    is the cheapest record to build.
    """

    id: int
    image: str
    method: str
    width: int
    height: int
    image_deleted: bool

    @property
    def key(self) -> tuple[str, str, int, int]:
        """``(image, method, width, height)``."""
        return self.image, self.method, self.width, self.height


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    image_sha256: str
    method: str
    attempts: int

    @property
    def item(self) -> str:
        """How the job's item is named in reports: the image, or image/method."""
        return self.image_sha256 if self.method == "image" else f"{self.image_sha256}/{self.method}"


@dataclass(frozen=True, slots=True)
class FailedJob:
    """A job that failed for good, with the error of its last attempt."""

    job: Job
    error: str


@dataclass(frozen=True, slots=True)
class IndexRole:
    """What an index does in its model family: ``active``, ``building`` or ``retired``,
    with the plugin settings that built it (``{}`` when unknown)."""

    name: str
    family: str
    plugin: str
    role: str
    settings: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TagRow:
    tag: str
    source: str  # 'user' or the describer method that produced it
    confidence: float | None
    created_at: str


@dataclass(frozen=True, slots=True)
class AlbumRow:
    id: int
    name: str
    description: str | None
    cover: str | None
    smart: str | None  # JSON {"query"?, "filters"?} of a smart album, else None
    created_at: str
    updated_at: str
    image_count: int  # live images added by hand (a smart album's are counted live)
