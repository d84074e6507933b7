"""``/api/admin/services``: the model services of every index; needs the admin token."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK

from imgdex.services import ServiceInfo

from .deps import LibraryDep, admin_guard

__all__ = ["ServicesController"]


class ServicesController(Controller):
    path = "/api/admin/services"
    guards = [admin_guard]
    tags = ["admin"]

    @get("/", summary="Model services and their state")
    async def services(self, library: LibraryDep) -> dict[str, list[ServiceInfo]]:
        """One entry per provider of each index: state and why, latency, errors, requests."""
        return {"services": library.services.report()}

    @post("/{id:str}/enable", status_code=HTTP_200_OK, summary="Enable a model service")
    async def enable(self, library: LibraryDep, id: FromPath[str]) -> dict[str, list[ServiceInfo]]:
        """Takes effect at once; the service is checked again before its next use."""
        return {"services": await library.run_io(library.services.set_enabled, id, True)}

    @post("/{id:str}/disable", status_code=HTTP_200_OK, summary="Disable a model service")
    async def disable(self, library: LibraryDep, id: FromPath[str]) -> dict[str, list[ServiceInfo]]:
        """Takes effect at once and stays off until enabled (health checks skip it)."""
        return {"services": await library.run_io(library.services.set_enabled, id, False)}
