"""Reports: job progress, plugins, indexes, upgrade roles, health and statistics, as
the API answers them; `progress` is shared with the CLI's file-only view."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from imgdex.backfill import metadata_progress
from imgdex.catalog import Catalog, JobKind, vector_job_kind
from imgdex.index import IndexManager
from imgdex.models import ModelSlot
from imgdex.plugins import PluginHost
from imgdex.registry import Registry
from imgdex.server import counters
from imgdex.serverquery import PluginsAnswer, data_dir_id
from imgdex.services import ServiceManager
from imgdex.status import (
    IndexStatus,
    PluginInfo,
    Progress,
    Retry,
    hide_model_path,
    index_status,
    model_name,
    orphan_status,
    plugin_infos,
    progress,
)

__all__ = ["Health", "JobsReport", "Reports", "Stats"]

Roles = dict[str, tuple[str | None, str | None]]


class HealthModel(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    plugin: str
    model: str
    state: str
    error: str | None
    next_attempt_at: str | None  # a failed model: when the next load attempt is due
    retry_in: float | None


class FailedPlugin(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    error: str | None


class Health(msgspec.Struct, kw_only=True, frozen=True):
    status: str
    database: str
    image_embedding_service: str
    text_embedding_service: str
    caption_service: str
    image_count: int
    image_index_count: int
    text_index_count: int
    models: list[HealthModel]
    failed_plugins: list[FailedPlugin]
    model_services: dict[str, Any]


class Stats(msgspec.Struct, kw_only=True, frozen=True):
    image_count: int
    by_status: dict[str, int]
    deleted_count: int
    total_file_size: int
    description_count: int
    descriptions_by_method: dict[str, int]
    vector_count: int
    indexes: dict[str, int]
    http: dict[str, Any]  # what the HTTP layer refused or dropped (disconnects, stalls)


class JobProgress(msgspec.Struct, kw_only=True, frozen=True):
    done: int
    total: int
    failed: int
    queued: int
    running: int
    rate_per_s: float | None
    eta_s: float | None


class IndexJobProgress(JobProgress, kw_only=True, frozen=True, omit_defaults=True):
    role: str | None
    note: str | None = None


class JobError(msgspec.Struct, kw_only=True, frozen=True):
    item: str
    error: str | None
    attempts: int


class MetadataProgress(msgspec.Struct, kw_only=True, frozen=True):
    done: int
    total: int


class JobsReport(msgspec.Struct, kw_only=True, frozen=True):
    paused: bool
    jobs: dict[str, dict[str, int]]
    indexes: dict[str, IndexJobProgress]
    describers: dict[str, JobProgress]
    failed: dict[str, int]
    errors: dict[str, list[JobError]]
    # organise (issue 14): photo metadata read of older images (a one-shot backfill).
    metadata: MetadataProgress


def _summary(slots: list[Any], services: ServiceManager | None = None) -> str:
    """The seed's one-word service state for a group of models."""
    if not slots:
        return "none"
    states = [s.state for s in slots]
    if all(state == "failed" for state in states):
        return "unavailable"
    if any(state == "failed" for state in states):
        return "degraded"
    # A model service down or refused while its index is served by another one.
    if services is not None and services.degraded([s.name for s in slots]):
        return "degraded"
    return "ok" if all(state == "ready" for state in states) else "loading"


