"""Model services anywhere: remote providers, routing with failover, and health checks.

An index whose plugin is named by entries under ``services:`` is served by a
`RoutingEmbedder` in place of the plugin's own embedder. It holds the index's providers:
remote model services speaking the seed's protocol (``imgdex serve-model``) and, only when
a service says ``endpoint: in-process``, the plugin's model in this process. A call goes
to the highest-priority usable provider, spread by weight (smooth weighted round robin)
across equal priorities, passes over providers at their rate limit, and fails over to the
next on error or timeout; when every provider fails it raises `NoModelService` and the
work stays pending for the enricher.

Vectors of another model never reach an index: a remote provider is checked (model,
version, dimension, index name) before its first use and after every recovery, and each
response is checked again; a mismatch takes the provider out with the reason.

`ServiceManager` owns every provider: building the slots, the periodic health check
(three failures in a row take a provider down, a passing re-check brings it back), admin
enable/disable and the reports. The rest of the core only sees an `Embedder`.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import httpx
import msgspec
import numpy as np
import numpy.typing as npt

from imgdex.config import Config, ServiceConfig
from imgdex.errors import ImgdexError, NotFound, ServiceUnavailable
from imgdex.models import EmbedderSlot, import_for
from imgdex.providers import Embedder

if TYPE_CHECKING:
    from PIL.Image import Image

    from imgdex.index import IndexManager, ManagedIndex
    from imgdex.plugins import PluginRecord

__all__ = [
    "IN_PROCESS",
    "NoModelService",
    "RateLimiter",
    "RemoteService",
    "RoutedEmbedderSlot",
    "RoutingEmbedder",
    "ServiceInfo",
    "ServiceManager",
]

log = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]
IN_PROCESS = "in-process"
FAILURES_TO_DISABLE = 3
RATE_WINDOW = 60.0
State = Literal["unchecked", "ok", "down", "mismatch"]
# Paths a seed-style config may append to the base URL (``http://gpu:6010/embed/image``).
_PROTOCOL_PATHS = ("/embed/image", "/embed/text", "/describe", "/health")


class NoModelService(ServiceUnavailable):
    """No provider of an index could serve the call; the work is retried later."""

    code = "no_model_service"


class ProviderError(Exception):
    """One provider failed one call or check (counts towards taking it down)."""


class MismatchError(ProviderError):
    """The provider serves another model than the index holds: it must not be used."""


class InputRejected(ProviderError):
    """The service refused this input (4xx): says nothing about the service's health."""


_INPUT_ERRORS = frozenset({400, 413, 415, 422})


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
    """What a provider says it serves (from ``/health`` or an embed response)."""

    model: str | None
    version: str | None
    dimension: int | None
    index: str | None


# --- backends: the in-process model and the HTTP client -----------------------------


