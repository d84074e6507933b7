"""``/api/admin``: plugins, indexes and background work; needs the admin token."""

from __future__ import annotations

import msgspec
from litestar import Controller, delete, get, post
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK

from imgdex.ops.indexes import Rebuilt, Removed
from imgdex.reports import JobsReport
from imgdex.serverquery import PluginsAnswer
from imgdex.status import PluginInfo

from .deps import IndexAdminDep, PoolsDep, RegistryDep, ReportsDep, WorkerDep, admin_guard

__all__ = ["AdminController"]


class Requeued(msgspec.Struct, kw_only=True, frozen=True):
    requeued: int


class Paused(msgspec.Struct, kw_only=True, frozen=True):
    paused: bool


class AdminController(Controller):
    path = "/api/admin"
    guards = [admin_guard]
    tags = ["admin"]

    @get("/plugins", summary="Installed plugins and their state")
    async def plugins(self, reports: ReportsDep, pools: PoolsDep) -> PluginsAnswer:
        """``data_dir_id`` tells which data directory this server serves (for
        ``imgdex plugins``, which asks the server of its own directory)."""
        return await pools.run_io(reports.plugins_answer)

    @post("/plugins/{name:str}/enable", status_code=HTTP_200_OK, summary="Enable a plugin")
    async def enable(
        self, registry: RegistryDep, reports: ReportsDep, pools: PoolsDep, name: FromPath[str]
    ) -> PluginInfo:
        """Takes effect at once and survives restarts; missed work is backfilled."""
        await pools.run_io(registry.set_plugin_enabled, name, True)
        return await pools.run_io(reports.plugin, name)

    @post("/plugins/{name:str}/disable", status_code=HTTP_200_OK, summary="Disable a plugin")
    async def disable(
        self, registry: RegistryDep, reports: ReportsDep, pools: PoolsDep, name: FromPath[str]
    ) -> PluginInfo:
        """It receives no writes and answers no searches; its indexes stay on disk."""
        await pools.run_io(registry.set_plugin_enabled, name, False)
        return await pools.run_io(reports.plugin, name)

    @get("/jobs", summary="Background jobs: counts, progress and errors")
    async def jobs(self, reports: ReportsDep, worker: WorkerDep, pools: PoolsDep) -> JobsReport:
        """Jobs by kind and state; per index and describer: done of total, queued,
        running, failed, rate and ETA; the latest errors of failed jobs."""
        rates = worker.rates()
        return await pools.run_io(lambda: reports.jobs(paused=worker.paused, rates=rates))

    @post("/jobs/retry", status_code=HTTP_200_OK, summary="Retry failed jobs")
    async def retry(self, worker: WorkerDep, pools: PoolsDep) -> Requeued:
        """Failed jobs are queued again with fresh attempts; images failed by them go
        back to pending."""
        return Requeued(requeued=await pools.run_io(worker.retry))

    @post("/jobs/pause", status_code=HTTP_200_OK, summary="Pause background enrichment")
    async def pause(self, worker: WorkerDep) -> Paused:
        worker.pause()
        return Paused(paused=True)

    @post("/jobs/resume", status_code=HTTP_200_OK, summary="Resume background enrichment")
    async def resume(self, worker: WorkerDep) -> Paused:
        worker.resume()
        return Paused(paused=False)

    @post("/indexes/{name:str}/rebuild", status_code=HTTP_200_OK, summary="Compact an index")
    async def rebuild(self, index_admin: IndexAdminDep, name: FromPath[str]) -> Rebuilt:
        """Rebuild from the stored vectors and swap in atomically; searches keep working."""
        return await index_admin.rebuild(name)

    @delete("/indexes/{name:str}", status_code=HTTP_200_OK, summary="Remove an index")
    async def remove_index(self, index_admin: IndexAdminDep, name: FromPath[str]) -> Removed:
        """Remove an index that no enabled plugin uses (e.g. an old model version).

        Its vector files in the image directories are deleted in the background."""
        return await index_admin.remove(name)
