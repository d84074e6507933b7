"""The model-service wire protocol (``imgdex serve-model``), one Struct per body.

Both sides use these: the server (`imgdex.services.server`) encodes them, the client
(`imgdex.services.client`) decodes them. Every field a server of another make may leave
out has a default, so the client accepts any service that speaks the seed's protocol;
fields are declared in the order they go on the wire.

- ``GET /health`` -> `HealthReply` (503 with ``"status": "loading"`` or ``"error"``
  until the model is usable).
- ``POST /embed/image``: multipart, one or several file parts (any field names) ->
  `EmbedReply`, with ``embedding`` for one image and ``embeddings`` for several.
- ``POST /embed/text``: `TextRequest` -> `EmbedReply` (``embeddings``, plus
  ``embedding`` when the request gave one ``text``).
- ``POST /describe``: multipart images -> `DescribeReply`.

``?index=`` (``?method=``) picks one of a plugin's indexes (describers).
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "DescribeReply",
    "DescriberHealth",
    "EmbedReply",
    "ErrorReply",
    "HealthReply",
    "IndexHealth",
    "TextBatch",
    "TextRequest",
]


class TextRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /embed/text``: exactly one of `text` and `texts`."""

    text: str | None = None
    texts: list[str] | None = None
    # True for search queries (models such as Qwen3-Embedding prompt them), else documents.
    query: bool = False


class TextBatch(msgspec.Struct, kw_only=True):
    """The `TextRequest` the core sends: always a list, and whether they are queries."""

    texts: list[str]
    query: bool


class EmbedReply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The vectors and what made them. A server always fills `dimension` to `count`;
    only the unset one of `embeddings` and `embedding` is left out."""

    dimension: int | None = None
    model: str | None = None
    version: str | None = None
    index: str | None = None
    count: int | None = None
    embeddings: list[list[float]] | None = None
    embedding: list[float] | None = None


class IndexHealth(msgspec.Struct, kw_only=True):
    """One index a service embeds for, in ``/health``."""

    index: str | None = None
    model: str | None = None
    version: str | None = None
    dimension: int | None = None
    metric: str | None = None
    stores: str | None = None
    query_modalities: list[str] = msgspec.field(default_factory=list)
    state: str | None = None
    error: str | None = None


class DescriberHealth(msgspec.Struct, kw_only=True):
    """One describer a service runs, in ``/health``."""

    method: str | None = None
    model: str | None = None
    state: str | None = None
    error: str | None = None


class HealthReply(msgspec.Struct, kw_only=True):
    """``GET /health``: the first index's model at the top level (the seed's shape),
    every index and describer in the lists."""

    status: str | None = None  # ok | loading | error
    plugin: str | None = None
    model: str | None = None
    version: str | None = None
    dimension: int | None = None
    index: str | None = None
    indexes: list[IndexHealth] = msgspec.field(default_factory=list)
    describers: list[DescriberHealth] = msgspec.field(default_factory=list)
    error: str | None = None
    requests: dict[str, int] = msgspec.field(default_factory=dict)
    imgdex: str | None = None


class DescribeReply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``POST /describe``: `description` too when one image was sent."""

    descriptions: list[str]
    method: str
    model: str
    description: str | None = None
    tags: list[list[str]] | None = None  # per image, when the describer gives tags


class ErrorReply(msgspec.Struct, kw_only=True):
    """The core's JSON error shape, as far as a client reads it."""

    detail: Any = None