class _LocalBackend:
    """The plugin's own embedder, loaded on first use, one inference at a time."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._load_lock = threading.Lock()
        self._infer_lock = threading.Lock()
        self._loaded = False

    def check(self) -> Served:
        with self._load_lock:
            if not self._loaded:
                try:
                    import_for(self.embedder)
                    self.embedder.load()
                except Exception as exc:
                    raise ProviderError(
                        f"the in-process model failed to load: {_why(exc)}"
                    ) from exc
                self._loaded = True
        e = self.embedder
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

    def close(self) -> None:
        pass


class RemoteService:
    """A client of one model service (the seed's protocol) with one pooled connection."""

    def __init__(self, config: ServiceConfig, index: str) -> None:
        self.config = config
        self.index = index
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

    def close(self) -> None:
        self._client.close()

    def check(self) -> Served:
        """``GET /health``: the service must be up and say what it serves."""
        data = self._request("GET", "/health")
        status = data.get("status")
        if status != "ok":
            raise ProviderError(f"reports status {status!r}: {data.get('error') or 'not ready'}")
        index = data.get("index")
        indexes = data.get("indexes")
        if isinstance(indexes, list):
            # A service for a plugin with several indexes lists each of them.
            mine = [i for i in indexes if isinstance(i, dict) and i.get("index") == self.index]
            if mine:
                data, index = mine[0], self.index
        version = data.get("version")
        if data.get("model") is None or version is None:
            raise MismatchError("its /health does not say which model and version it serves")
        dimension = data.get("dimension")
        return Served(
            str(data["model"]),
            str(version),
            int(dimension) if isinstance(dimension, int) else None,
            str(index) if index is not None else None,
        )

    def embed_images(self, images: Sequence[Image]) -> tuple[Vectors, Served]:
        files = [
            ("files", (f"{i}.{self.config.image_format}", *encode_image(im, self.config)))
            for i, im in enumerate(images)
        ]
        data = self._request("POST", "/embed/image", files=files)
        return _vectors(data, len(images))

    def embed_texts(self, texts: Sequence[str], query: bool) -> tuple[Vectors, Served]:
        data = self._request("POST", "/embed/text", json={"texts": list(texts), "query": query})
        return _vectors(data, len(texts))

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._client.request(method, path, params={"index": self.index}, **kwargs)
        except httpx.TimeoutException:
            raise ProviderError(f"no answer within {self.config.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise ProviderError(f"{type(exc).__name__}: {exc}") from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400 and not (path == "/health" and isinstance(data, dict)):
            detail = data.get("detail") if isinstance(data, dict) else response.text[:200]
            error = InputRejected if response.status_code in _INPUT_ERRORS else ProviderError
            raise error(f"HTTP {response.status_code} on {path}: {detail}")
        if not isinstance(data, dict):
            raise ProviderError(f"{path} did not answer with a JSON object")
        return data


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


def _vectors(data: dict[str, Any], n: int) -> tuple[Vectors, Served]:
    rows = data.get("embeddings")
    if rows is None and "embedding" in data:
        rows = [data["embedding"]]
    try:
        vectors = np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError):
        raise ProviderError("answered with malformed embeddings") from None
    if vectors.ndim != 2 or vectors.shape[0] != n:
        raise ProviderError(f"answered {vectors.shape} for {n} inputs")
    if not np.isfinite(vectors).all():
        raise ProviderError("answered non-finite values")
    model, version, index = data.get("model"), data.get("version"), data.get("index")
    if model is None:
        raise MismatchError("its answer does not say which model made the vectors")
    return vectors, Served(
        str(model),
        None if version is None else str(version),
        int(vectors.shape[1]),
        None if index is None else str(index),
    )


def _why(exc: BaseException) -> str:
    if isinstance(exc, ImgdexError):
        return exc.detail
    return str(exc) if isinstance(exc, ProviderError) else f"{type(exc).__name__}: {exc}"


# --- providers and routing ----------------------------------------------------------


@dataclass(eq=False)
class Provider:
    """One provider of one index: its backend, switches, state and counters."""

    service: str
    plugin: str
    config: ServiceConfig
    backend: _LocalBackend | RemoteService
    limiter: RateLimiter
    enabled: bool
    disabled_reason: str | None = None
    state: State = "unchecked"
    reason: str | None = None
    failures: int = 0  # in a row
    errors: int = 0
    requests: int = 0
    items: int = 0
    latency: float | None = None
    checked_at: float | None = None
    served: Served | None = None
    current: float = 0.0  # smooth weighted round robin

    @property
    def in_process(self) -> bool:
        return isinstance(self.backend, _LocalBackend)

    @property
    def endpoint(self) -> str:
        return IN_PROCESS if isinstance(self.backend, _LocalBackend) else self.backend.base_url


Call = Callable[[Provider, Sequence[Any]], tuple[Vectors, Served]]


class RoutingEmbedder(Embedder):
    """The index's embedder as the core sees it; each call goes to one of its providers."""

    def __init__(
        self,
        plugin_embedder: Embedder,
        providers: list[Provider],
        expected_dimension: Callable[[], int | None],
    ) -> None:
        e = plugin_embedder
        # Registration loads no weights: the plugin's embedder names the index and model.
        self.index_name, self.model, self.version = e.index_name, e.model, e.version
        self.stores, self.query_modalities, self.metric = e.stores, e.query_modalities, e.metric
        self.providers = sorted(providers, key=lambda p: (p.config.priority, p.service))
        self._expected_dimension = expected_dimension
        self._dimension: int | None = None
        self._lock = threading.Lock()
        self._batch = min((p.config.batch_size for p in providers), default=32)

    @property
    def dimension(self) -> int | None:
        return self._dimension

    def load(self) -> None:
        """Find one provider that works and serves this index's model (no weights are
        loaded in-process while a remote service of higher priority is fine)."""
        reasons = []
        for provider in self.providers:
            if not provider.enabled:
                continue
            if provider.state == "ok" and self._dimension is not None:
                return
            if self.check(provider, establish=True):
                return
            reasons.append(f"{provider.service}: {provider.reason}")
        raise NoModelService(
            f"{self.index_name}: no model service is available: "
            + ("; ".join(reasons) or "every provider is disabled")
        )

    def embed_images(self, images: Sequence[Image]) -> Vectors:
        return self._route(list(images), lambda p, chunk: p.backend.embed_images(chunk))

    def embed_texts(self, texts: Sequence[str], *, query: bool) -> Vectors:
        return self._route(list(texts), lambda p, chunk: p.backend.embed_texts(chunk, query))

    # --- checks -----------------------------------------------------------------------

    def check(self, provider: Provider, *, trial: bool = False, establish: bool = False) -> bool:
        """Verify a provider (reachable, same model) and record the outcome. `trial` also
        runs one tiny embedding, proving that a provider coming back answers in time.
        `establish` (from `load`, which goes in priority order) lets a provider define the
        dimension of an index that does not exist yet."""
        started = time.perf_counter()
        try:
            served = provider.backend.check()
            self._verify(provider, served, establish=establish)
            if trial or (establish and self._dimension is None):
                # Also how the size is learnt from a service whose /health omits it.
                served = self._trial(provider)
                self._verify(provider, served, establish=establish)
        except ProviderError as exc:
            self._failed(provider, exc)
            return False
        except Exception as exc:
            self._failed(provider, ProviderError(_why(exc)))
            return False
        self._succeeded(provider, time.perf_counter() - started, served, checked=True)
        return True

    def _trial(self, provider: Provider) -> Served:
        if self.stores == "image":
            from PIL import Image as PILImage

            image = PILImage.new("RGB", (32, 32), (128, 128, 128))
            vectors, served = provider.backend.embed_images([image])
        else:
            vectors, served = provider.backend.embed_texts(["imgdex health check"], False)
        return Served(served.model, served.version, int(vectors.shape[1]), served.index)

    def _verify(
        self, provider: Provider, served: Served, width: int | None = None, establish: bool = False
    ) -> None:
        """Raise `MismatchError` unless `served` is this index's model, version and size."""
        problems = []
        if served.model != self.model:
            problems.append(f"model {served.model!r}")
        if served.version is not None and served.version != self.version:
            problems.append(f"version {served.version!r}")
        if served.index is not None and served.index != self.index_name:
            problems.append(f"index {served.index!r}")
        dimension = width or served.dimension
        with self._lock:
            expected = self._dimension or self._expected_dimension()
            if dimension is not None and expected is not None and dimension != expected:
                problems.append(f"{dimension}-d vectors")
            if not problems and establish and self._dimension is None:
                self._dimension = expected or dimension
        if problems:
            raise MismatchError(
                f"model mismatch: it serves {', '.join(problems)} but index {self.index_name} "
                f"holds {self.model} v{self.version}"
                + (f" ({expected}-d)" if expected else "")
                + "; vectors of different models are never mixed"
            )

    def _succeeded(
        self, p: Provider, seconds: float, served: Served, *, checked: bool = False, n: int = 0
    ) -> None:
        with self._lock:
            back = p.state in ("down", "mismatch")
            p.state, p.reason, p.failures = "ok", None, 0
            p.latency, p.served = seconds, served
            if checked:
                p.checked_at = time.time()
            else:
                p.requests += 1
                p.items += n
        if back:
            log.warning("model service %s (%s) is healthy again", p.service, self.index_name)

    def _failed(self, p: Provider, exc: ProviderError) -> None:
        reason = str(exc)
        with self._lock:
            p.errors += 1
            p.checked_at = time.time()
            p.reason = reason
            if isinstance(exc, MismatchError):
                newly = p.state != "mismatch"
                p.state = "mismatch"
                p.failures = 0
            else:
                p.failures += 1
                newly = p.failures >= FAILURES_TO_DISABLE and p.state != "down"
                if newly or p.state == "down":
                    p.state = "down"
        if not newly:
            return
        if p.state == "mismatch":
            log.error("model service %s refused for %s: %s", p.service, self.index_name, reason)
        else:
            log.warning(
                "model service %s (%s) disabled after %d failures in a row: %s; it is "
                "re-checked in the background",
                p.service,
                self.index_name,
                FAILURES_TO_DISABLE,
                reason,
            )

    # --- routing ----------------------------------------------------------------------

    def plan(self) -> list[Provider]:
        """Usable providers in the order a call tries them (advances the round robin)."""
        with self._lock:
            usable = [p for p in self.providers if p.enabled and p.state in ("ok", "unchecked")]
            order: list[Provider] = []
            for _, group_iter in itertools.groupby(usable, key=lambda p: p.config.priority):
                group = list(group_iter)
                total = sum(p.config.weight for p in group)
                if total > 0:
                    for p in group:
                        p.current += p.config.weight
                    first = max(group, key=lambda p: p.current)
                    first.current -= total
                    group.remove(first)
                    group.sort(key=lambda p: -p.config.weight)
                    group.insert(0, first)
                order += group
            return order

    def usable(self) -> bool:
        return any(p.enabled and p.state in ("ok", "unchecked") for p in self.providers)

    def set_enabled(self, service: str, enabled: bool) -> bool:
        """Admin switch of one service's provider; False if it has none here."""
        found = False
        with self._lock:
            for p in self.providers:
                if p.service == service:
                    found = True
                    p.enabled = enabled
                    p.disabled_reason = None if enabled else "disabled by an admin"
                    if enabled:
                        # Checked again before its next use: it may have changed meanwhile.
                        p.state, p.failures = "unchecked", 0
        return found

    def infos(self) -> list[ServiceInfo]:
        with self._lock:
            return [_info(p, self.index_name) for p in self.providers]

    def _route(self, items: list[Any], call: Call) -> Vectors:
        if not items:
            return np.empty((0, self._dimension or 0), dtype=np.float32)
        parts = [
            self._route_one(items[i : i + self._batch], call)
            for i in range(0, len(items), self._batch)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _route_one(self, chunk: list[Any], call: Call) -> Vectors:
        reasons: dict[str, str] = {}
        rejected: list[str] = []
        limited: list[tuple[float, Provider]] = []

        def attempt(provider: Provider) -> Vectors | None:
            try:
                vectors = self._attempt(provider, chunk, call)
            except InputRejected as exc:
                rejected.append(f"{provider.service}: {exc}")
                return None
            if vectors is None:
                reasons[provider.service] = str(provider.reason)
            return vectors

        for provider in self.plan():
            wait = provider.limiter.try_acquire()
            if wait > 0:
                limited.append((wait, provider))
            elif (vectors := attempt(provider)) is not None:
                return vectors
        # Everything usable failed or is at its rate limit: wait for the first request
        # slot that frees up within that provider's timeout, rather than fail at once.
        for wait, provider in sorted(limited, key=lambda t: t[0]):
            if not rejected and wait <= provider.config.timeout:
                time.sleep(wait)
                if provider.limiter.try_acquire() == 0:
                    if (vectors := attempt(provider)) is not None:
                        return vectors
                    continue
            limit = provider.config.rate_limit
            reasons[provider.service] = f"rate limit of {limit} requests/minute reached"
        if rejected:
            # Not NoModelService: the index stays up and the enricher sets the item aside.
            raise ServiceUnavailable(
                f"{self.index_name}: the model service refused the input: {'; '.join(rejected)}",
                code="input_rejected",
            )
        for p in self.providers:
            if p.service not in reasons:
                reasons[p.service] = (
                    f"{p.state}: {p.reason}" if p.enabled else str(p.disabled_reason)
                )
        raise NoModelService(
            f"{self.index_name}: no model service could serve the request: "
            + "; ".join(f"{sid}: {why}" for sid, why in reasons.items())
        )

    def _attempt(self, provider: Provider, chunk: list[Any], call: Call) -> Vectors | None:
        if provider.state == "unchecked" and not self.check(provider):
            return None
        started = time.perf_counter()
        try:
            vectors, served = call(provider, chunk)
            self._verify(provider, served, width=int(vectors.shape[1]))
        except InputRejected:
            with self._lock:
                provider.errors += 1
            raise
        except ProviderError as exc:
            self._failed(provider, exc)
            return None
        except Exception as exc:
            self._failed(provider, ProviderError(_why(exc)))
            return None
        self._succeeded(provider, time.perf_counter() - started, served, n=len(chunk))
        return vectors

    def close(self) -> None:
        for provider in self.providers:
            provider.backend.close()


class RoutedEmbedderSlot(EmbedderSlot):
    """The slot of a routed index.

    No slot-wide inference lock: the router serialises the in-process model itself and
    lets requests to remote services run side by side. When no provider can serve, the
    slot backs off at once (the enricher leaves the work pending instead of counting it
    as failed); the health check wakes it as soon as a provider is usable again.
    """

    def __init__(
        self,
        plugin: PluginRecord,
        router: RoutingEmbedder,
        retry_after: float,
        open_index: Callable[[Embedder, int], ManagedIndex],
    ) -> None:
        super().__init__(plugin, router, retry_after, open_index)
        self.router = router

    def embed_images(self, images: Sequence[Image]) -> Vectors:
        return self._check(self._routed(lambda: self.router.embed_images(images)), len(images))

    def embed_texts(self, texts: Sequence[str], *, query: bool) -> Vectors:
        out = self._routed(lambda: self.router.embed_texts(texts, query=query))
        return self._check(out, len(texts))

    def _routed(self, fn: Callable[[], Vectors]) -> Vectors:
        self.ensure_loaded()
        try:
            return fn()
        except NoModelService as exc:
            self.back_off(exc.detail)
            raise
        except ImgdexError:
            raise
        except Exception as exc:
            log.exception("%s failed during inference", self.name)
            raise ServiceUnavailable(f"{self.name}: inference failed: {_why(exc)}") from exc

    def wake(self) -> bool:
        """End a back-off early (a provider recovered or was enabled); True if it did."""
        if self.state != "failed":
            return False
        self._failed_at = time.monotonic() - self.retry_after
        return True


# --- the manager --------------------------------------------------------------------


class ServiceInfo(msgspec.Struct, kw_only=True, frozen=True):
    """One provider of one index, as ``GET /api/admin/services`` reports it."""

    id: str
    plugin: str
    index: str | None
    endpoint: str
    kind: str  # remote | in-process
    priority: int
    weight: float
    rate_limit: int
    timeout: float
    enabled: bool
    state: str  # unchecked | ok | down | mismatch | disabled | unused
    reason: str | None = None
    model: str | None = None
    version: str | None = None
    dimension: int | None = None
    latency_ms: float | None = None
    errors: int = 0
    failures_in_a_row: int = 0
    requests: int = 0
    items: int = 0
    last_check: str | None = None


class ServiceManager:
    """Every configured model service: slots, health checks, enable/disable, reports."""

    def __init__(
        self,
        config: Config,
        indexes: IndexManager,
        on_recover: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.interval = config.worker.health_interval
        self._indexes = indexes
        self._on_recover = on_recover
        self.slots: dict[str, RoutedEmbedderSlot] = {}
        self._admin: dict[str, bool] = {}

    def embedder_slot(
        self,
        record: PluginRecord,
        embedder: Embedder,
        retry_after: float,
        open_index: Callable[[Embedder, int], ManagedIndex],
    ) -> EmbedderSlot:
        """The slot for a plugin's embedder: routed when services name the plugin."""
        services = [
            (sid, s)
            for sid, s in sorted(self.config.services.items())
            if s.plugin == record.name and _endpoint_problem(s) is None
        ]
        if not services:
            return EmbedderSlot(record, embedder, retry_after, open_index)
        providers = []
        for sid, service in services:
            backend: _LocalBackend | RemoteService
            if service.endpoint == IN_PROCESS:
                backend = _LocalBackend(embedder)
            else:
                backend = RemoteService(service, embedder.index_name)
            providers.append(
                Provider(
                    service=sid,
                    plugin=record.name,
                    config=service,
                    backend=backend,
                    limiter=RateLimiter(service.rate_limit),
                    enabled=service.enabled,
                    disabled_reason=None if service.enabled else f"services.{sid}.enabled is false",
                )
            )
        name = embedder.index_name
        router = RoutingEmbedder(embedder, providers, lambda: self._index_dimension(name))
        slot = RoutedEmbedderSlot(record, router, retry_after, open_index)
        self.slots[name] = slot
        return slot

    def _index_dimension(self, name: str) -> int | None:
        """The dimension an existing index records: what every provider must produce."""
        if (managed := self._indexes.get(name)) is not None:
            return managed.info.dimension
        dimension = (self._indexes.read_meta(name) or {}).get("dimension")
        return dimension if isinstance(dimension, int) else None

    def close(self) -> None:
        for slot in self.slots.values():
            slot.router.close()

    # --- health -------------------------------------------------------------------------

    def check_all(self) -> None:
        """One health round (blocking): check every enabled provider, then wake the
        indexes that can serve again."""
        jobs = [
            (slot.router, p)
            for slot in self.slots.values()
            for p in slot.router.providers
            if p.enabled and not (p.in_process and p.state in ("ok", "unchecked"))
        ]
        threads = [
            threading.Thread(
                target=router.check,
                args=(p,),
                # /health alone would pass a service whose model calls time out.
                kwargs={"trial": p.state in ("down", "mismatch") or p.failures > 0},
                name=f"imgdex-health-{p.service}",
                daemon=True,
            )
            for router, p in jobs
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self._wake()

    async def run(self) -> None:
        """The background health check: every ``worker.health_interval`` seconds."""
        while True:
            try:
                await asyncio.to_thread(self.check_all)
            except Exception:
                log.exception("model service health check failed")
            await asyncio.sleep(self.interval)

    def _wake(self) -> None:
        woke = False
        for slot in self.slots.values():
            if slot.router.usable():
                woke = slot.wake() or woke
        if woke:
            self._on_recover()

    # --- admin --------------------------------------------------------------------------

    def set_enabled(self, service_id: str, enabled: bool) -> list[ServiceInfo]:
        """Admin switch, effective at once (not persisted: the config is the record)."""
        if service_id not in self.config.services:
            known = sorted(self.config.services)
            raise NotFound(
                f"unknown model service {service_id!r} (configured: {known})",
                code="unknown_service",
            )
        self._admin[service_id] = enabled
        for slot in self.slots.values():
            if slot.router.set_enabled(service_id, enabled):
                log.warning(
                    "model service %s (%s) %s by an admin",
                    service_id,
                    slot.name,
                    "enabled" if enabled else "disabled",
                )
        if enabled:
            self._wake()
            self._on_recover()
        return [i for i in self.report() if i.id == service_id]

    # --- reports ------------------------------------------------------------------------

    def report(self) -> list[ServiceInfo]:
        out = [info for slot in self.slots.values() for info in slot.router.infos()]
        claimed = {info.id for info in out}
        for sid, s in sorted(self.config.services.items()):
            if sid in claimed:
                continue
            problem = _endpoint_problem(s) or (
                f"plugin {s.plugin!r} is not installed, failed to load or registers no embedder"
            )
            out.append(
                ServiceInfo(
                    id=sid,
                    plugin=s.plugin,
                    index=None,
                    endpoint=s.endpoint,
                    kind=IN_PROCESS if s.endpoint == IN_PROCESS else "remote",
                    priority=s.priority,
                    weight=s.weight,
                    rate_limit=s.rate_limit,
                    timeout=s.timeout,
                    enabled=self._admin.get(sid, s.enabled),
                    state="unused",
                    reason=problem,
                )
            )
        return sorted(out, key=lambda i: (i.index or "", i.priority, i.id))

    def degraded(self, index_names: Sequence[str]) -> bool:
        """True when an enabled provider of one of these indexes is down or refused."""
        return any(
            p.enabled and p.state in ("down", "mismatch")
            for name in index_names
            if (slot := self.slots.get(name)) is not None
            for p in slot.router.providers
        )

    def summary(self) -> dict[str, Any]:
        """For ``/health``: provider counts by state and what is wrong."""
        infos = self.report()
        counts: dict[str, int] = {}
        for info in infos:
            counts[info.state] = counts.get(info.state, 0) + 1
        problems = [
            {"id": i.id, "index": i.index, "state": i.state, "reason": i.reason}
            for i in infos
            if i.enabled and i.state in ("down", "mismatch", "unused")
        ]
        return {"total": len(infos), "states": counts, "problems": problems}


def _endpoint_problem(service: ServiceConfig) -> str | None:
    endpoint = service.endpoint
    if endpoint == IN_PROCESS or endpoint.startswith(("http://", "https://")):
        return None
    return f"endpoint {endpoint!r} must be {IN_PROCESS!r} or an http(s):// URL"


def _info(p: Provider, index: str) -> ServiceInfo:
    served = p.served
    return ServiceInfo(
        id=p.service,
        plugin=p.plugin,
        index=index,
        endpoint=p.endpoint,
        kind=IN_PROCESS if p.in_process else "remote",
        priority=p.config.priority,
        weight=p.config.weight,
        rate_limit=p.config.rate_limit,
        timeout=p.config.timeout,
        enabled=p.enabled,
        state=p.state if p.enabled else "disabled",
        reason=p.reason if p.enabled else p.disabled_reason,
        model=served.model if served else None,
        version=served.version if served else None,
        dimension=served.dimension if served else None,
        latency_ms=None if p.latency is None else round(p.latency * 1000, 2),
        errors=p.errors,
        failures_in_a_row=p.failures,
        requests=p.requests,
        items=p.items,
        last_check=(
            None
            if p.checked_at is None
            else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(p.checked_at))
        ),
    )
