"""The registry of model slots: which indexes and describers exist, which are enabled,
which answer searches during an upgrade, and what each must be queued.

It is the only writer of slot and upgrade state (`UpgradeState`, the slot tables, the
admin's enable/disable switch); everything else reads it. The rules of an upgrade are
in `imgdex.upgrades`; the registry applies them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from imgdex.catalog import Catalog, Connection, vector_job_kind
from imgdex.config import Config
from imgdex.errors import Conflict, NotFound
from imgdex.index import IndexManager
from imgdex.models import DescriberSlot, EmbedderSlot
from imgdex.plugins import PluginHost, PluginRecord
from imgdex.services import ServiceManager
from imgdex.upgrades import UpgradeState, active_of_family, assign_roles, blocker, stand_in

__all__ = ["IMAGE_METHOD", "Registry", "release"]

log = logging.getLogger(__name__)

IMAGE_METHOD = "image"  # the method of an image's own vector (descriptions have others)

Slot = EmbedderSlot | DescriberSlot


def release(slot: Slot) -> None:
    """Let a provider that holds clients or sessions (an API captioner) close them."""
    close = getattr(slot.provider, "close", None)
    if callable(close):
        try:
            close()
        except Exception:
            log.exception("closing %s failed", slot.name)


class Registry:
    def __init__(
        self,
        config: Config,
        host: PluginHost,
        catalog: Catalog,
        indexes: IndexManager,
        services: ServiceManager,
        wake: Callable[[], None],
    ) -> None:
        self.config = config
        self.host = host
        self._catalog = catalog
        self._indexes = indexes
        self._wake = wake
        retry = config.worker.retry_load_after
        # Model services (imgdex.services): an index or describer whose plugin is named
        # under `services:` is routed across those providers; every other model keeps its
        # in-process slot.
        embedders: dict[str, EmbedderSlot] = {}
        for record, embedder in host.embedders():
            if (other := embedders.get(embedder.index_name)) is not None:
                record.error = (
                    f"index {embedder.index_name} is already provided by plugin "
                    f"{other.plugin.name}; this one is ignored"
                )
                log.error("plugin %s: %s", record.name, record.error)
                continue
            embedders[embedder.index_name] = services.embedder_slot(
                record, embedder, retry, indexes.open_for
            )
        describers: dict[str, DescriberSlot] = {}
        for record, describer in host.describers():
            if describer.method in describers or describer.method == IMAGE_METHOD:
                record.error = f"describer method {describer.method!r} is taken; ignored"
                continue
            describers[describer.method] = services.describer_slot(record, describer, retry)
        self.embedders: dict[str, EmbedderSlot] = embedders  # replaced whole, never mutated
        self.describers: dict[str, DescriberSlot] = describers
        self._plugin_states = catalog.plugin_states()
        # Model upgrades: an old index answers for its family while a new one builds.
        self.upgrades = UpgradeState()
        for slot, old, settings in assign_roles(catalog, config, indexes, embedders):
            found = stand_in(config, host, indexes, slot, old, settings)
            if found.slot is None:
                self.upgrades.problems[found.new] = found.problem or ""
                continue
            self.embedders = {**self.embedders, old: found.slot}
            self.upgrades.serving_for[found.new] = old

    # --- reading ------------------------------------------------------------------

    def all_slots(self) -> list[Slot]:
        return [*self.embedders.values(), *self.describers.values()]

    def plugin_enabled(self, record: PluginRecord) -> bool:
        if record.state != "loaded":
            return False
        return self._plugin_states.get(record.name, record.configured_enabled)

    def embedder_slots(
        self, *, stores: str | None = None, query: str | None = None
    ) -> list[EmbedderSlot]:
        """Enabled embedders, optionally those that store or can query a modality.

        All of them receive writes. With `query`, only those that answer searches: while
        a new model version builds its index, the old index answers for its family (or
        the new one, partial, when the old model cannot be loaded).
        """
        embedders = self.embedders
        slots = [
            slot
            for name, slot in sorted(embedders.items())
            if self.plugin_enabled(slot.plugin)
            and (stores is None or slot.provider.stores == stores)
            and (query is None or query in slot.provider.query_modalities)
        ]
        if query is None:
            return slots
        answering = []
        for slot in slots:
            if (old := self.upgrades.predecessor(slot.name)) is not None:
                stand_in = embedders.get(old)
                if stand_in is not None and stand_in.available():
                    continue
            elif self.upgrades.successor(slot.name) is not None and not slot.available():
                continue
            answering.append(slot)
        return answering

    def settle_targets(self) -> list[str]:
        """The image indexes whose vectors make an image `ready` (those that answer)."""
        return [
            slot.name
            for slot in self.embedder_slots(stores="image")
            if self.upgrades.predecessor(slot.name) is None
        ]

    def describer_slots(self) -> list[DescriberSlot]:
        return [s for _, s in sorted(self.describers.items()) if self.plugin_enabled(s.plugin)]

    # --- queueing -----------------------------------------------------------------

    def queue_backfill(self, image: str | None = None) -> int:
        """Queue jobs for everything an enabled model should have done and has not (a
        backfill; with `image`, for that image only). Idempotent."""
        added = 0
        for slot in self.embedder_slots():
            kind = vector_job_kind(slot.provider.stores)
            added += self._catalog.queue_backfill(kind, slot.name, image)
        for describer in self.describer_slots():
            method = describer.provider.method
            added += self._catalog.queue_backfill("describe", method, image)
        if added:
            log.info("queued %d background jobs", added)
        return added

    def queue_image_jobs(self, db: Connection, id_: str) -> None:
        """Queue a new image's work for every enabled model (in the caller's transaction)."""
        targets = [slot.name for slot in self.embedder_slots(stores="image")]
        self._catalog.queue_jobs(db, "embed_image", targets, id_, IMAGE_METHOD)
        for describer in self.describer_slots():
            method = describer.provider.method
            self._catalog.queue_jobs(db, "describe", [method], id_, method)

    def queue_description_jobs(self, db: Connection, id_: str, method: str) -> None:
        """Queue a new or changed description for every enabled text embedder."""
        targets = [slot.name for slot in self.embedder_slots(stores="text")]
        self._catalog.queue_jobs(db, "embed_text", targets, id_, method)

    # --- writing (the only writer of slot and upgrade state) ------------------------

    def set_plugin_enabled(self, name: str, enabled: bool) -> PluginRecord:
        record = self.host.records.get(name)
        if record is None:
            raise NotFound(f"plugin {name!r} is not installed", code="unknown_plugin")
        if record.state != "loaded":
            raise Conflict(f"plugin {name!r} failed to load: {record.error}", code="plugin_failed")
        self._catalog.set_plugin_state(name, enabled)
        self._plugin_states[name] = enabled
        if enabled:
            self.queue_backfill()  # whatever it missed while disabled
            self._wake()
        # The set of image indexes an image must be in to be ready has changed.
        self._catalog.resettle(self.settle_targets())
        return record

    def try_take_over(self, name: str) -> bool:
        """If building index `name` is complete, make it the active one; True if it did."""
        catalog = self._catalog
        slot = self.embedders.get(name)
        roles = catalog.index_roles()
        if slot is None or name not in roles or roles[name].role != "building":
            return False
        old = self.upgrades.predecessor(name) or active_of_family(
            roles, {}, {}, slot.provider.family, slot.plugin.name, exclude={name}
        )
        problem = blocker(catalog, slot, old)
        if problem is not None:
            if problem:
                self.upgrades.problems[name] = problem
            return False
        with catalog.transaction() as db:
            catalog.set_index_role(db, name, "active")
            if old is not None:
                catalog.set_index_role(db, old, "retired")
                catalog.drop_vector_jobs(db, old)
        self.upgrades.serving_for.pop(name, None)
        self.upgrades.problems.pop(name, None)
        if old is not None:
            retired = self.embedders.get(old)
            self.embedders = {k: v for k, v in self.embedders.items() if k != old}
            self._indexes.close_index(old)
            if retired is not None:
                release(retired)
        log.info("index %s is complete and took over from %s", name, old)
        return True

    def forget_index(self, name: str) -> int:
        """Remove a retired or orphan index from the catalog and the disk; returns how
        many vector entries went. An upgrade it stood in for goes on without it."""
        slot = self.embedders.get(name)
        if slot is not None and self.plugin_enabled(slot.plugin):
            raise Conflict(
                f"index {name!r} is in use by plugin {slot.plugin.name}; disable it first",
                code="index_in_use",
            )
        catalog = self._catalog
        known = name in catalog.index_counts() or name in catalog.index_roles()
        if not known and self._indexes.read_meta(name) is None:
            raise NotFound(f"unknown index {name!r}", code="unknown_index")
        with catalog.transaction() as db:
            removed = catalog.forget_index(db, name)
        self._drop_stand_in(name)
        self._indexes.remove(name)
        if slot is not None:
            slot.forget_index()  # a disabled plugin's: enabling it opens a fresh index
        return int(removed)

    def _drop_stand_in(self, name: str) -> None:
        """An admin removed the old index of an upgrade: the new one answers as it fills."""
        new = self.upgrades.successor(name)
        if new is None:
            return
        self.upgrades.serving_for.pop(new, None)
        self.upgrades.problems[new] = (
            f"the old index {name} was removed; this one answers meanwhile"
        )
        slot = self.embedders.get(name)
        self.embedders = {k: v for k, v in self.embedders.items() if k != name}
        if slot is not None:
            release(slot)

    def close(self) -> None:
        for slot in self.all_slots():
            release(slot)
