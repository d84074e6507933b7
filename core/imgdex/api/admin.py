"""``/api/admin``: plugins, indexes and background work; needs the admin token."""

from __future__ import annotations

from typing import Any

from litestar import Controller, delete, get, post
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK

from imgdex.errors import Conflict, NotFound
from imgdex.serverquery import PluginsAnswer, data_dir_id
from imgdex.status import PluginInfo
from imgdex.storage import check_name
from imgdex.upgrades import drop_stand_in

from .deps import LibraryDep, admin_guard

__all__ = ["AdminController"]


class AdminController(Controller):
    path = "/api/admin"
    guards = [admin_guard]
    tags = ["admin"]

    @get("/plugins", summary="Installed plugins and their state")
    async def plugins(self, library: LibraryDep) -> PluginsAnswer:
        """``data_dir_id`` tells which data directory this server serves (for
        ``imgdex plugins``, which asks the server of its own directory)."""
        report = await library.run_io(library.plugin_report)
        return PluginsAnswer(plugins=report, data_dir_id=data_dir_id(library.config.data_path))

    @post("/plugins/{name:str}/enable", status_code=HTTP_200_OK, summary="Enable a plugin")
    async def enable(self, library: LibraryDep, name: FromPath[str]) -> PluginInfo:
        """Takes effect at once and survives restarts; missed work is backfilled."""
        return await library.run_io(self._set, library, name, True)

    @post("/plugins/{name:str}/disable", status_code=HTTP_200_OK, summary="Disable a plugin")
    async def disable(self, library: LibraryDep, name: FromPath[str]) -> PluginInfo:
        """It receives no writes and answers no searches; its indexes stay on disk."""
        return await library.run_io(self._set, library, name, False)

    @staticmethod
    def _set(library: LibraryDep, name: FromPath[str], enabled: bool) -> PluginInfo:
        library.set_plugin_enabled(name, enabled)
        return next(p for p in library.plugin_report() if p.name == name)

    @get("/jobs", summary="Background jobs: counts, progress and errors")
    async def jobs(self, library: LibraryDep, state: State) -> dict[str, Any]:
        """Jobs by kind and state; per index and describer: done of total, queued,
        running, failed, rate and ETA; the latest errors of failed jobs."""
        report: dict[str, Any] = await library.run_io(state.enricher.report)
        return report

    @post("/jobs/retry", status_code=HTTP_200_OK, summary="Retry failed jobs")
    async def retry(self, library: LibraryDep, state: State) -> dict[str, int]:
        """Failed jobs are queued again with fresh attempts; images failed by them go
        back to pending."""
        return {"requeued": await library.run_io(state.enricher.retry)}

    @post("/jobs/pause", status_code=HTTP_200_OK, summary="Pause background enrichment")
    async def pause(self, state: State) -> dict[str, bool]:
        state.enricher.paused = True
        return {"paused": True}

    @post("/jobs/resume", status_code=HTTP_200_OK, summary="Resume background enrichment")
    async def resume(self, state: State) -> dict[str, bool]:
        state.enricher.paused = False
        state.enricher.poke()
        return {"paused": False}

    @post("/indexes/{name:str}/rebuild", status_code=HTTP_200_OK, summary="Compact an index")
    async def rebuild(self, library: LibraryDep, name: FromPath[str]) -> dict[str, Any]:
        """Rebuild from the stored vectors and swap in atomically; searches keep working."""
        check_name(name, "index name")
        slot = library.embedders.get(name)
        if slot is None:
            raise NotFound(f"unknown index {name!r}", code="unknown_index")
        await library.run_model(slot.ensure_loaded)
        result = await library.run_io(library.indexes.rebuild, name)
        return {"index": name, **result}

    @delete("/indexes/{name:str}", status_code=HTTP_200_OK, summary="Remove an index")
    async def remove_index(self, library: LibraryDep, name: FromPath[str]) -> dict[str, Any]:
        """Remove an index that no enabled plugin uses (e.g. an old model version).

        Its vector files in the image directories are deleted in the background."""
        check_name(name, "index name")  # it becomes a path: never '..' or a separator
        slot = library.embedders.get(name)
        if slot is not None and library.plugin_enabled(slot.plugin):
            raise Conflict(
                f"index {name!r} is in use by plugin {slot.plugin.name}; disable it first",
                code="index_in_use",
            )

        def remove() -> int:
            counts = library.catalog.index_counts()
            known = name in counts or name in library.catalog.index_roles()
            if not known and library.indexes.read_meta(name) is None:
                raise NotFound(f"unknown index {name!r}", code="unknown_index")
            with library.catalog.transaction() as db:
                removed = library.catalog.forget_index(db, name)
            drop_stand_in(library, name)
            library.indexes.remove(name)
            if slot is not None:
                slot.index = None
                slot.state = "not_loaded"
            return int(removed)

        removed = await library.run_io(remove)
        library.run_in_background(library.storage.remove_index_vectors, name)
        return {"index": name, "removed_vectors": removed}
