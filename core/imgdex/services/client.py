"""What a routed model calls: an HTTP client of one model service, or the plugin's own
model in this process; both answer with their results and what made them (`Served`).

The embedding side lives here; the describing side (`imgdex.services.describers`) builds
on the same `HttpService` and `InProcess` bases."""

from __future__ import annotations

import io
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import httpx
import msgspec
import numpy as np
import numpy.typing as npt

from imgdex.config import ServiceConfig
from imgdex.errors import ServiceUnavailable, detail_of
from imgdex.models.lifecycle import Lifecycle, import_for
from imgdex.models.vectors import BadVectors, as_vectors
from imgdex.providers import Describer, Embedder
from imgdex.services.protocol import (
    DescribeReply,
    EmbedReply,
    ErrorReply,
    HealthReply,
    TextBatch,
)

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "IN_PROCESS",
    "Backend",
    "Endpoint",
    "HttpService",
    "InProcess",
    "InProcessModel",
    "InputRejected",
    "MismatchError",
    "RateLimiter",
    "Served",
    "ServiceClient",
    "TargetError",
    "base_url",
    "encode_image",
]

Vectors = npt.NDArray[np.float32]
R = TypeVar("R", EmbedReply, HealthReply, DescribeReply)
P = TypeVar("P", Embedder, Describer)
IN_PROCESS = "in-process"
RATE_WINDOW = 60.0
# Paths a seed-style config may append to the base URL (``http://gpu:6010/embed/image``).
_PROTOCOL_PATHS = ("/embed/image", "/embed/text", "/describe", "/health")
_INPUT_ERRORS = frozenset({400, 413, 415, 422})


class TargetError(Exception):
    """One service target failed one call or check (counts towards taking it down)."""


class MismatchError(TargetError):
    """The target serves another model than the index holds: it must not be used."""


class InputRejected(TargetError):
    """The service refused this input (4xx): says nothing about the service's health."""


class RateLimiter:
    """At most `per_minute` requests in any 60-second window (0: unlimited)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def try_acquire(self) -> float:
        """Take a request slot and return 0.0, or return the seconds until one frees up."""
        if self.per_minute <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            while self._times and now - self._times[0] >= RATE_WINDOW:
                self._times.popleft()
            if len(self._times) < self.per_minute:
                self._times.append(now)
                return 0.0
            return self._times[0] + RATE_WINDOW - now


@dataclass(frozen=True)
class Served:
    """What a target says it serves (from ``/health`` or an answer). For a describer,
    `index` is its method and `version` and `dimension` are None."""

    model: str | None
    version: str | None
    dimension: int | None
    index: str | None


class Endpoint(Protocol):
    """What every backend of a target has, whatever it computes."""

    @property
    def url(self) -> str:
        """The service's base URL, or `IN_PROCESS`."""
        ...

    def close(self) -> None: ...


class Backend(Endpoint, Protocol):
    """The seam an embedding router calls: a remote service or the in-process model."""

    def check(self) -> Served: ...

    def embed_images(self, images: Sequence[Image]) -> tuple[Vectors, Served]: ...

    def embed_texts(self, texts: Sequence[str], query: bool) -> tuple[Vectors, Served]: ...


class InProcess(Lifecycle, Generic[P]):
    """A plugin's own provider as a target: loaded on first use, one call at a time.

    No back-off of its own (``retry_after`` 0): the router's health state decides when
    it is tried again."""

    def __init__(self, provider: P) -> None:
        super().__init__(retry_after=0.0)
        self.provider: P = provider

    def _load(self) -> None:
        import_for(self.provider)
        self.provider.load()

    def _unavailable(self, detail: str) -> str:
        return f"the in-process model failed to load: {detail}"

    @property
    def url(self) -> str:
        return IN_PROCESS

    def _served(self) -> Served:
        raise NotImplementedError

    def check(self) -> Served:
        try:
            self.ensure_loaded()
        except ServiceUnavailable as exc:
            raise TargetError(exc.detail) from exc
        return self._served()

    def close(self) -> None:
        pass


class InProcessModel(InProcess[Embedder]):
    """The plugin's own embedder in this process."""

    @property
    def embedder(self) -> Embedder:
        return self.provider

    @property
    def name(self) -> str:
        return f"{self.provider.index_name} (in-process)"

    def _served(self) -> Served:
        e = self.provider
        dimension = e.dimension
        return Served(e.model, e.version, None if dimension is None else int(dimension), None)

    def embed_images(self, images: Sequence[Image]) -> tuple[Vectors, Served]:
        served = self.check()
        with self._infer_lock:
            return np.asarray(self.embedder.embed_images(images), dtype=np.float32), served

    def embed_texts(self, texts: Sequence[str], query: bool) -> tuple[Vectors, Served]:
        served = self.check()
        with self._infer_lock:
            out = self.embedder.embed_texts(texts, query=query)
        return np.asarray(out, dtype=np.float32), served


