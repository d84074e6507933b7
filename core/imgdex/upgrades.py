"""Model upgrades without downtime: the rules, as functions that decide and never write
the registry (`imgdex.registry.Registry` applies what they decide).

Every index belongs to a *family* (`Embedder.family`: ``bge_text`` for ``bge_text_v1``
and ``bge_text_v2``) of one plugin, and has a role in the catalog's ``index_roles``:

- ``active``: the index searches use for its family;
- ``building``: a new model version (or model) of the family, filled by the background
  workers (every image or description is embedded again) while the active one keeps
  answering and keeps receiving new images and descriptions;
- ``retired``: replaced. It stays on disk, listed by ``/api/indexes``, until an admin
  removes it (``DELETE /api/admin/indexes/{name}``).

To keep serving the old index the core needs the old model for queries and for new
items, so the plugin is asked again for its embedders under the settings that built
the old index (kept in ``index_roles``). When the new index holds a vector for
everything the old one does, it takes over in one catalog transaction and one swap of
the registry's slot table; searches in flight finish on the old index.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from imgdex.catalog import Catalog, IndexRole, vector_job_kind
from imgdex.config import Config
from imgdex.index import IndexManager
from imgdex.models import EmbedderSlot
from imgdex.plugins import PluginHost

__all__ = ["StandIn", "UpgradeState", "active_of_family", "assign_roles", "blocker", "stand_in"]

log = logging.getLogger(__name__)


@dataclass
class UpgradeState:
    """Which index stands in for which while a new one is building (registry-owned)."""

    serving_for: dict[str, str] = field(default_factory=dict)  # building -> old serving
    problems: dict[str, str] = field(default_factory=dict)  # building -> why none stands in

    def predecessor(self, name: str) -> str | None:
        return self.serving_for.get(name)

    def successor(self, name: str) -> str | None:
        return next((new for new, old in self.serving_for.items() if old == name), None)

    def building(self) -> list[str]:
        """The indexes filling up behind an active one (with or without a stand-in)."""
        return sorted({*self.serving_for, *self.problems})


@dataclass(frozen=True)
class StandIn:
    """The outcome of opening an upgrade's old index: its slot, or why there is none."""

    new: str
    old: str
    slot: EmbedderSlot | None
    problem: str | None = None


def assign_roles(
    catalog: Catalog, config: Config, indexes: IndexManager, embedders: Mapping[str, EmbedderSlot]
) -> list[tuple[EmbedderSlot, str, dict[str, Any] | None]]:
    """Give every current index a role; returns ``(new slot, old index, old settings)``
    for each index that is building behind an old one."""
    roles = catalog.index_roles()
    counts = catalog.index_counts()
    on_disk = indexes.on_disk()
    current = set(embedders)
    upgrades = []
    for name, slot in sorted(embedders.items()):
        embedder, plugin = slot.provider, slot.plugin.name
        settings = dict(config.plugins.get(plugin) or {})
        role = roles.get(name)
        if role is not None and role.role == "active":
            continue
        old = active_of_family(roles, on_disk, counts, embedder.family, plugin, exclude=current)
        with catalog.transaction() as db:
            if old is None:
                catalog.set_index_role(
                    db, name, "active", family=embedder.family, plugin=plugin, settings=settings
                )
                continue
            catalog.set_index_role(
                db, name, "building", family=embedder.family, plugin=plugin, settings=settings
            )
            if old not in roles:  # an index from before roles were recorded
                catalog.set_index_role(db, old, "active", family=embedder.family, plugin=plugin)
        log.info("index %s is building; %s answers searches until it is complete", name, old)
        old_settings = roles[old].settings if old in roles else None
        upgrades.append((slot, old, old_settings or None))
    return upgrades


def active_of_family(
    roles: Mapping[str, IndexRole],
    on_disk: Mapping[str, dict[str, Any]],
    counts: Mapping[str, int],
    family: str,
    plugin: str,
    *,
    exclude: set[str],
) -> str | None:
    """The index currently answering for (`family`, `plugin`), if any."""
    for name, r in sorted(roles.items()):
        if r.role == "active" and r.family == family and r.plugin == plugin and name not in exclude:
            return name
    # Indexes written before roles existed: their meta.json says model and version.
    for name, meta in sorted(on_disk.items()):
        if name in roles or name in exclude or not counts.get(name):
            continue
        version = str(meta.get("model_version", ""))
        if meta.get("family", name.removesuffix(f"_v{version}")) == family:
            return name
    return None


def stand_in(
    config: Config,
    host: PluginHost,
    indexes: IndexManager,
    new: EmbedderSlot,
    old: str,
    settings: dict[str, Any] | None,
) -> StandIn:
    """Build the old index's embedder again so the old index keeps serving."""
    plugin = new.plugin
    meta = indexes.read_meta(old) or {}
    if settings is None:
        # No record of the settings that built it (an index from an older imgdex):
        # the plugin's current section with the model and version the index records.
        settings = dict(config.plugins.get(plugin.name) or {})
        if meta.get("model"):
            settings["model"] = meta["model"]
        if meta.get("model_version"):
            settings["version"] = meta["model_version"]
    try:
        found = [e for e in host.embedders_with(plugin.name, settings) if e.index_name == old]
        if not found:
            raise LookupError(f"plugin {plugin.name} no longer offers index {old}")
        embedder = found[0]
        if meta and (embedder.model, embedder.version) != (
            meta.get("model"),
            meta.get("model_version"),
        ):
            raise LookupError(
                f"plugin {plugin.name} builds {embedder.model} v{embedder.version} for {old}, "
                f"which holds {meta.get('model')} v{meta.get('model_version')}"
            )
    except Exception as exc:
        problem = f"the old index {old} cannot answer meanwhile: {type(exc).__name__}: {exc}"
        log.warning("index %s: %s; searches use the new index as it fills", new.name, problem)
        return StandIn(new=new.name, old=old, slot=None, problem=problem)
    slot = EmbedderSlot(plugin, embedder, config.worker.retry_load_after, indexes.open_for)
    return StandIn(new=new.name, old=old, slot=slot)


def blocker(catalog: Catalog, slot: EmbedderSlot, old: str | None) -> str | None:
    """Why building index `slot` cannot take over from `old` yet ("" while it is still
    filling); None when it is complete.

    Complete: every live item has a vector in it or a job that failed for good, and no
    item failed in it that the old index holds (a new model failing where the old one
    worked must not replace it; retry or fix it first).
    """
    name = slot.name
    kind = vector_job_kind(slot.provider.stores)
    catalog.queue_backfill(kind, name)
    counts = catalog.job_counts().get((kind, name), {})
    if counts.get("queued") or counts.get("running"):
        return ""
    if old is not None and counts.get("failed"):
        regressions = catalog.failed_where_held(kind, name, old)
        if regressions:
            return (
                f"{regressions} items failed in {name} that {old} holds; "
                "retry them (POST /api/admin/jobs/retry) before it can take over"
            )
    return None
