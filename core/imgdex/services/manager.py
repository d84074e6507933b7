"""Every configured model service: the routed slots, health checks, admin switches and
reports. The rest of the core only sees an `EmbedderSlot`."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
import numpy.typing as npt

from imgdex.config import Config, ServiceConfig
from imgdex.errors import ImgdexError, NotFound, ServiceUnavailable, detail_of
from imgdex.models.slots import EmbedderSlot, OpenIndex, build_embedder_slot
from imgdex.providers import Embedder
from imgdex.services.client import IN_PROCESS, Backend, InProcessModel, RateLimiter, ServiceClient
from imgdex.services.router import NoModelService, RoutingEmbedder, ServiceTarget

if TYPE_CHECKING:
    from PIL.Image import Image

    from imgdex.index import IndexManager
    from imgdex.plugins import PluginRecord

__all__ = ["RoutedEmbedderSlot", "ServiceInfo", "ServiceManager"]

log = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]


class RoutedEmbedderSlot(EmbedderSlot):
    """The slot of a routed index.

    No slot-wide inference lock: the router serialises the in-process model itself and
    lets requests to remote services run side by side. When no target can serve, the
    slot backs off at once (the enricher leaves the work pending instead of counting it
    as failed); the health check wakes it as soon as a target is usable again.
    """

    def __init__(
        self,
        plugin: PluginRecord,
        router: RoutingEmbedder,
        retry_after: float,
        open_index: OpenIndex,
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
            raise ServiceUnavailable(f"{self.name}: inference failed: {detail_of(exc)}") from exc


class ServiceInfo(msgspec.Struct, kw_only=True, frozen=True):
    """One target of one index, as ``GET /api/admin/services`` reports it."""

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
        self, record: PluginRecord, embedder: Embedder, retry_after: float, open_index: OpenIndex
    ) -> EmbedderSlot:
        """The slot for a plugin's embedder (see `build_embedder_slot`)."""
        return build_embedder_slot(record, embedder, retry_after, open_index, services=self)

    def routed_slot(
        self, record: PluginRecord, embedder: Embedder, retry_after: float, open_index: OpenIndex
    ) -> RoutedEmbedderSlot | None:
        """The slot of an index whose plugin services name, else None (it runs in-process)."""
        services = [
            (sid, s)
            for sid, s in sorted(self.config.services.items())
            if s.plugin == record.name and _endpoint_problem(s) is None
        ]
        if not services:
            return None
        targets = []
        for sid, service in services:
            backend: Backend
            if service.endpoint == IN_PROCESS:
                backend = InProcessModel(embedder)
            else:
                backend = ServiceClient(service, embedder.index_name)
            targets.append(
                ServiceTarget(
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
        router = RoutingEmbedder(embedder, targets, lambda: self._index_dimension(name))
        slot = RoutedEmbedderSlot(record, router, retry_after, open_index)
        self.slots[name] = slot
        return slot

    def _index_dimension(self, name: str) -> int | None:
        """The dimension an existing index records: what every target must produce."""
        if (managed := self._indexes.get(name)) is not None:
            return managed.info.dimension
        dimension = (self._indexes.read_meta(name) or {}).get("dimension")
        return dimension if isinstance(dimension, int) else None

    def close(self) -> None:
        for slot in self.slots.values():
            slot.router.close()

    # --- health -------------------------------------------------------------------------

    def check_all(self) -> None:
        """One health round (blocking): check every enabled target, then wake the
        indexes that can serve again."""
        jobs = [
            (slot.router, p)
            for slot in self.slots.values()
            for p in slot.router.targets
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
        out = [
            info
            for slot in self.slots.values()
            for info in [_info(p, slot.router.index_name) for p in slot.router.snapshot()]
        ]
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
        """True when an enabled target of one of these indexes is down or refused."""
        return any(
            p.enabled and p.state in ("down", "mismatch")
            for name in index_names
            if (slot := self.slots.get(name)) is not None
            for p in slot.router.targets
        )

    def summary(self) -> dict[str, Any]:
        """For ``/health``: target counts by state and what is wrong."""
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


def _info(p: ServiceTarget, index: str) -> ServiceInfo:
    served = p.served
    return ServiceInfo(
        id=p.service,
        plugin=p.plugin,
        index=index,
        endpoint=p.url,
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
