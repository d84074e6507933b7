"""Reports on plugins, models and indexes, shared by the API and the CLI."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from imgdex.catalog import Catalog, JobKind
from imgdex.plugins import PluginRecord

__all__ = [
    "DescriberInfo",
    "IndexStatus",
    "PluginInfo",
    "Retry",
    "hide_model_path",
    "model_name",
    "plugin_infos",
    "progress",
    "progress_of",
    "public_status",
]


@functools.lru_cache(maxsize=256)
def model_name(model: str) -> str:
    """How a model is shown outside admin endpoints: its hub id as configured, or the
    base name of a local directory (a path says where the box keeps its files)."""
    if not model:
        return model
    local = (
        os.path.isabs(model)
        or model.startswith((".", "~"))
        or model.count("/") > 1  # a hub id is "name" or "org/name"
        or Path(model).expanduser().is_dir()
    )
    return (Path(model.rstrip("/")).name or model) if local else model


def public_status(status: IndexStatus) -> IndexStatus:
    """An index's status as non-admins see it: model names, no local paths."""
    return msgspec.structs.replace(
        status,
        model=model_name(status.model),
        error=hide_model_path(status.error, status.model),
    )


def hide_model_path(text: str | None, model: str) -> str | None:
    """`text` (a load error) with the model's local path replaced by its name."""
    name = model_name(model)
    if text is None or name == model:
        return text
    return text.replace(str(Path(model).expanduser()), name).replace(model, name)


# (next_attempt_at as ISO 8601 UTC, seconds until then) of a model whose load failed.
Retry = tuple[str, float]


class Progress(msgspec.Struct, kw_only=True, frozen=True):
    done: int
    total: int
    failed: int = 0  # jobs that failed for good (see /api/admin/jobs for their errors)
    queued: int = 0
    running: int = 0


def progress_of(done: int, jobs: Mapping[str, int]) -> Progress:
    """Items done, and the jobs left per state, as one `Progress`."""
    queued, running, failed = (jobs.get(k, 0) for k in ("queued", "running", "failed"))
    return Progress(
        done=done,
        total=done + queued + running + failed,
        failed=failed,
        queued=queued,
        running=running,
    )


def progress(catalog: Catalog, targets: Iterable[tuple[JobKind, str, str]]) -> dict[str, Progress]:
    """``{name: Progress}`` for ``(job kind, target, name)`` triples: an index (its
    vectors, less soft-deleted ones) or a describer (its descriptions)."""
    counts = catalog.index_counts()
    hidden = catalog.soft_deleted_counts()
    jobs = catalog.job_counts()
    out = {}
    for kind, target, name in targets:
        if kind == "describe":
            done = catalog.description_count(target)
        else:
            done = counts.get(target, 0) - hidden.get(target, 0)
        out[name] = progress_of(done, jobs.get((kind, target), {}))
    return out


class IndexStatus(msgspec.Struct, kw_only=True, frozen=True):
    index: str
    model: str
    model_version: str
    dimension: int | None
    metric: str
    stores: str
    query_modalities: list[str]
    plugin: str | None
    enabled: bool
    state: str  # not_loaded | loading | ready | failed | orphaned | missing (CLI: no files)
    error: str | None = None
    count: int = 0
    progress: Progress | None = None
    # Model upgrades: active (answers searches) | building (a new version filling up
    # while the old index answers) | retired (replaced, kept until removed).
    role: str | None = None
    note: str | None = None
    # A failed model: when its next load attempt is due (ISO 8601 UTC) and in how many
    # seconds (0: at the next use or retry tick).
    next_attempt_at: str | None = None
    retry_in: float | None = None


class DescriberInfo(msgspec.Struct, kw_only=True, frozen=True):
    method: str
    model: str
    state: str
    error: str | None = None
    next_attempt_at: str | None = None
    retry_in: float | None = None


class PluginInfo(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    module: str
    distribution: str | None
    version: str | None
    state: str  # loaded | failed
    enabled: bool
    kinds: list[str]
    error: str | None = None
    indexes: list[IndexStatus] = msgspec.field(default_factory=list)
    describers: list[DescriberInfo] = msgspec.field(default_factory=list)
    backends: list[str] = msgspec.field(default_factory=list)


def plugin_infos(
    records: list[PluginRecord],
    *,
    enabled: dict[str, bool],
    counts: dict[str, int],
    on_disk: dict[str, dict[str, Any]],
    model_states: dict[str, tuple[str, str | None]],
    progress: dict[str, Progress],
    roles: dict[str, tuple[str | None, str | None]] | None = None,
    retries: dict[str, Retry] | None = None,
) -> list[PluginInfo]:
    """One `PluginInfo` per plugin, in name order."""
    out = []
    for record in sorted(records, key=lambda r: r.name):
        indexes = [
            index_status(
                e,
                plugin=record.name,
                enabled=enabled.get(record.name, False),
                count=counts.get(e.index_name, 0),
                meta=on_disk.get(e.index_name),
                state=model_states.get(e.index_name, ("not_loaded", None)),
                progress=progress.get(e.index_name),
                role=(roles or {}).get(e.index_name, (None, None)),
                retry=(retries or {}).get(e.index_name),
            )
            for e in record.embedders
        ]
        describers = []
        for d in record.describers:
            name = f"describer {d.method}"
            state, error = model_states.get(name, ("not_loaded", None))
            at, retry_in = (retries or {}).get(name) or (None, None)
            describers.append(
                DescriberInfo(
                    method=d.method,
                    model=d.model,
                    state=state,
                    error=error,
                    next_attempt_at=at,
                    retry_in=retry_in,
                )
            )
        out.append(
            PluginInfo(
                name=record.name,
                module=record.module,
                distribution=record.distribution,
                version=record.version,
                state=record.state,
                enabled=enabled.get(record.name, False),
                kinds=record.kinds,
                error=record.error,
                indexes=indexes,
                describers=describers,
                backends=[b.name for b in record.backends],
            )
        )
    return out


def index_status(
    embedder: Any,
    *,
    plugin: str | None,
    enabled: bool,
    count: int,
    meta: dict[str, Any] | None,
    state: tuple[str, str | None],
    progress: Progress | None,
    role: tuple[str | None, str | None] = (None, None),
    retry: Retry | None = None,
) -> IndexStatus:
    at, retry_in = retry or (None, None)
    dimension = embedder.dimension or (meta or {}).get("dimension")
    return IndexStatus(
        index=embedder.index_name,
        model=embedder.model,
        model_version=embedder.version,
        dimension=dimension,
        metric=embedder.metric,
        stores=embedder.stores,
        query_modalities=sorted(embedder.query_modalities),
        plugin=plugin,
        enabled=enabled,
        state=state[0],
        error=state[1],
        count=count,
        progress=progress,
        role=role[0],
        note=role[1],
        next_attempt_at=at,
        retry_in=retry_in,
    )


def orphan_status(
    meta: dict[str, Any], count: int, role: tuple[str | None, str | None] = (None, None)
) -> IndexStatus:
    """An index on disk that no installed plugin writes: retired by a model upgrade, or
    its plugin is gone."""
    retired = role[0] == "retired"
    return IndexStatus(
        index=str(meta.get("index")),
        model=str(meta.get("model", "")),
        model_version=str(meta.get("model_version", "")),
        dimension=meta.get("dimension"),
        metric=str(meta.get("metric", "cosine")),
        stores=str(meta.get("stores", "")),
        query_modalities=[],
        plugin=None,
        enabled=False,
        state="retired" if retired else "orphaned",
        error=None if retired else "no installed plugin provides this index",
        count=count,
        role=role[0],
        note=role[1],
    )