class HttpService:
    """One model service over HTTP, with one pooled connection; `params` pick the model
    (``?index=`` or ``?method=``) on every request."""

    def __init__(self, config: ServiceConfig, params: dict[str, str]) -> None:
        self.config = config
        self.params = params
        self.base_url = base_url(config.endpoint)
        headers = {"User-Agent": "imgdex"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(config.timeout),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )

    @property
    def url(self) -> str:
        return self.base_url

    def close(self) -> None:
        self._client.close()

    def health(self) -> HealthReply:
        """``GET /health``, which must say ``ok``."""
        reply = self._request("GET", "/health", HealthReply)
        if reply.status != "ok":
            raise TargetError(f"reports status {reply.status!r}: {reply.error or 'not ready'}")
        return reply

    def post_images(self, path: str, images: Sequence[Image], reply: type[R]) -> R:
        """`images` as multipart file parts, in order, re-encoded as configured."""
        files = []
        for i, image in enumerate(images):
            data, content_type = encode_image(image, self.config)
            files.append(("files", (f"{i}.{self.config.image_format}", data, content_type)))
        return self._request("POST", path, reply, files=files)

    def _request(self, method: str, path: str, reply: type[R], **kwargs: Any) -> R:
        try:
            response = self._client.request(method, path, params=self.params, **kwargs)
        except httpx.TimeoutException:
            raise TargetError(f"no answer within {self.config.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise TargetError(detail_of(exc)) from None
        # /health answers 503 with its body while the model loads: that body is the answer.
        if response.status_code >= 400 and not (path == "/health" and _is_object(response)):
            try:
                detail = msgspec.json.decode(response.content, type=ErrorReply).detail
            except msgspec.DecodeError:
                detail = response.text[:200]
            error = InputRejected if response.status_code in _INPUT_ERRORS else TargetError
            raise error(f"HTTP {response.status_code} on {path}: {detail}")
        try:
            return msgspec.json.decode(response.content, type=reply)
        except msgspec.DecodeError as exc:
            raise TargetError(f"{path} did not answer with the protocol's JSON: {exc}") from None


class ServiceClient(HttpService):
    """A client of one embedding service (the seed's protocol)."""

    def __init__(self, config: ServiceConfig, index: str) -> None:
        super().__init__(config, {"index": index})
        self.index = index

    def check(self) -> Served:
        """``GET /health``: the service must be up and say what it serves."""
        reply = self.health()
        # A service for a plugin with several indexes lists each of them.
        mine = [i for i in reply.indexes if i.index == self.index]
        model, version, dimension, index = (
            (mine[0].model, mine[0].version, mine[0].dimension, self.index)
            if mine
            else (reply.model, reply.version, reply.dimension, reply.index)
        )
        if model is None or version is None:
            raise MismatchError("its /health does not say which model and version it serves")
        return Served(model, version, dimension, index)

    def embed_images(self, images: Sequence[Image]) -> tuple[Vectors, Served]:
        return _vectors(self.post_images("/embed/image", images, EmbedReply), len(images))

    def embed_texts(self, texts: Sequence[str], query: bool) -> tuple[Vectors, Served]:
        body = msgspec.json.encode(TextBatch(texts=list(texts), query=query))
        headers = {"Content-Type": "application/json"}
        reply = self._request("POST", "/embed/text", EmbedReply, content=body, headers=headers)
        return _vectors(reply, len(texts))


def _is_object(response: httpx.Response) -> bool:
    return response.content.lstrip()[:1] == b"{"


def base_url(endpoint: str) -> str:
    """The service's base URL; a seed-style ``.../embed/image`` suffix is dropped."""
    url = endpoint.rstrip("/")
    for suffix in _PROTOCOL_PATHS:
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


def encode_image(image: Image, config: ServiceConfig) -> tuple[bytes, str]:
    """The image as the service receives it: longest side capped, JPEG or PNG."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    side = config.max_image_side
    if side and max(rgb.size) > side:
        # thumbnail() works in place: never on the caller's image, which other models share.
        rgb = rgb.copy()
        rgb.thumbnail((side, side))
    buffer = io.BytesIO()
    if config.image_format == "png":
        rgb.save(buffer, "PNG", compress_level=1)
        return buffer.getvalue(), "image/png"
    rgb.save(buffer, "JPEG", quality=92)
    return buffer.getvalue(), "image/jpeg"


def _vectors(reply: EmbedReply, n: int) -> tuple[Vectors, Served]:
    rows = reply.embeddings
    if rows is None and reply.embedding is not None:
        rows = [reply.embedding]
    try:
        vectors = as_vectors(rows, n)
    except BadVectors as exc:
        raise TargetError(f"answered {exc}") from None
    if reply.model is None:
        raise MismatchError("its answer does not say which model made the vectors")
    return vectors, Served(reply.model, reply.version, int(vectors.shape[1]), reply.index)
