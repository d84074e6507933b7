"""``/health``, ``/api/stats`` and ``/api/indexes``."""

from __future__ import annotations

import msgspec
from litestar import Controller, get

from imgdex.auth.guards import require
from imgdex.reports import Health, Stats
from imgdex.status import IndexStatus, public_status

from .deps import PoolsDep, ReportsDep

__all__ = ["SystemController"]


class IndexesAnswer(msgspec.Struct, kw_only=True, frozen=True):
    indexes: list[IndexStatus]


class SystemController(Controller):
    tags = ["system"]

    @get("/health", summary="Health of the database, models and indexes")
    async def health(self, reports: ReportsDep, pools: PoolsDep) -> Health:
        return await pools.run_io(reports.health)

    @get("/api/stats", summary="Library statistics", guards=[require("read")])
    async def stats(self, reports: ReportsDep, pools: PoolsDep) -> Stats:
        return await pools.run_io(reports.stats)

    @get("/api/indexes", summary="Available indexes", guards=[require("read")])
    async def indexes(self, reports: ReportsDep, pools: PoolsDep) -> IndexesAnswer:
        # Public: a model kept in a local directory is shown by name, not by path.
        report = await pools.run_io(reports.indexes)
        return IndexesAnswer(indexes=[public_status(status) for status in report])
