"""``/api/admin/services``: the model services of every index; needs the admin token."""

from __future__ import annotations

import msgspec
from litestar import Controller, get, post
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK

from imgdex.services import ServiceInfo

from .deps import PoolsDep, ServicesDep, admin_guard

__all__ = ["ServicesController"]


class ServicesAnswer(msgspec.Struct, kw_only=True, frozen=True):
    services: list[ServiceInfo]


class ServicesController(Controller):
    path = "/api/admin/services"
    guards = [admin_guard]
    tags = ["admin"]

    @get("/", summary="Model services and their state")
    async def services(self, services: ServicesDep) -> ServicesAnswer:
        """One entry per provider of each index: state and why, latency, errors, requests."""
        return ServicesAnswer(services=services.report())

    @post("/{id:str}/enable", status_code=HTTP_200_OK, summary="Enable a model service")
    async def enable(
        self, services: ServicesDep, pools: PoolsDep, id: FromPath[str]
    ) -> ServicesAnswer:
        """Takes effect at once; the service is checked again before its next use."""
        return ServicesAnswer(services=await pools.run_io(services.set_enabled, id, True))

    @post("/{id:str}/disable", status_code=HTTP_200_OK, summary="Disable a model service")
    async def disable(
        self, services: ServicesDep, pools: PoolsDep, id: FromPath[str]
    ) -> ServicesAnswer:
        """Takes effect at once and stays off until enabled (health checks skip it)."""
        return ServicesAnswer(services=await pools.run_io(services.set_enabled, id, False))
