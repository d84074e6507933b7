"""Request and response shapes of the REST API, as msgspec Structs.

Field names follow the seed design's examples (``sha256``, ``matched_by``,
``indexes_searched`` ...) so clients written against it keep working.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

__all__ = [
    "DeleteResponse",
    "DescriptionOut",
    "DescriptionRequest",
    "DescriptionResponse",
    "EmbeddingError",
    "EmbeddingInfo",
    "ImageListResponse",
    "ImageOut",
    "IndexSearched",
    "Match",
    "SearchImageBase64Request",
    "SearchOptions",
    "SearchResponse",
    "SearchResult",
    "SearchTextRequest",
    "UploadResponse",
]

Method = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$", max_length=64)]
Fusion = Literal["rrf", "max"]


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


class DeleteResponse(Struct, kw_only=True, frozen=True):
    message: str
    sha256: str
    hard: bool


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
