"""The HTML pages: gallery, search, image, upload, admin and account (shells; their data
in admin.py and account.py), and the log-in page."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Template

from imgdex.albums import check_filters
from imgdex.api.deps import CatalogDep, ImagesDep, PoolsDep, SearcherDep, SpoolingDep
from imgdex.api.filterparams import filters_from_fields
from imgdex.api.uploads import read_form
from imgdex.auth.guards import principal_of, require
from imgdex.errors import ImgdexError
from imgdex.schemas import SearchOptions
from imgdex.staging import StagedFile

from .access import page_exception_handlers, page_guard, safe_next
from .headers import security_headers
from .organise import all_albums, image_extras
from .views import PAGE_SIZE, gallery_page, result_cards

__all__ = ["PagesController"]

SEARCH_TOP_K = 48


def _htmx(request: Request[Any, Any, Any]) -> bool:
    # A history restore asks for the whole page, not the fragment.
    headers = request.headers
    restore = headers.get("hx-history-restore-request") == "true"
    return headers.get("hx-request") == "true" and not restore


class PagesController(Controller):
    path = "/"
    include_in_schema = False
    after_request = security_headers  # type: ignore[assignment]
    exception_handlers = page_exception_handlers

    @get("/", name="web-gallery", guards=[page_guard("read")])
    async def gallery(
        self,
        request: Request[Any, Any, Any],
        reader: ImagesDep,
        catalog: CatalogDep,
        pools: PoolsDep,
        offset: FromQuery[int] = 0,
        order: FromQuery[Literal["newest", "oldest"]] = "newest",
        sort: FromQuery[Literal["added", "taken"]] = "added",
        status: FromQuery[Literal["", "pending", "ready", "failed"]] = "",
        source: FromQuery[str] = "",
        taken_after: FromQuery[str] = "",
        taken_before: FromQuery[str] = "",
        camera: FromQuery[str] = "",
        tag: FromQuery[str] = "",
        album: FromQuery[str] = "",
        favorite: FromQuery[Literal["", "true"]] = "",
    ) -> Template:
        offset = max(0, min(offset, 1_000_000_000))
        source = source.strip()[:200]
        # The form's fields, by the API's query parameter names (`tag` is `tags`).
        fields = {
            "taken_after": taken_after.strip()[:40],
            "taken_before": taken_before.strip()[:40],
            "camera": camera.strip()[:200],
            "tags": tag.strip()[:200],
            "album": album.strip()[:20],
            "favorite": favorite,
        }
        filters = {"order": order, "sort": sort, "status": status, "source": source}
        shown = {**filters, **fields, "tag": fields["tags"]}
        error = None
        cards: list[Any] = []
        total = 0
        try:
            image_filters = filters_from_fields(lambda name: [fields.get(name, "")])
            if image_filters.album is not None:
                await pools.run_io(check_filters, catalog, image_filters)
            cards, total = await gallery_page(
                reader,
                offset=offset,
                order=order,
                sort=sort,
                status=status or None,
                source=source or None,
                filters=image_filters,
            )
        except ImgdexError as exc:
            error = exc.detail
        defaults = {"order": "newest", "sort": "added"}
        query = {
            k: v
            for k, v in {**filters, **fields}.items()
            if v and k != "tags" and defaults.get(k) != v
        }
        if fields["tags"]:
            query["tag"] = fields["tags"]
        next_offset = offset + PAGE_SIZE
        context = {
            "page": "gallery",
            "cards": cards,
            "total": total,
            "offset": offset,
            "filters": shown,
            "error": error,
            "albums": await all_albums(catalog, pools),
            "selectable": principal_of(request).allows("write"),
            "more_url": f"/?{urlencode({**query, 'offset': next_offset})}"
            if next_offset < total
            else None,
        }
        name = "_cards.html" if _htmx(request) else "gallery.html"
        # A bad filter (a date that is not one) says why on the page, as a 400.
        return Template(template_name=name, context=context, status_code=400 if error else 200)

    @get("/search", name="web-search", guards=[page_guard("read")])
    async def search(
        self,
        request: Request[Any, Any, Any],
        reader: ImagesDep,
        searcher: SearcherDep,
        q: FromQuery[str] = "",
    ) -> Template:
        q = q.strip()[:4096]
        context: dict[str, Any] = {"page": "search", "q": q, "cards": None, "error": None}
        if q:
            try:
                response = await searcher.search_text(q, SearchOptions(top_k=SEARCH_TOP_K))
                context["cards"] = await result_cards(reader, response)
            except ImgdexError as exc:
                context["error"] = exc.detail
        name = "_results.html" if _htmx(request) else "search.html"
        return Template(template_name=name, context=context)

    # A fragment for search.js: guarded like POST /api/search/image (JSON 401/403).
    @post("/search/image", name="web-search-image", status_code=200, guards=[require("read")])
    async def search_image(
        self,
        request: Request[Any, Any, Any],
        reader: ImagesDep,
        searcher: SearcherDep,
        spooling: SpoolingDep,
    ) -> Template:
        """The results grid for a query image posted as a ``file`` part."""
        form = await read_form(request, "file", (), spooling)
        context: dict[str, Any] = {"q": "", "cards": None, "error": None}
        try:
            file = form.file
            query = file.path if isinstance(file, StagedFile) else file
            response = await searcher.search_image(query, SearchOptions(top_k=SEARCH_TOP_K))
            context["cards"] = await result_cards(reader, response)
        except ImgdexError as exc:
            context["error"] = exc.detail
        finally:
            form.close()
        return Template(template_name="_results.html", context=context)

    @get("/images/{sha256:str}", name="web-image", guards=[page_guard("read")])
    async def image(
        self, reader: ImagesDep, catalog: CatalogDep, pools: PoolsDep, sha256: FromPath[str]
    ) -> Template:
        try:
            image = await reader.get_image(sha256)
            extras = await image_extras(catalog, pools, sha256)
        except ImgdexError as exc:
            return Template(
                template_name="error.html",
                context={"page": "", "status": exc.status, "detail": exc.detail},
                status_code=exc.status,
            )
        # A trashed image still has its page: it says so and offers to restore it.
        return Template(
            template_name="image.html", context={"page": "image", "image": image, **extras}
        )

    @get(
        "/images/{sha256:str}/descriptions-panel",
        name="web-descriptions",
        guards=[require("read")],
    )
    async def descriptions(self, reader: ImagesDep, sha256: FromPath[str]) -> Template:
        image = await reader.get_image(sha256)
        return Template(template_name="_descriptions.html", context={"image": image})

    @get("/upload", name="web-upload", guards=[page_guard("write")])
    async def upload(self) -> Template:
        return Template(template_name="upload.html", context={"page": "upload"})

    @get("/admin", name="web-admin", guards=[page_guard("admin", open_admin=True)])
    async def admin(self) -> Template:
        return Template(template_name="admin.html", context={"page": "admin"})

    @get("/account", name="web-account", guards=[page_guard("read")])
    async def account(self) -> Template:
        return Template(template_name="account.html", context={"page": "account"})

    @get("/login", name="web-login")
    async def login(self, next_: Annotated[str, QueryParameter(name="next")] = "/") -> Template:
        """Public: the log-in form. `next` is honoured only as a path on this site."""
        return Template(
            template_name="login.html", context={"page": "login", "next": safe_next(next_)}
        )
