"""The plugin host: discovers entry points one by one and collects what they register.

A plugin that fails to import or to register is kept in the list as ``failed`` with its
error, and never takes the server down (pluggy's own `load_setuptools_entrypoints` stops
at the first failure, so entry points are loaded here individually). A plugin's config
section that does not decode (an unknown key, a bad value) is different: that is the
user's mistake, and like any other config error it stops the start with a `ConfigError`
naming the key.
"""

from __future__ import annotations

import importlib.metadata
import logging
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

import pluggy

from imgdex import hookspecs
from imgdex.config import Config, PluginSettings
from imgdex.errors import ConfigError
from imgdex.providers import Describer, Embedder, IndexBackend

__all__ = ["ENTRY_POINT_GROUP", "PluginHost", "PluginRecord"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "imgdex"
_HOOKS = ("register_embedders", "register_describers", "register_index_backends")


@dataclass
class PluginRecord:
    """What one plugin is and what it registered."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    state: Literal["loaded", "failed"] = "loaded"
    error: str | None = None
    configured_enabled: bool = True
    embedders: list[Embedder] = field(default_factory=list)
    describers: list[Describer] = field(default_factory=list)
    backends: list[IndexBackend] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        kinds = []
        if self.embedders:
            kinds.append("embedder")
        if self.describers:
            kinds.append("describer")
        if self.backends:
            kinds.append("index_backend")
        return kinds

    def fail(self, message: str) -> None:
        self.state = "failed"
        self.error = message
        self.embedders.clear()
        self.describers.clear()
        self.backends.clear()


class PluginHost:
    """Loads plugins and keeps their records, in a stable order (by name)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.pm = pluggy.PluginManager("imgdex")
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}

    def load_entry_points(self, *, exclude: Iterable[str] = ()) -> None:
        """Load every plugin in the ``imgdex`` entry-point group, one at a time."""
        skip = set(exclude)
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=_ep_key):
            if ep.name in skip or ep.name in self.records:
                continue
            dist = ep.dist
            record = PluginRecord(
                name=ep.name,
                module=ep.value,
                distribution=dist.name if dist is not None else None,
                version=dist.version if dist is not None else None,
            )
            self.records[ep.name] = record
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin is reported, never fatal
                log.error("plugin %s failed to import: %s", ep.name, exc)
                record.fail(f"import failed: {type(exc).__name__}: {exc}")
                continue
            self._register(record, module)

    def add(self, name: str, plugin: ModuleType | object) -> PluginRecord:
        """Register a plugin object directly (tests, embedding applications)."""
        record = PluginRecord(name=name, module=getattr(plugin, "__name__", repr(plugin)))
        self.records[name] = record
        self._register(record, plugin)
        return record

    def _register(self, record: PluginRecord, plugin: object) -> None:
        settings = self.config.plugin_settings(record.name)
        record.configured_enabled = settings.enabled  # a ConfigError stops the start
        try:
            self.pm.register(plugin, name=record.name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            record.fail(f"registration failed: {exc}")
            return
        kwargs: dict[str, Any] = {"config": settings}
        collected: dict[str, list[Any]] = {"embedder": [], "describer": [], "backend": []}
        try:
            for hook_name in _HOOKS:
                for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                    if impl.plugin_name != record.name:
                        continue
                    kind = {"register_embedders": "embedder", "register_describers": "describer"}
                    bucket = collected[kind.get(hook_name, "backend")]
                    args = {**kwargs, "register": bucket.append}
                    impl.function(**{a: args[a] for a in impl.argnames})
            for embedder in collected["embedder"]:
                _check_embedder(embedder)
            for describer in collected["describer"]:
                _check_describer(describer)
        except ConfigError as exc:
            # The plugin's section of the config does not decode: a start-up error, like
            # a bad key of the core's own, not a broken plugin to list and skip.
            self.pm.unregister(name=record.name)
            log.debug("plugin %s: bad config: %s", record.name, exc.detail)
            raise
        except Exception as exc:
            log.error("plugin %s failed to register: %s", record.name, exc)
            log.debug("%s", traceback.format_exc())
            record.fail(f"registration failed: {type(exc).__name__}: {exc}")
            self.pm.unregister(name=record.name)
            return
        record.embedders = collected["embedder"]
        record.describers = collected["describer"]
        record.backends = collected["backend"]
        log.info("plugin %s loaded: %s", record.name, ", ".join(record.kinds) or "nothing")

    def embedders_with(self, name: str, raw: dict[str, Any]) -> list[Embedder]:
        """Ask plugin `name` for its embedders under another config section `raw`.

        Used to serve an index of an earlier model version while its successor fills up:
        the plugin builds the old embedder from the settings that built that index.
        Raises whatever the plugin raises (an unknown key, a bad value).
        """
        record = self.records.get(name)
        if record is None or record.state != "loaded":
            raise ConfigError(f"plugin {name!r} is not loaded")
        base = self.config.plugin_settings(name)
        settings = PluginSettings(name, {**raw, "enabled": True}, base.cache_dir)
        found: list[Embedder] = []
        for impl in self.pm.hook.register_embedders.get_hookimpls():
            if impl.plugin_name == name:
                args = {"config": settings, "register": found.append}
                impl.function(**{a: args[a] for a in impl.argnames})
        for embedder in found:
            _check_embedder(embedder)
        return found

    # --- lookups --------------------------------------------------------------------

    def backend(self, name: str) -> IndexBackend:
        for record in self.records.values():
            for backend in record.backends:
                if backend.name == name:
                    return backend
        known = sorted(b.name for r in self.records.values() for b in r.backends)
        raise ConfigError(f"index.backend: unknown backend {name!r} (installed: {known})")

    def embedders(self) -> list[tuple[PluginRecord, Embedder]]:
        return [(r, e) for r in self.records.values() for e in r.embedders]

    def describers(self) -> list[tuple[PluginRecord, Describer]]:
        return [(r, d) for r in self.records.values() for d in r.describers]


def _ep_key(ep: importlib.metadata.EntryPoint) -> str:
    return ep.name


def _check_embedder(embedder: object) -> None:
    if not isinstance(embedder, Embedder):
        raise TypeError(f"{embedder!r} is not an imgdex.Embedder")
    for attr in ("index_name", "model", "version", "stores", "query_modalities"):
        if not hasattr(embedder, attr):
            raise TypeError(f"embedder {type(embedder).__name__} has no {attr!r}")
    if embedder.stores not in ("image", "text"):
        raise ValueError(f"embedder {embedder.index_name}: stores must be 'image' or 'text'")
    from imgdex.ids import check_name

    check_name(embedder.index_name, "index name")


def _check_describer(describer: object) -> None:
    if not isinstance(describer, Describer):
        raise TypeError(f"{describer!r} is not an imgdex.Describer")
    from imgdex.ids import check_name

    check_name(describer.method, "describer method")
