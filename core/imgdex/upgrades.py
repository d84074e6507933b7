"""Model upgrades without downtime: a new index fills up while the old one answers.

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
the library's slot table; searches in flight finish on the old index.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from imgdex.catalog import IndexRole, vector_job_kind
from imgdex.models import EmbedderSlot

if TYPE_CHECKING:
    from imgdex.library import Library

__all__ = ["UpgradeState", "drop_stand_in", "plan_upgrades", "try_take_over"]

log = logging.getLogger(__name__)


class UpgradeState:
    """Which index stands in for which while a new one is building."""

    def __init__(self) -> None:
        self.serving_for: dict[str, str] = {}  # building index -> the old one serving
        self.problems: dict[str, str] = {}  # building index -> why nothing stands in

    def predecessor(self, name: str) -> str | None:
        return self.serving_for.get(name)

    def successor(self, name: str) -> str | None:
        return next((new for new, old in self.serving_for.items() if old == name), None)

    def building(self) -> list[str]:
        """The indexes filling up behind an active one (with or without a stand-in)."""
        return sorted({*self.serving_for, *self.problems})


def plan_upgrades(library: Library) -> None:
    """Give every current index a role, and open the old index of each upgrade."""
    catalog, config = library.catalog, library.config
    roles = catalog.index_roles()
    counts = catalog.index_counts()
    on_disk = library.indexes.on_disk()
    current = set(library.embedders)
    for name, slot in sorted(library.embedders.items()):
        embedder, plugin = slot.provider, slot.plugin.name
        settings = dict(config.plugins.get(plugin) or {})
        role = roles.get(name)
        if role is not None and role.role == "active":
            continue
        old = _active_of_family(roles, on_disk, counts, embedder.family, plugin, exclude=current)
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
        _open_predecessor(library, slot, old, old_settings or None)


def _active_of_family(
    roles: dict[str, IndexRole],
    on_disk: dict[str, dict[str, Any]],
    counts: dict[str, int],
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


def _open_predecessor(
    library: Library, new: EmbedderSlot, old: str, settings: dict[str, Any] | None
) -> None:
    """Build the old index's embedder again so the old index keeps serving."""
    plugin = new.plugin
    meta = library.indexes.read_meta(old) or {}
    if settings is None:
        # No record of the settings that built it (an index from an older imgdex):
        # the plugin's current section with the model and version the index records.
        settings = dict(library.config.plugins.get(plugin.name) or {})
        if meta.get("model"):
            settings["model"] = meta["model"]
        if meta.get("model_version"):
            settings["version"] = meta["model_version"]
    try:
        found = [
            e for e in library.host.embedders_with(plugin.name, settings) if e.index_name == old
        ]
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
        library.upgrades.problems[new.name] = problem
        return
    slot = EmbedderSlot(
        plugin, embedder, library.config.worker.retry_load_after, library.indexes.open_for
    )
    library.embedders = {**library.embedders, old: slot}
    library.upgrades.serving_for[new.name] = old


def try_take_over(library: Library, name: str) -> bool:
    """If building index `name` is complete, make it the active one; True if it did.

    Complete: every live item has a vector in it or a job that failed for good, and no
    item failed in it that the old index holds (a new model failing where the old one
    worked must not replace it; retry or fix it first).
    """
    catalog = library.catalog
    slot = library.embedders.get(name)
    roles = catalog.index_roles()
    if slot is None or name not in roles or roles[name].role != "building":
        return False
    kind = vector_job_kind(slot.provider.stores)
    catalog.plan(kind, name)
    counts = catalog.job_counts().get((kind, name), {})
    if counts.get("queued") or counts.get("running"):
        return False
    old = library.upgrades.predecessor(name) or _active_of_family(
        roles, {}, {}, slot.provider.family, slot.plugin.name, exclude={name}
    )
    if old is not None and counts.get("failed"):
        regressions = catalog.failed_where_held(kind, name, old)
        if regressions:
            library.upgrades.problems[name] = (
                f"{regressions} items failed in {name} that {old} holds; "
                "retry them (POST /api/admin/jobs/retry) before it can take over"
            )
            return False
    with catalog.transaction() as db:
        catalog.set_index_role(db, name, "active")
        if old is not None:
            catalog.set_index_role(db, old, "retired")
            catalog.drop_vector_jobs(db, old)
    library.upgrades.serving_for.pop(name, None)
    library.upgrades.problems.pop(name, None)
    if old is not None:
        retired = library.embedders.get(old)
        library.embedders = {k: v for k, v in library.embedders.items() if k != old}
        library.indexes.close_index(old)
        if retired is not None:
            library.release(retired)
    log.info("index %s is complete and took over from %s", name, old)
    return True


def drop_stand_in(library: Library, name: str) -> None:
    """An admin removed the old index of an upgrade: the new one answers as it fills."""
    new = library.upgrades.successor(name)
    if new is None:
        return
    library.upgrades.serving_for.pop(new, None)
    library.upgrades.problems[new] = f"the old index {name} was removed; this one answers meanwhile"
    slot = library.embedders.get(name)
    library.embedders = {k: v for k, v in library.embedders.items() if k != name}
    if slot is not None:
        library.release(slot)