class Reports:
    def __init__(
        self,
        data_path: Path,
        host: PluginHost,
        registry: Registry,
        catalog: Catalog,
        indexes: IndexManager,
        services: ServiceManager,
    ) -> None:
        self._data_path = data_path
        self._host = host
        self._registry = registry
        self._catalog = catalog
        self._indexes = indexes
        self._services = services

    def model_states(self) -> dict[str, tuple[str, str | None]]:
        return {slot.name: (slot.state, slot.error) for slot in self._registry.all_slots()}

    def model_retries(self) -> dict[str, Retry]:
        """When each failed model's next load attempt is due."""
        return {
            s.name: (at, round(s.retry_in or 0.0, 1))
            for s in self._registry.all_slots()
            if (at := s.next_attempt_at)
        }

    def progress(self) -> dict[str, Progress]:
        """Per enabled index and describer: items done, waiting and failed for good."""
        registry = self._registry
        targets: list[tuple[JobKind, str, str]] = [
            (vector_job_kind(s.provider.stores), s.name, s.name) for s in registry.embedder_slots()
        ]
        targets += [("describe", d.provider.method, d.name) for d in registry.describer_slots()]
        return progress(self._catalog, targets)

    def roles(self) -> Roles:
        """``{index: (role, note)}``: what each index does in a model upgrade."""
        upgrades = self._registry.upgrades
        out: Roles = {}
        recorded = self._catalog.index_roles()
        active = {(r.family, r.plugin): name for name, r in recorded.items() if r.role == "active"}
        for name, r in recorded.items():
            role = r.role
            note = None
            if role == "building":
                old = upgrades.predecessor(name)
                note = upgrades.problems.get(name) or (
                    f"new model version filling up; {old} answers searches until it is complete"
                    if old
                    else None
                )
            elif role == "retired":
                now = active.get((r.family, r.plugin))
                note = f"replaced by {now}" if now else "replaced"
                note += f"; remove it with DELETE /api/admin/indexes/{name}"
            elif (new := upgrades.successor(name)) is not None:
                note = f"answers searches until {new} is complete"
            out[name] = (role, note)
        return out

    def plugins(self) -> list[PluginInfo]:
        records = list(self._host.records.values())
        return plugin_infos(
            records,
            enabled={r.name: self._registry.plugin_enabled(r) for r in records},
            counts=self._catalog.index_counts(),
            on_disk=self._indexes.on_disk(),
            model_states=self.model_states(),
            progress=self.progress(),
            roles=self.roles(),
            retries=self.model_retries(),
        )

    def plugin(self, name: str) -> PluginInfo:
        return next(p for p in self.plugins() if p.name == name)

    def plugins_answer(self) -> PluginsAnswer:
        return PluginsAnswer(plugins=self.plugins(), data_dir_id=data_dir_id(self._data_path))

    def indexes(self) -> list[IndexStatus]:
        counts = self._catalog.index_counts()
        on_disk = self._indexes.on_disk()
        states = self.model_states()
        progress = self.progress()
        roles = self.roles()
        retries = self.model_retries()
        embedders = self._registry.embedders
        out = [
            index_status(
                slot.provider,
                plugin=slot.plugin.name,
                enabled=self._registry.plugin_enabled(slot.plugin),
                count=counts.get(name, 0),
                meta=on_disk.get(name),
                state=states[name],
                progress=progress.get(name),
                role=roles.get(name, (None, None)),
                retry=retries.get(name),
            )
            for name, slot in sorted(embedders.items())
        ]
        out += [
            orphan_status(meta, counts.get(name, 0), roles.get(name, (None, None)))
            for name, meta in on_disk.items()
            if name not in embedders
        ]
        return out

    def jobs(self, *, paused: bool, rates: Mapping[str, float]) -> JobsReport:
        """What ``GET /api/admin/jobs`` shows (blocking: call it in a worker thread)."""
        registry, catalog = self._registry, self._catalog
        progress = self.progress()
        roles = self.roles()
        by_kind: dict[str, dict[str, int]] = {}
        for (kind, _), states in catalog.job_counts().items():
            for state, n in states.items():
                by_kind.setdefault(kind, {}).setdefault(state, 0)
                by_kind[kind][state] += n

        def entry(name: str) -> dict[str, Any]:
            p = progress[name]
            rate = rates.get(name)
            left = p.queued + p.running
            return {
                "done": p.done,
                "total": p.total,
                "failed": p.failed,
                "queued": p.queued,
                "running": p.running,
                "rate_per_s": round(rate, 2) if rate else None,
                "eta_s": round(left / rate, 1) if rate and left else (0.0 if not left else None),
            }

        indexes = {
            slot.name: IndexJobProgress(
                **entry(slot.name),
                role=roles.get(slot.name, (None, None))[0],
                note=roles.get(slot.name, (None, None))[1],
            )
            for slot in registry.embedder_slots()
        }
        errors = {
            (f"describer {target}" if kind == "describe" else target): [
                JobError(item=f.job.item, error=f.error, attempts=f.job.attempts) for f in jobs
            ]
            for (kind, target), jobs in catalog.failed_jobs().items()
        }
        return JobsReport(
            paused=paused,
            jobs=by_kind,
            indexes=indexes,
            describers={
                d.provider.method: JobProgress(**entry(d.name)) for d in registry.describer_slots()
            },
            failed={name: p.failed for name, p in progress.items() if p.failed},
            errors=errors,
            metadata=MetadataProgress(**metadata_progress(catalog)),
        )

    def health(self) -> Health:
        catalog, registry, services = self._catalog, self._registry, self._services
        try:
            catalog.journal_mode()
            database = "ok"
        except Exception as exc:  # reported, not raised: this is the health check
            database = f"error: {exc}"
        stats = catalog.stats()
        image_slots = registry.embedder_slots(stores="image")
        text_slots = registry.embedder_slots(stores="text")
        describers = registry.describer_slots()
        models: list[ModelSlot[Any]] = [*registry.embedder_slots(), *describers]
        failed_plugins = [r for r in self._host.records.values() if r.state == "failed"]
        degraded = (
            database != "ok"
            or failed_plugins
            or any(m.state == "failed" for m in models)
            or services.degraded(
                [s.name for s in image_slots + text_slots] + [d.name for d in describers]
            )
        )
        return Health(
            status="degraded" if degraded else "ok",
            database=database,
            image_embedding_service=_summary(image_slots, services),
            text_embedding_service=_summary(text_slots, services),
            caption_service=_summary(describers, services),
            image_count=stats["image_count"],
            image_index_count=len(image_slots),
            text_index_count=len(text_slots),
            models=[
                HealthModel(
                    name=m.name,
                    plugin=m.plugin.name,
                    model=model_name(m.provider.model),
                    state=m.state,
                    error=hide_model_path(m.error, m.provider.model),
                    next_attempt_at=m.next_attempt_at,
                    retry_in=None if m.retry_in is None else round(m.retry_in, 1),
                )
                for m in models
            ],
            failed_plugins=[FailedPlugin(name=r.name, error=r.error) for r in failed_plugins],
            model_services=services.summary(),
        )

    def stats(self) -> Stats:
        counts = self._catalog.index_counts()
        return Stats(
            **self._catalog.stats(),
            vector_count=sum(counts.values()),
            indexes=counts,
            http=msgspec.structs.asdict(counters),
        )
