"""``/s/{token}``: an album's share link, read-only and without logging in.

Everything a link shows lives under its own path: the page ``/s/{token}``, the password
form ``POST /s/{token}/unlock``, and the JSON ``/s/{token}/api/images`` (a page of the
album's images) with ``.../{sha256}/thumbnail`` and ``.../{sha256}/file``, which answer
only for images in that album. Nothing else is reachable with a token: the token is not
a credential of the rest of the API.

These routes carry no guard and `AuthMiddleware` treats them as anonymous (no session,
so no CSRF: the unlock form grants nothing beyond the link it names). An unknown,
expired or revoked token is the same 404. A link with a password needs it once: a right
password sets an HttpOnly cookie scoped to ``/s/{token}``, signed with the server's
secret and valid for `UNLOCK_SECONDS`; wrong passwords are rate-limited per link and per
client address (429).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post, route
from litestar.datastructures import Cookie, State
from litestar.enums import HttpMethod, RequestEncodingType
from litestar.params import Body, FromPath, QueryParameter
from litestar.response import Redirect, Template

from imgdex import albums
from imgdex.auth.ratelimit import LoginLimiter
from imgdex.auth.service import TooManyAttempts
from imgdex.auth.tokens import hash_token
from imgdex.catalog import Catalog
from imgdex.errors import ImgdexError, NotFound
from imgdex.filters import ImageFilters
from imgdex.imaging import media_type
from imgdex.pools import Pools
from imgdex.schemas import ImageListResponse

from .deps import CatalogDep, ImagesDep, PoolsDep, SearcherDep
from .images import file_response

__all__ = ["UNLOCK_SECONDS", "ShareController", "share_limiter"]

UNLOCK_COOKIE = "imgdex_share"
UNLOCK_SECONDS = 3600
PAGE_SIZE = 100
_MISSING = "no such share link"


class ShareLocked(ImgdexError):
    status = 401
    code = "share_locked"


def share_limiter(state: State) -> LoginLimiter:
    """The wrong-password limiter of share links (made once, like the login limits)."""
    limiter: LoginLimiter | None = getattr(state, "share_limiter", None)
    if limiter is None:
        cfg = state.auth.config
        limiter = LoginLimiter(
            cfg.login_attempts_per_account, cfg.login_attempts_per_address, cfg.login_window
        )
        state.share_limiter = limiter
    return limiter


def _sign(state: State, token_hash: str, expires: int) -> str:
    key = hashlib.sha256(b"imgdex-share-unlock:" + state.csrf_config.secret.encode()).digest()
    return hmac.new(key, f"{token_hash}|{expires}".encode(), hashlib.sha256).hexdigest()


def _unlocked(request: Request[Any, Any, Any], token_hash: str) -> bool:
    value = request.cookies.get(UNLOCK_COOKIE, "")
    expires, _, mac = value.partition(".")
    if not expires.isdigit() or int(expires) < time.time():
        return False
    return hmac.compare_digest(mac, _sign(request.app.state, token_hash, int(expires)))


async def _live(catalog: Catalog, pools: Pools, token: str) -> tuple[int, bool, str]:
    """``(album id, has password, token hash)`` of a live link; 404 otherwise."""
    token_hash = hash_token(token)
    found = await pools.run_io(catalog.shares.live_share, token_hash)
    if found is None or not found[0].album_id.isdigit():
        raise NotFound(_MISSING, code="unknown_share")
    album_id = int(found[0].album_id)
    if await pools.run_io(catalog.albums.get_album, album_id) is None:
        raise NotFound(_MISSING, code="unknown_share")
    return album_id, found[0].has_password, token_hash


async def _album(
    catalog: Catalog, pools: Pools, request: Request[Any, Any, Any], token: str
) -> int:
    """The album a request under ``/s/{token}`` may read (401 while locked)."""
    album_id, locked, token_hash = await _live(catalog, pools, token)
    if locked and not _unlocked(request, token_hash):
        raise ShareLocked("this share link needs its password", code="share_locked")
    return album_id


async def _ranked(
    catalog: Catalog, pools: Pools, searcher: SearcherDep, album_id: int
) -> list[str] | None:
    row = await pools.run_io(albums.get_album, catalog, album_id)
    if row.smart is None or not row.smart.query:
        return None
    found = await searcher.search_text(row.smart.query, albums.search_options(row.smart))
    return [r.sha256 for r in found.results]


async def _newest(
    catalog: Catalog, pools: Pools, searcher: SearcherDep, album_id: int, offset: int, limit: int
) -> ImageListResponse:
    """A page of the album's images, newest first (a smart album's: of its search)."""
    ranked = await _ranked(catalog, pools, searcher, album_id)
    return await pools.run_io(
        lambda: albums.page(
            catalog, album_id, offset=offset, limit=limit, sort="created_at",
            order="desc", ranked=ranked,
        )
    )  # fmt: skip


async def _check_member(
    catalog: Catalog, pools: Pools, searcher: SearcherDep, album_id: int, sha256: str
) -> None:
    """404 unless `sha256` is a live image of the album (a smart album: its search)."""
    row = await pools.run_io(catalog.albums.get_album, album_id)
    smart = albums.smart_of(row) if row is not None else None
    filters = ImageFilters(album=album_id) if smart is None else smart.filters or ImageFilters()
    members = await pools.run_io(catalog.images.filter_ids, filters)
    ranked = await _ranked(catalog, pools, searcher, album_id) if smart is not None else None
    if sha256 not in members or (ranked is not None and sha256 not in ranked):
        raise NotFound("no such image in this album", code="image_not_found")


class ShareController(Controller):
    path = "/s/{token:str}"
    tags = ["shares"]

    @get("/", summary="A shared album (HTML)", include_in_schema=False)
    async def page(
        self,
        catalog: CatalogDep,
        pools: PoolsDep,
        searcher: SearcherDep,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        offset: Annotated[int, QueryParameter(ge=0, le=1_000_000_000)] = 0,
    ) -> Template:
        """The album's name and a grid of its images (``PAGE_SIZE`` a page, ``?offset=``)."""
        album_id, locked, token_hash = await _live(catalog, pools, token)
        if locked and not _unlocked(request, token_hash):
            return _locked_page(token, None, 200)
        album = await pools.run_io(albums.get_album, catalog, album_id)
        found = await _newest(catalog, pools, searcher, album_id, offset, PAGE_SIZE)
        more = offset + PAGE_SIZE < found.total
        return Template(
            template_name="share.html",
            context={
                "token": token,
                "album": album,
                "images": found.images,
                "total": found.total,
                "next": offset + PAGE_SIZE if more else None,
                "prev": max(0, offset - PAGE_SIZE) if offset else None,
            },
        )

    @post("/unlock", summary="Give a share link's password", include_in_schema=False)
    async def unlock(
        self,
        catalog: CatalogDep,
        pools: PoolsDep,
        state: State,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response[Any]:
        _, locked, token_hash = await _live(catalog, pools, token)
        if not locked:
            return Redirect(f"/s/{token}", status_code=303)
        limiter = share_limiter(state)
        client = request.client.host if request.client else "unknown"
        account = f"share:{token_hash}"
        if wait := limiter.retry_after(account, client):
            raise TooManyAttempts(wait)
        password = str(data.get("password", ""))[:1024]
        try:
            await pools.run_io(state.shares.album_of, token, password)
        except NotFound:
            limiter.failed(account, client)
            return _locked_page(token, "Wrong password.", 401)
        limiter.succeeded(account)
        expires = int(time.time()) + UNLOCK_SECONDS
        cookie = Cookie(
            key=UNLOCK_COOKIE,
            value=f"{expires}.{_sign(state, token_hash, expires)}",
            path=f"/s/{token}",
            max_age=UNLOCK_SECONDS,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return Redirect(f"/s/{token}", status_code=303, cookies=[cookie])

    @get("/api/images", summary="A page of a shared album's images")
    async def images(
        self,
        catalog: CatalogDep,
        pools: PoolsDep,
        searcher: SearcherDep,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        offset: Annotated[int, QueryParameter(ge=0, le=1_000_000_000)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 20,
    ) -> ImageListResponse:
        """Like ``GET /api/albums/{id}/images``, newest first."""
        album_id = await _album(catalog, pools, request, token)
        return await _newest(catalog, pools, searcher, album_id, offset, limit)

    @route(
        "/api/images/{sha256:str}/{kind:str}",
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        summary="A shared image's thumbnail or original file",
    )
    async def file(
        self,
        catalog: CatalogDep,
        pools: PoolsDep,
        reader: ImagesDep,
        searcher: SearcherDep,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        sha256: FromPath[str],
        kind: FromPath[str],
    ) -> Response[Any]:
        """``kind`` is ``thumbnail`` or ``file``; only images of the shared album."""
        if kind not in ("thumbnail", "file"):
            raise NotFound("not found")
        album_id = await _album(catalog, pools, request, token)
        await _check_member(catalog, pools, searcher, album_id, sha256)
        opened = await reader.open_file(sha256, kind)
        name = opened.row.original_name or opened.row.filename
        if kind == "thumbnail":
            stem = name.rsplit(".", 1)[0]
            return file_response(
                request, reader, opened, f"{sha256}-thumb", "image/jpeg", f"{stem}-thumbnail.jpg"
            )
        return file_response(request, reader, opened, sha256, media_type(opened.row.format), name)


def _locked_page(token: str, error: str | None, status: int) -> Template:
    return Template(
        template_name="share_locked.html",
        context={"token": token, "error": error},
        status_code=status,
    )
