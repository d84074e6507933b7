"""``/admin/panel`` and ``/admin/accounts``: the live parts of the admin page, rendered
from the admin API's data.

They need the same admin credential as ``/api/admin``: an admin's session, or in
``auth.mode: none`` the admin token that the page's script keeps in sessionStorage.
Actions (enable, pause, retry, users, keys) go to the JSON API itself.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Controller, get
from litestar.datastructures import State
from litestar.response import Template

from imgdex.api.deps import PoolsDep, ReportsDep, ServicesDep, WorkerDep, admin_guard
from imgdex.auth.policy import ROLES

from .headers import security_headers

__all__ = ["AdminPanelController", "eta_text", "when"]


def when(epoch: float | None) -> str:
    """A stored time (seconds since the epoch) as UTC text for a table."""
    if epoch is None:
        return "never"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def eta_text(value: float | None) -> str:
    if value is None:
        return "unknown"
    seconds = round(value)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class AdminPanelController(Controller):
    path = "/admin"
    guards = [admin_guard]
    include_in_schema = False
    after_request = security_headers  # type: ignore[assignment]

    @get("/panel", name="web-admin-panel")
    async def panel(
        self,
        reports: ReportsDep,
        services: ServicesDep,
        worker: WorkerDep,
        pools: PoolsDep,
    ) -> Template:
        rates = worker.rates()

        def read() -> dict[str, Any]:
            return {
                "plugins": msgspec.to_builtins(reports.plugins()),
                "indexes": msgspec.to_builtins(reports.indexes()),
                "jobs": msgspec.to_builtins(reports.jobs(paused=worker.paused, rates=rates)),
                "services": msgspec.to_builtins(services.report()),
            }

        data = await pools.run_io(read)
        data["eta_text"] = eta_text
        return Template(template_name="_admin_panel.html", context=data)

    @get("/accounts", name="web-admin-accounts")
    async def accounts(self, pools: PoolsDep, state: State) -> Template:
        """Users and everyone's API keys (the data of ``/api/admin/users`` and
        ``/api/keys?all_users=true``)."""

        def read() -> dict[str, Any]:
            store = state.auth.store
            return {"users": store.list_users(), "keys": store.list_keys(), "roles": list(ROLES)}

        data = await pools.run_io(read)
        data["when"] = when
        return Template(template_name="_admin_accounts.html", context=data)
