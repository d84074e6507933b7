"""``/api/images``: upload, list, read, delete, files and descriptions."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import quote

from litestar import Controller, HttpMethod, Request, Response, delete, get, patch, post, route
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from imgdex.albums import check_filters
from imgdex.auth.guards import check_hard_delete, creator, require
from imgdex.catalog.images import SORT_KEYS
from imgdex.imaging import media_type
from imgdex.ops.images import OpenedFile
from imgdex.organise import edit_image, list_choice
from imgdex.schemas import (
    DeleteResponse,
    DescriptionDeleted,
    DescriptionOut,
    DescriptionRequest,
    DescriptionResponse,
    ImageListResponse,
    ImageOut,
    ImagePatch,
    UploadResponse,
)

from .deps import (
    CatalogDep,
    DeletionDep,
    DescriptionsDep,
    ImagesDep,
    IngestDep,
    PoolsDep,
    TrashDep,
)
from .filterparams import filters_from_fields
from .uploads import read_form, upload_operation

__all__ = ["ImagesController"]

_IMMUTABLE = "public, max-age=31536000, immutable"
_CHUNK = 256 * 1024


class ImagesController(Controller):
    path = "/api/images"
    tags = ["images"]
    guards = [require("read")]  # and write/delete where a handler says so

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Upload an image",
        operation_class=upload_operation(
            "file", {"source": "where the image comes from (an album, a folder)"}
        ),
        guards=[require("write")],
    )
    async def upload(
        self, ingest: IngestDep, request: Request[Any, Any, Any]
    ) -> Response[UploadResponse]:
        """Store an image once per content and embed it with every enabled image model.

        The body is ``multipart/form-data`` with a ``file`` part and an optional
        ``source``; it is read into memory, or staged on disk when large
        (`imgdex.api.uploads`)."""
        form = await read_form(request, "file", ("source",), ingest.spooling)
        try:
            source = form.text("source")
            result = await ingest.ingest(
                form.file, source[:200] if source else None, form.filename, creator(request)
            )
        finally:
            form.close()
        return Response(result, status_code=HTTP_200_OK if result.duplicate else HTTP_201_CREATED)

    @get("/", summary="List images")
    async def list_images(
        self,
        reader: ImagesDep,
        catalog: CatalogDep,
        pools: PoolsDep,
        request: Request[Any, Any, Any],
        offset: Annotated[int, QueryParameter(ge=0, le=1_000_000_000)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 20,
        status: FromQuery[Literal["pending", "ready", "failed"] | None] = None,
        source: FromQuery[str | None] = None,
        include_deleted: FromQuery[bool] = False,
        # organise (issue 14): trash, sorting and the shared image filters.
        deleted: Annotated[
            str | None, QueryParameter(description="exclude (default), include or only")
        ] = None,
        sort: Annotated[str, QueryParameter(description="|".join(SORT_KEYS))] = "created_at",
        order: Annotated[str, QueryParameter(description="asc or desc")] = "desc",
        taken_after: Annotated[
            str | None,
            QueryParameter(description="ISO 8601 date or date-time; taken at or after it"),
        ] = None,
        taken_before: Annotated[
            str | None, QueryParameter(description="ISO 8601 date or date-time; taken before it")
        ] = None,
        camera: Annotated[
            str | None,
            QueryParameter(description="camera make or model contains it, case-insensitive"),
        ] = None,
        tags: Annotated[
            list[str] | None,
            QueryParameter(description="images with all of these tags (repeat or comma-separate)"),
        ] = None,
        any_tags: Annotated[
            list[str] | None, QueryParameter(description="images with at least one of these tags")
        ] = None,
        album: Annotated[str | None, QueryParameter(description="album id")] = None,
        favorite: Annotated[
            str | None, QueryParameter(description="true: only favourites; false: only others")
        ] = None,
        min_rating: Annotated[
            str | None, QueryParameter(description="rating at least (0-5)")
        ] = None,
        has_gps: Annotated[
            str | None, QueryParameter(description="true: with a GPS position; false: without")
        ] = None,
        near: Annotated[
            str | None, QueryParameter(description="lat,lon,km: within km of the point")
        ] = None,
        format: Annotated[
            str | None, QueryParameter(description="stored format, e.g. JPEG, PNG, HEIF")
        ] = None,
    ) -> ImageListResponse:
        """A page of images, newest first; the image filters, ``sort`` and ``order``
        apply, and ``deleted=only`` lists the trash. Tag lists repeat or use commas."""
        # The filter parameters above document the query; they are read from it here so
        # that one parser (shared with the search form) checks them all.
        params = request.query_params
        filters = filters_from_fields(
            lambda name: [] if name == "source" else params.getall(name, [])
        )
        if filters.album is not None:
            await pools.run_io(check_filters, catalog, filters)
        return await reader.list_images(
            offset=offset,
            limit=limit,
            status=status,
            source=source,
            include_deleted=include_deleted,
            deleted=list_choice(deleted, ("exclude", "include", "only"), "deleted"),
            filters=filters,
            sort=list_choice(sort, SORT_KEYS, "sort"),
            order=list_choice(order, ("asc", "desc"), "order"),
        )

    @patch(
        "/{sha256:str}",
        summary="Change an image's source, favourite or rating",
        guards=[require("write")],
    )
    async def patch_image(
        self,
        catalog: CatalogDep,
        pools: PoolsDep,
        sha256: FromPath[str],
        data: JSONBody[ImagePatch],
    ) -> ImageOut:
        """``{"source"?, "favorite"?, "rating"? (0-5)}``; absent fields stay as they are,
        ``"source": null`` clears it."""
        return await pools.run_io(edit_image, catalog, sha256, data)

    @post(
        "/{sha256:str}/restore",
        status_code=HTTP_200_OK,
        summary="Restore from the trash",
        guards=[require("delete")],
    )
    async def restore(self, trash_bin: TrashDep, sha256: FromPath[str]) -> ImageOut:
        """Bring a soft-deleted image back with its descriptions, tags and vectors."""
        return await trash_bin.restore(sha256)

    @get("/{sha256:str}", summary="Image facts and descriptions")
    async def get_image(self, reader: ImagesDep, sha256: FromPath[str]) -> ImageOut:
        return await reader.get_image(sha256)

    @delete(
        "/{sha256:str}",
        status_code=HTTP_200_OK,
        summary="Delete an image",
        guards=[require("delete")],
    )
    async def delete_image(
        self,
        deletion: DeletionDep,
        request: Request[Any, Any, Any],
        sha256: FromPath[str],
        hard: FromQuery[bool] = False,
    ) -> DeleteResponse:
        """Soft delete to the trash (``POST .../restore`` or uploading the same file brings
        it back; upkeep empties the trash after ``storage.trash_days``), or ``?hard=true``
        for good: a hard delete destroys data and needs an admin credential in every mode."""
        if hard:
            check_hard_delete(request)
        return await deletion.delete(sha256, hard=hard)

    @route(
        "/{sha256:str}/file",
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        summary="The original file",
    )
    async def file(
        self,
        reader: ImagesDep,
        request: Request[Any, Any, Any],
        sha256: FromPath[str],
    ) -> Response[Any]:
        """The stored bytes; ``HEAD`` answers the same headers without them."""
        opened = await reader.open_file(sha256, "file")
        return file_response(
            request,
            reader,
            opened,
            sha256,
            media_type(opened.row.format),
            opened.row.original_name or opened.row.filename,
        )

    @route(
        "/{sha256:str}/thumbnail",
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        summary="A JPEG thumbnail (fits 256x256)",
    )
    async def thumbnail(
        self,
        reader: ImagesDep,
        request: Request[Any, Any, Any],
        sha256: FromPath[str],
    ) -> Response[Any]:
        opened = await reader.open_file(sha256, "thumbnail")
        stem = (opened.row.original_name or opened.row.filename).rsplit(".", 1)[0]
        return file_response(
            request, reader, opened, f"{sha256}-thumb", "image/jpeg", f"{stem}-thumbnail.jpg"
        )

    @post(
        "/{sha256:str}/descriptions",
        status_code=HTTP_201_CREATED,
        summary="Add a description",
        guards=[require("write")],
    )
    async def add_description(
        self,
        descriptions: DescriptionsDep,
        request: Request[Any, Any, Any],
        sha256: FromPath[str],
        data: JSONBody[DescriptionRequest],
    ) -> DescriptionResponse:
        """Store (or replace) the description of one method; embedded by every text model."""
        return await descriptions.add(sha256, data.method, data.content, creator(request))

    @get("/{sha256:str}/descriptions", summary="List descriptions")
    async def descriptions(self, reader: ImagesDep, sha256: FromPath[str]) -> list[DescriptionOut]:
        return await reader.get_descriptions(sha256)

    @delete(
        "/{sha256:str}/descriptions/{method:str}",
        status_code=HTTP_200_OK,
        summary="Delete a description",
        guards=[require("write")],
    )
    async def delete_description(
        self, descriptions: DescriptionsDep, sha256: FromPath[str], method: FromPath[str]
    ) -> DescriptionDeleted:
        await descriptions.delete(sha256, method)
        return DescriptionDeleted(message="description deleted", sha256=sha256, method=method)


def file_response(
    request: Request[Any, Any, Any],
    reader: ImagesDep,
    opened: OpenedFile,
    etag: str,
    media: str,
    filename: str,
) -> Response[Any]:
    """Send an opened file (and close it): small ones were read whole, larger ones are
    streamed from the open descriptor, so a concurrent delete or re-upload cannot break
    the reply."""
    # Content under an id never changes: a strong ETag and a year of caching are safe.
    # A stored file is data, never a page: no sniffing, no scripts, not even if a
    # browser is pointed at it (a JPEG+HTML polyglot stays an image).
    headers = {
        "Cache-Control": _IMMUTABLE,
        "ETag": f'"{etag}"',
        "Content-Disposition": content_disposition(filename),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    not_modified = etag in request.headers.get("if-none-match", "")
    if not_modified or request.method == HttpMethod.HEAD or opened.data is not None:
        opened.close()
        if not_modified:
            return Response(content=b"", status_code=304, headers=headers)
        headers["Content-Length"] = str(opened.size)
        body = b"" if request.method == HttpMethod.HEAD else opened.data
        return Response(content=body, headers=headers, media_type=media)
    assert opened.file is not None
    headers["Content-Length"] = str(opened.size)
    return Stream(reader.chunks(opened.file, _CHUNK), headers=headers, media_type=media)


def content_disposition(filename: str) -> str:
    """``inline`` with the file's name, RFC 6266: an ASCII fallback in ``filename`` and
    the exact name, percent-encoded UTF-8, in ``filename*`` (RFC 8187)."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\%' else "_" for c in filename)
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
