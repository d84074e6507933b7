"""A standalone model service: one plugin's models behind the seed's HTTP protocol.

``imgdex serve-model NAME`` runs this app on a GPU box; the core uses it through
``services:`` entries (`imgdex.services`). The protocol is `imgdex.services.protocol`.
A plugin with several indexes or describers serves all of them; ``?index=``
(``?method=``) picks one. With an API key, every POST needs ``Authorization: Bearer
<key>`` (or ``X-API-Key``); ``/health`` stays open. Errors use the core's JSON error shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State, UploadFile
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromQuery
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from imgdex.api.errors import exception_handlers
from imgdex.api.request import THREAD_DECODE_BYTES, request_class
from imgdex.config import Config
from imgdex.errors import BadRequest, ServiceUnavailable
from imgdex.imaging import decode_image
from imgdex.models.vectors import BadVectors, as_vectors
from imgdex.providers import Embedder, as_caption
from imgdex.services.protocol import DescribeReply, EmbedReply, HealthReply, TextRequest
from imgdex.services.served import ModelService, ServedModel, load_plugin

if TYPE_CHECKING:
    from PIL.Image import Image

# ModelService and load_plugin are re-exported: callers built services from here first.
__all__ = ["ModelService", "create_model_app", "load_plugin"]

log = logging.getLogger(__name__)

MAX_ITEMS = 256  # images or texts per request
MAX_TEXT_CHARS = 100_000


def api_key_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """With an API key configured: ``Authorization: Bearer <key>`` or ``X-API-Key``."""
    expected: str | None = connection.app.state.api_key
    if expected is None:
        return
    scheme, _sep, token = connection.headers.get("authorization", "").partition(" ")
    given = token.strip() if scheme.lower() == "bearer" else ""
    given = given or connection.headers.get("x-api-key", "")
    if not secrets.compare_digest(given.encode(), expected.encode()):
        raise NotAuthorizedException("this model service needs 'Authorization: Bearer <api key>'")


def _service(request: Request[Any, Any, Any]) -> ModelService:
    service: ModelService = request.app.state.service
    return service


async def _images(request: Request[Any, Any, Any], config: Config) -> list[Image]:
    """Every file part of a multipart body, decoded (in a thread) with the core's checks."""
    form = await request.form()
    # In the order sent: parts of one field name keep their order, and field names follow
    # their first appearance (multi_items() would iterate a set).
    files = [v for key in form for v in form.getall(key) if isinstance(v, UploadFile)]
    if not files:
        raise BadRequest("send the image(s) as multipart/form-data file parts", code="missing_file")
    if len(files) > MAX_ITEMS:
        raise BadRequest(f"at most {MAX_ITEMS} images per request", code="too_many_items")
    payloads = []
    for file in files:
        try:
            payloads.append(await file.read())
        finally:
            await file.close()
    return await asyncio.to_thread(
        lambda: [decode_image(data, config.images).image for data in payloads]
    )


def _vectors_body(model: ServedModel[Embedder], vectors: object, n: int) -> EmbedReply:
    try:
        array = as_vectors(vectors, n)
    except BadVectors as exc:
        raise ServiceUnavailable(f"the model returned {exc}") from None
    e = model.provider
    return EmbedReply(
        dimension=int(array.shape[1]),
        model=e.model,
        version=e.version,
        index=e.index_name,
        count=n,
        embeddings=array.tolist(),
    )


@get("/health", summary="Model state, name, version, dimension and index")
async def health(request: Request[Any, Any, Any]) -> Response[HealthReply]:
    body = _service(request).health()
    ok = body.status == "ok"
    return Response(body, status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE)


@post(
    "/embed/image",
    status_code=HTTP_200_OK,
    guards=[api_key_guard],
    summary="Embed one or several images",
)
async def embed_image(
    request: Request[Any, Any, Any], index: FromQuery[str | None] = None
) -> EmbedReply:
    service = _service(request)
    model = service.embedder(index, "image")
    images = await _images(request, service.config)
    vectors = await asyncio.to_thread(model.run, lambda e: e.embed_images(images))
    service.counts["embed_image"] += 1
    body = _vectors_body(model, vectors, len(images))
    if len(images) == 1 and body.embeddings:
        # The seed's shape: `embedding` for one image, `embeddings` for several.
        body.embedding, body.embeddings = body.embeddings[0], None
    return body


