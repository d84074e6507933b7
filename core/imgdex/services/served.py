"""The models one model service serves: one plugin's embedders and describers.

Each is loaded once (in the background when the service starts), runs one batch at a
time, and reports its state for ``/health``. The HTTP side is `imgdex.services.server`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar

import imgdex
from imgdex.config import Config
from imgdex.errors import BadRequest, ConfigError, NotFound, ServiceUnavailable
from imgdex.models.lifecycle import Lifecycle, import_for
from imgdex.plugins import PluginHost, PluginRecord
from imgdex.providers import Describer, Embedder
from imgdex.services.protocol import DescriberHealth, HealthReply, IndexHealth

__all__ = ["ModelService", "ServedModel", "load_plugin"]

M = TypeVar("M", Embedder, Describer)
T = TypeVar("T")


class ServedModel(Lifecycle, Generic[M]):
    """One model of the plugin: loaded once (in the background at start), one batch at a
    time; a failed load is reported and retried after ``worker.retry_load_after``."""

    def __init__(self, provider: M, retry_after: float) -> None:
        super().__init__(retry_after)
        self.provider: M = provider

    @property
    def name(self) -> str:
        p = self.provider
        return p.index_name if isinstance(p, Embedder) else f"describer {p.method}"

    def _load(self) -> None:
        import_for(self.provider)
        self.provider.load()

    def _unavailable(self, detail: str) -> str:
        return f"the model could not be loaded: {detail}"

    def _inference_failed(self, detail: str) -> str:
        return f"inference failed: {detail}"

    def run(self, fn: Callable[[M], T]) -> T:
        # No back-off on failed calls: the core's own slots count them.
        return self._run(lambda: fn(self.provider))


class ModelService:
    """The models of one plugin, as served over HTTP."""

    def __init__(self, config: Config, record: PluginRecord) -> None:
        self.config = config
        self.record = record
        retry = config.worker.retry_load_after
        self.embedders = {e.index_name: ServedModel(e, retry) for e in record.embedders}
        self.describers = {d.method: ServedModel(d, retry) for d in record.describers}
        self.counts = {"embed_image": 0, "embed_text": 0, "describe": 0}

    def models(self) -> list[ServedModel[Any]]:
        return [*self.embedders.values(), *self.describers.values()]

    def preload(self) -> None:
        for model in self.models():
            with contextlib.suppress(ServiceUnavailable):
                model.ensure_loaded()

    def embedder(self, index: str | None, can: Literal["image", "text"]) -> ServedModel[Embedder]:
        model = _pick(self.embedders, index, "index", self.record.name)
        e = model.provider
        if e.stores != can and can not in e.query_modalities:
            raise BadRequest(
                f"index {e.index_name} cannot embed {can}s (it stores {e.stores}s and answers "
                f"{sorted(e.query_modalities)} queries)",
                code=f"cannot_embed_{can}",
            )
        return model

    def describer(self, method: str | None) -> ServedModel[Describer]:
        return _pick(self.describers, method, "method", self.record.name)

    def health(self) -> HealthReply:
        models = self.models()
        for model in models:
            if model.state == "not_loaded":
                # /health is how a client learns the dimension: start loading now.
                threading.Thread(target=self.preload, daemon=True).start()
                break
        states = [m.state for m in models]
        status = "ok"
        if any(s == "failed" for s in states):
            status = "error"
        elif any(s != "ready" for s in states):
            status = "loading"
        indexes = [_embedder_health(m) for _, m in sorted(self.embedders.items())]
        describers = [
            DescriberHealth(
                method=m.provider.method, model=m.provider.model, state=m.state, error=m.error
            )
            for _, m in sorted(self.describers.items())
        ]
        first = indexes[0] if indexes else IndexHealth()
        errors = [m.error for m in models if m.error]
        return HealthReply(
            status=status,
            plugin=self.record.name,
            model=first.model if indexes else (describers[0].model if describers else None),
            version=first.version,
            dimension=first.dimension,
            index=first.index,
            indexes=indexes,
            describers=describers,
            error="; ".join(errors) or None,
            requests=dict(self.counts),
            imgdex=imgdex.__version__,
        )


def _embedder_health(model: ServedModel[Embedder]) -> IndexHealth:
    e = model.provider
    dimension = e.dimension
    return IndexHealth(
        index=e.index_name,
        model=e.model,
        version=e.version,
        dimension=None if dimension is None else int(dimension),
        metric=e.metric,
        stores=e.stores,
        query_modalities=sorted(e.query_modalities),
        state=model.state,
        error=model.error,
    )


def _pick(
    models: dict[str, ServedModel[M]], name: str | None, what: str, plugin: str
) -> ServedModel[M]:
    if not models:
        kind = "embedder" if what == "index" else "describer"
        raise NotFound(f"plugin {plugin} has no {kind}", code=f"no_{kind}")
    if name is None:
        if len(models) > 1:
            raise BadRequest(
                f"plugin {plugin} serves several ({sorted(models)}): pass ?{what}=",
                code=f"{what}_required",
            )
        return next(iter(models.values()))
    if name not in models:
        raise NotFound(
            f"unknown {what} {name!r} (served: {sorted(models)})", code=f"unknown_{what}"
        )
    return models[name]


def load_plugin(
    config: Config,
    name: str,
    *,
    plugins: dict[str, object] | None = None,
    entry_points: bool = True,
) -> PluginRecord:
    """Load the plugin to serve (entry points, or the given objects); `ConfigError` if it
    is not installed, failed, or offers no model."""
    host = PluginHost(config)
    if entry_points:
        host.load_entry_points()
    for plugin_name, plugin in (plugins or {}).items():
        host.add(plugin_name, plugin)
    record = host.records.get(name)
    if record is None:
        installed = sorted(n for n, r in host.records.items() if r.embedders or r.describers)
        raise ConfigError(f"plugin {name!r} is not installed (model plugins: {installed})")
    if record.state != "loaded":
        raise ConfigError(f"plugin {name!r} failed to load: {record.error}")
    if not record.embedders and not record.describers:
        raise ConfigError(f"plugin {name!r} offers no embedder or describer to serve")
    return record
