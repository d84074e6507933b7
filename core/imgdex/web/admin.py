"""``/admin/panel``: the live part of the admin page, rendered from the admin API's data.

It needs the same Bearer token as ``/api/admin`` (the page's script sends the token it
keeps in sessionStorage). Actions (enable, pause, retry) go to the JSON API itself.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, get
from litestar.datastructures import State
from litestar.response import Template

from imgdex.api.deps import LibraryDep, admin_guard

from .headers import security_headers

__all__ = ["AdminPanelController", "eta_text"]


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
    path = "/admin/panel"
    guards = [admin_guard]
    include_in_schema = False
    after_request = security_headers  # type: ignore[assignment]

    @get("/", name="web-admin-panel")
    async def panel(self, library: LibraryDep, state: State) -> Template:
        def read() -> dict[str, Any]:
            return {
                "plugins": msgspec.to_builtins(library.plugin_report()),
                "indexes": msgspec.to_builtins(library.index_report()),
                "jobs": state.enricher.report(),
                "services": msgspec.to_builtins(library.services.report()),
            }

        data = await library.run_io(read)
        data["eta_text"] = eta_text
        return Template(template_name="_admin_panel.html", context=data)