def _decode_texts(body: bytes) -> TextRequest:
    return msgspec.json.decode(body, type=TextRequest)


@post(
    "/embed/text",
    status_code=HTTP_200_OK,
    guards=[api_key_guard],
    summary="Embed one or several texts",
)
async def embed_text(
    request: Request[Any, Any, Any], index: FromQuery[str | None] = None
) -> EmbedReply:
    service = _service(request)
    model = service.embedder(index, "text")
    body = await request.body()
    try:
        # A batch may legitimately be megabytes (MAX_ITEMS long texts): decode it off the loop.
        if len(body) > THREAD_DECODE_BYTES:
            data = await asyncio.to_thread(_decode_texts, body)
        else:
            data = _decode_texts(body)
    except msgspec.DecodeError as exc:
        raise BadRequest(
            f'expected JSON {{"text": ...}} or {{"texts": [...]}}: {exc}', code="invalid_json"
        ) from None
    if (data.text is None) == (data.texts is None):
        raise BadRequest('give exactly one of "text" or "texts"', code="bad_texts")
    texts = [data.text] if data.text is not None else list(data.texts or [])
    if not texts or len(texts) > MAX_ITEMS:
        raise BadRequest(f'"texts" must hold 1 to {MAX_ITEMS} strings', code="bad_texts")
    for text in texts:
        if not text.strip() or len(text) > MAX_TEXT_CHARS:
            raise BadRequest(
                f"every text must be non-empty and at most {MAX_TEXT_CHARS} characters",
                code="bad_texts",
            )
    vectors = await asyncio.to_thread(model.run, lambda e: e.embed_texts(texts, query=data.query))
    service.counts["embed_text"] += 1
    out = _vectors_body(model, vectors, len(texts))
    if data.text is not None and out.embeddings:
        out.embedding = out.embeddings[0]
    return out


@post(
    "/describe",
    status_code=HTTP_200_OK,
    guards=[api_key_guard],
    summary="Describe one or several images",
)
async def describe(
    request: Request[Any, Any, Any], method: FromQuery[str | None] = None
) -> DescribeReply:
    service = _service(request)
    model = service.describer(method)
    images = await _images(request, service.config)
    texts: Sequence[Any] = await asyncio.to_thread(model.run, lambda d: d.describe_images(images))
    if not isinstance(texts, list | tuple) or len(texts) != len(images):
        raise ServiceUnavailable(f"the describer returned {len(texts)} texts for {len(images)}")
    try:
        captions = [as_caption(t) for t in texts]
    except TypeError as exc:
        raise ServiceUnavailable(f"the describer: {exc}") from None
    service.counts["describe"] += 1
    descriptions = [c.text for c in captions]
    return DescribeReply(
        descriptions=descriptions,
        method=model.provider.method,
        model=model.provider.model,
        description=descriptions[0] if len(descriptions) == 1 else None,
        tags=[list(c.tags) for c in captions] if any(c.tags for c in captions) else None,
    )


def create_model_app(
    config: Config,
    plugin: str,
    *,
    plugins: dict[str, object] | None = None,
    entry_points: bool = True,
    api_key: str | None = None,
    preload: bool = True,
) -> Litestar:
    """The model service app for one plugin. The plugin is loaded here (not in the
    lifespan), so a missing plugin is a `ConfigError` before anything listens."""
    record = load_plugin(config, plugin, plugins=plugins, entry_points=entry_points)
    service = ModelService(config, record)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        loader = asyncio.create_task(asyncio.to_thread(service.preload)) if preload else None
        try:
            yield
        finally:
            if loader is not None:
                loader.cancel()

    return Litestar(
        route_handlers=[health, embed_image, embed_text, describe],
        lifespan=[lifespan],
        state=State({"service": service, "api_key": api_key or None}),
        exception_handlers=exception_handlers,
        request_max_body_size=config.server.max_upload_bytes,
        # Client disconnects are counted and logged as such, not as 500s.
        request_class=request_class(config.server.max_json_bytes),
        logging_config=None,
        debug=False,
    )
