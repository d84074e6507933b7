"""Request and response shapes of the REST API, as msgspec Structs.

Field names follow the seed design's examples (``sha256``, ``matched_by``,
``indexes_searched`` ...) so clients written against it keep working.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from imgdex.filters import ImageFilters

__all__ = [
    "AlbumDeleted",
    "AlbumImagesRequest",
    "AlbumImagesResponse",
    "AlbumListResponse",
    "AlbumOut",
    "AlbumPatch",
    "AlbumRequest",
    "BulkTagRequest",
    "CameraOut",
    "DeleteResponse",
    "DescriptionDeleted",
    "DescriptionOut",
    "DescriptionRequest",
    "DescriptionResponse",
    "EmbeddingError",
    "EmbeddingInfo",
    "GpsOut",
    "ImageListResponse",
    "ImageOut",
    "ImagePatch",
    "IndexSearched",
    "Match",
    "SearchImageBase64Request",
    "SearchOptions",
    "SearchResponse",
    "SearchResult",
    "SearchTextRequest",
    "SmartSpec",
    "UploadResponse",
]

Method = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$", max_length=64)]
Fusion = Literal["rrf", "max"]
SearchSort = Literal["relevance", "taken_at"]


class EmbeddingInfo(Struct, kw_only=True, frozen=True):
    model: str
    index: str
    dimension: int


class EmbeddingError(Struct, kw_only=True, frozen=True):
    index: str
    model: str
    error: str


class UploadResponse(Struct, kw_only=True, frozen=True):
    message: str
    sha256: str
    width: int
    height: int
    file_size: int
    format: str
    status: str
    duplicate: bool = False
    restored: bool = False
    embeddings: list[EmbeddingInfo] = msgspec.field(default_factory=list)
    errors: list[EmbeddingError] = msgspec.field(default_factory=list)


class DescriptionOut(Struct, kw_only=True, frozen=True):
    method: str
    content: str
    has_embedding: int
    indexes: list[str]
    created_at: str
    updated_at: str


class CameraOut(Struct, kw_only=True, frozen=True):
    make: str | None = None
    model: str | None = None
    lens: str | None = None


class GpsOut(Struct, kw_only=True, frozen=True):
    lat: float
    lon: float
    alt: float | None = None


class ImageOut(Struct, kw_only=True, frozen=True):
    sha256: str
    width: int
    height: int
    file_size: int
    format: str
    created_at: str
    source: str | None
    status: str
    is_deleted: int
    deleted_at: str | None = None
    error: str | None = None
    # The name the file was uploaded as (else the stored one, ``image.<ext>``); it is
    # also the name `/file` is served under.
    filename: str | None = None
    # From the file's EXIF/XMP (null when it says nothing): when and with what it was
    # taken, where, and the remaining details (focal length, aperture, exposure ...).
    taken_at: str | None = None
    camera: CameraOut | None = None
    gps: GpsOut | None = None
    exif: dict[str, Any] = msgspec.field(default_factory=dict)
    favorite: bool = False
    rating: int = 0
    tags: list[str] = msgspec.field(default_factory=list)
    indexes: list[str] = msgspec.field(default_factory=list)
    descriptions: list[DescriptionOut] = msgspec.field(default_factory=list)


class ImageListResponse(Struct, kw_only=True, frozen=True):
    images: list[ImageOut]
    total: int
    offset: int
    limit: int


class DescriptionRequest(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    method: Method
    content: Annotated[str, Meta(min_length=1, max_length=20_000)]


class DescriptionResponse(Struct, kw_only=True, frozen=True):
    message: str
    sha256: str
    method: str
    embeddings: list[EmbeddingInfo]
    embedding_count: int
    errors: list[EmbeddingError] = msgspec.field(default_factory=list)
    # True when the image already had a description of this method (now overwritten).
    replaced: bool = False


class ImagePatch(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """What a person may change on an image (absent fields stay as they are)."""

    source: Annotated[str, Meta(max_length=200)] | msgspec.UnsetType | None = msgspec.UNSET
    favorite: bool | msgspec.UnsetType = msgspec.UNSET
    rating: Annotated[int, Meta(ge=0, le=5)] | msgspec.UnsetType = msgspec.UNSET


class DeleteResponse(Struct, kw_only=True, frozen=True):
    message: str
    sha256: str
    hard: bool


class DescriptionDeleted(Struct, kw_only=True, frozen=True):
    message: str
    sha256: str
    method: str


class AlbumDeleted(Struct, kw_only=True, frozen=True):
    """``DELETE /api/albums/{id}``: the album is gone, its images stay."""

    message: str
    album: int


class SearchOptions(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Options shared by every search request."""

    top_k: Annotated[int, Meta(ge=1, le=1000)] = 10
    offset: Annotated[int, Meta(ge=0, le=100_000)] = 0
    # One index name, a list of them, or null for every enabled index that can answer.
    index: str | list[str] | None = None
    methods: list[Method] | None = None
    min_score: float | None = None
    fusion: Fusion | None = None
    weights: dict[str, Annotated[float, Meta(ge=0)]] | None = None
    # Only images matching every condition are returned (a full page, however few match).
    filters: ImageFilters | None = None
    # relevance, or the most relevant results ordered by capture date, newest first.
    sort: SearchSort = "relevance"


