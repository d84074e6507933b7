"""Every configured model service: the routed slots, health checks, admin switches and
reports. The rest of the core only sees an `EmbedderSlot`."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from imgdex.config import Config, ServiceConfig
from imgdex.errors import NotFound
from imgdex.models.slots import DescriberSlot, EmbedderSlot, OpenIndex, build_embedder_slot
from imgdex.providers import Describer, Embedder
from imgdex.services.client import IN_PROCESS, Backend, InProcessModel, RateLimiter, ServiceClient
from imgdex.services.describers import (
    DescriberBackend,
    DescriberClient,
    InProcessDescriber,
    RoutingDescriber,
)
from imgdex.services.router import RoutingEmbedder
from imgdex.services.routing import ServiceTarget
from imgdex.services.slots import RoutedDescriberSlot, RoutedEmbedderSlot, RoutedSlot

if TYPE_CHECKING:
    from imgdex.index import IndexManager
    from imgdex.plugins import PluginRecord

__all__ = ["RoutedDescriberSlot", "RoutedEmbedderSlot", "ServiceInfo", "ServiceManager"]

log = logging.getLogger(__name__)

B = TypeVar("B", Backend, DescriberBackend)


class ServiceInfo(msgspec.Struct, kw_only=True, frozen=True):
    """One target of one index, as ``GET /api/admin/services`` reports it."""

    id: str
    plugin: str
    index: str | None
    method: str | None  # the describer's, for a service of a describer
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
        # By slot name: an index's name, or ``describer <method>``.
        self.slots: dict[str, RoutedSlot] = {}
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
        name = embedder.index_name

        def backend(service: ServiceConfig) -> Backend:
            if service.endpoint == IN_PROCESS:
                return InProcessModel(embedder)
            return ServiceClient(service, name)

        targets = self._targets(record, backend)
        if not targets:
            return None
        router = RoutingEmbedder(embedder, targets, lambda: self._index_dimension(name))
        slot = RoutedEmbedderSlot(record, router, retry_after, open_index)
        self.slots[slot.name] = slot
        return slot

    def describer_slot(
        self, record: PluginRecord, describer: Describer, retry_after: float
    ) -> DescriberSlot:
        """The slot of a describer: routed when services name its plugin, else in-process."""

        def backend(service: ServiceConfig) -> DescriberBackend:
            if service.endpoint == IN_PROCESS:
                return InProcessDescriber(describer)
            return DescriberClient(service, describer.method)

        targets = self._targets(record, backend)
        if not targets:
            return DescriberSlot(record, describer, retry_after)
        slot = RoutedDescriberSlot(record, RoutingDescriber(describer, targets), retry_after)
        self.slots[slot.name] = slot
        return slot

    def _targets(
        self,
        record: PluginRecord,
        backend: Callable[[ServiceConfig], B],
    ) -> list[ServiceTarget[B]]:
        """One target per service of the plugin (none: the model runs in-process)."""
        return [
            ServiceTarget(
                service=sid,
                plugin=record.name,
                config=service,
                backend=backend(service),
                limiter=RateLimiter(service.rate_limit),
                enabled=service.enabled,
                disabled_reason=None if service.enabled else f"services.{sid}.enabled is false",
            )
            for sid, service in sorted(self.config.services.items())
            if service.plugin == record.name and _endpoint_problem(service) is None
        ]

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
            for info in [_info(p, *slot.router.where()) for p in slot.router.snapshot()]
        ]
        claimed = {info.id for info in out}
        for sid, s in sorted(self.config.services.items()):
            if sid in claimed:
                continue
            problem = _endpoint_problem(s) or (
                f"plugin {s.plugin!r} is not installed, failed to load or registers no "
                "embedder or describer"
            )
            out.append(
                ServiceInfo(
                    id=sid,
                    plugin=s.plugin,
                    index=None,
                    method=None,
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
        return sorted(out, key=lambda i: (i.index or "", i.method or "", i.priority, i.id))

    def degraded(self, index_names: Sequence[str]) -> bool:
        """True when an enabled target of one of these slots (indexes, ``describer
        <method>``) is down or refused."""
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
            {"id": i.id, "index": i.index, "method": i.method, "state": i.state, "reason": i.reason}
            for i in infos
            if i.enabled and i.state in ("down", "mismatch", "unused")
        ]
        return {"total": len(infos), "states": counts, "problems": problems}


def _endpoint_problem(service: ServiceConfig) -> str | None:
    endpoint = service.endpoint
    if endpoint == IN_PROCESS or endpoint.startswith(("http://", "https://")):
        return None
    return f"endpoint {endpoint!r} must be {IN_PROCESS!r} or an http(s):// URL"


def _info(p: ServiceTarget[Any], index: str | None, method: str | None) -> ServiceInfo:
    served = p.served
    return ServiceInfo(
        id=p.service,
        plugin=p.plugin,
        index=index,
        method=method,
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
