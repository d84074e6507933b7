"""``/account/panel``: one's own sessions and API keys, for the account page.

Guarded like ``/api/auth/sessions`` and ``/api/keys`` (the JSON API it mirrors); the
page's script sends creation and revocation to that API and reloads this fragment.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.response import Template

from imgdex.api.deps import PoolsDep
from imgdex.auth.guards import principal_of, require
from imgdex.auth.policy import SCOPES

from .admin import when
from .headers import security_headers

__all__ = ["AccountPanelController"]


class AccountPanelController(Controller):
    path = "/account"
    guards = [require("read")]
    include_in_schema = False
    after_request = security_headers  # type: ignore[assignment]

    @get("/panel", name="web-account-panel")
    async def panel(
        self, pools: PoolsDep, state: State, request: Request[Any, Any, Any]
    ) -> Template:
        p = principal_of(request)

        def read() -> dict[str, Any]:
            if p.user_id is None:
                return {"sessions": [], "keys": []}
            store = state.auth.store
            return {"sessions": store.list_sessions(p.user_id), "keys": store.list_keys(p.user_id)}

        data = await pools.run_io(read)
        data.update(
            when=when,
            current=p.session_id,
            scopes=[s for s in SCOPES if p.allows(s)],
            has_account=p.user_id is not None,
        )
        return Template(template_name="_account_panel.html", context=data)