class SearchTextRequest(SearchOptions, kw_only=True, frozen=True, forbid_unknown_fields=True):
    query: Annotated[str, Meta(min_length=1, max_length=4096)]


class SearchImageBase64Request(
    SearchOptions, kw_only=True, frozen=True, forbid_unknown_fields=True
):
    # Plain base64 or a data URL (data:image/png;base64,...).
    image: Annotated[str, Meta(min_length=1)]


class Match(Struct, kw_only=True, frozen=True):
    index: str
    model: str
    rank: int
    score: float
    matched_by: str
    matched_text: str | None


class SearchResult(Struct, kw_only=True, frozen=True):
    sha256: str
    score: float
    matched_by: str
    matched_text: str | None
    index: str
    model: str
    width: int
    height: int
    matches: list[Match]


class IndexSearched(Struct, kw_only=True, frozen=True):
    index: str
    model: str
    result_count: int
    error: str | None = None


class SearchResponse(Struct, kw_only=True, frozen=True):
    query: str | None
    fusion: str
    top_k: int
    offset: int
    indexes_searched: list[IndexSearched]
    results: list[SearchResult]


# --- tags and albums ---------------------------------------------------------------

TagText = Annotated[str, Meta(min_length=1, max_length=200)]
ImageId = Annotated[str, Meta(max_length=64)]


class TagsRequest(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    tags: Annotated[list[TagText], Meta(min_length=1, max_length=100)]


class TagOut(Struct, kw_only=True, frozen=True):
    tag: str
    source: str  # "user" or the describer method that produced it
    confidence: float | None = None
    created_at: str | None = None


class ImageTagsResponse(Struct, kw_only=True, frozen=True):
    sha256: str
    tags: list[TagOut]


class TagCount(Struct, kw_only=True, frozen=True):
    tag: str
    count: int


class TagListResponse(Struct, kw_only=True, frozen=True):
    tags: list[TagCount]


class BulkTagRequest(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    # Bounded by the handler (400 past `imgdex.organise.MAX_BULK_IMAGES`, with the count).
    images: list[ImageId]
    add: Annotated[list[TagText], Meta(max_length=100)] = msgspec.field(default_factory=list)
    remove: Annotated[list[TagText], Meta(max_length=100)] = msgspec.field(default_factory=list)


class BulkTagResponse(Struct, kw_only=True, frozen=True):
    message: str
    images: int


class SmartSpec(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A smart album's search, evaluated whenever the album is read."""

    query: Annotated[str, Meta(min_length=1, max_length=4096)] | None = None
    filters: ImageFilters | None = None


AlbumName = Annotated[str, Meta(min_length=1, max_length=200)]
AlbumText = Annotated[str, Meta(max_length=5000)]


class AlbumRequest(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    name: AlbumName
    description: AlbumText | None = None
    smart: SmartSpec | None = None
    cover: ImageId | None = None


class AlbumPatch(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Absent fields stay as they are; null clears description, smart or cover."""

    name: AlbumName | msgspec.UnsetType = msgspec.UNSET
    description: AlbumText | msgspec.UnsetType | None = msgspec.UNSET
    smart: SmartSpec | msgspec.UnsetType | None = msgspec.UNSET
    cover: ImageId | msgspec.UnsetType | None = msgspec.UNSET


class AlbumOut(Struct, kw_only=True, frozen=True):
    id: int
    name: str
    description: str | None
    cover: str | None  # the chosen cover, else the last image added
    smart: SmartSpec | None
    image_count: int | None  # null for a smart album with a query (known when listed)
    created_at: str
    updated_at: str


class AlbumListResponse(Struct, kw_only=True, frozen=True):
    albums: list[AlbumOut]


class AlbumImagesRequest(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    # Bounded by the handler (400 past `imgdex.organise.MAX_BULK_IMAGES`, with the count).
    images: Annotated[list[ImageId], Meta(min_length=1)]


class AlbumImagesResponse(Struct, kw_only=True, frozen=True):
    message: str
    album: int
    changed: int  # images added (or removed) that were not (or were) in it
