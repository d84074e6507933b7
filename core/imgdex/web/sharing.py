"""``/albums/{id}/shares/panel``: an album's live share links, for the album page.

Guarded like ``/api/albums/{id}/shares`` (``write``), the JSON API it mirrors; the page's
script (``static/js/share.js``) sends creation and revocation to that API, shows a new
link's URL once, and reloads this fragment.
"""

from __future__ import annotations

from litestar import Controller, get
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Template

from imgdex import albums
from imgdex.api.deps import CatalogDep, PoolsDep
from imgdex.auth.guards import require

from .admin import when
from .headers import security_headers

__all__ = ["SharePanelController"]


class SharePanelController(Controller):
    path = "/albums/{album:int}/shares"
    guards = [require("write")]
    include_in_schema = False
    after_request = security_headers  # type: ignore[assignment]

    @get("/panel", name="web-album-shares")
    async def panel(
        self, catalog: CatalogDep, pools: PoolsDep, state: State, album: FromPath[int]
    ) -> Template:
        await pools.run_io(albums.get_album, catalog, album)  # 404 if unknown
        shares = await pools.run_io(state.shares.list, str(album))
        return Template(
            template_name="_shares_panel.html",
            context={"shares": shares, "when": when, "album": album},
        )
