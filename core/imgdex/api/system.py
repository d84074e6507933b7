"""``/health``, ``/api/stats`` and ``/api/indexes``."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, get

from imgdex.auth.guards import require
from imgdex.models import ModelSlot
from imgdex.server import counters
from imgdex.services import ServiceManager
from imgdex.status import IndexStatus, hide_model_path, model_name, public_status

from .deps import LibraryDep

__all__ = ["SystemController"]


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


class SystemController(Controller):
    tags = ["system"]

    @get("/health", summary="Health of the database, models and indexes")
    async def health(self, library: LibraryDep) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            try:
                library.catalog.journal_mode()
                database = "ok"
            except Exception as exc:  # reported, not raised: this is the health check
                database = f"error: {exc}"
            stats = library.catalog.stats()
            image_slots = library.embedder_slots(stores="image")
            text_slots = library.embedder_slots(stores="text")
            models: list[ModelSlot[Any]] = [*library.embedder_slots(), *library.describer_slots()]
            failed_plugins = [r for r in library.host.records.values() if r.state == "failed"]
            services = library.services
            degraded = (
                database != "ok"
                or failed_plugins
                or any(m.state == "failed" for m in models)
                or services.degraded([s.name for s in image_slots + text_slots])
            )
            return {
                "status": "degraded" if degraded else "ok",
                "database": database,
                "image_embedding_service": _summary(image_slots, services),
                "text_embedding_service": _summary(text_slots, services),
                "caption_service": _summary(library.describer_slots()),
                "image_count": stats["image_count"],
                "image_index_count": len(image_slots),
                "text_index_count": len(text_slots),
                "models": [
                    {
                        "name": m.name,
                        "plugin": m.plugin.name,
                        "model": model_name(m.provider.model),
                        "state": m.state,
                        "error": hide_model_path(m.error, m.provider.model),
                        # A failed model: when the next load attempt is due.
                        "next_attempt_at": m.next_attempt_at,
                        "retry_in": None if m.retry_in is None else round(m.retry_in, 1),
                    }
                    for m in models
                ],
                "failed_plugins": [{"name": r.name, "error": r.error} for r in failed_plugins],
                "model_services": services.summary(),
            }

        return await library.run_io(read)

    @get("/api/stats", summary="Library statistics", guards=[require("read")])
    async def stats(self, library: LibraryDep) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            stats = library.catalog.stats()
            counts = library.catalog.index_counts()
            stats["vector_count"] = sum(counts.values())
            stats["indexes"] = counts
            # What the HTTP layer refused or dropped (disconnects, oversize heads, stalls).
            stats["http"] = msgspec.structs.asdict(counters)
            return stats

        return await library.run_io(read)

    @get("/api/indexes", summary="Available indexes", guards=[require("read")])
    async def indexes(self, library: LibraryDep) -> dict[str, list[IndexStatus]]:
        # Public: a model kept in a local directory is shown by name, not by path.
        report = await library.run_io(library.index_report)
        return {"indexes": [public_status(status) for status in report]}
