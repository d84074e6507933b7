"""``/api/images``: upload, list, read, delete, files and descriptions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import File
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from imgdex.auth.guards import check_hard_delete, creator, require
from imgdex.imaging import media_type
from imgdex.schemas import (
    DeleteResponse,
    DescriptionOut,
    DescriptionRequest,
    DescriptionResponse,
    ImageListResponse,
    ImageOut,
    UploadResponse,
)

from .deps import LibraryDep
from .uploads import read_form, upload_operation

__all__ = ["ImagesController"]

_IMMUTABLE = "public, max-age=31536000, immutable"


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
        self, library: LibraryDep, request: Request[Any, Any, Any]
    ) -> Response[UploadResponse]:
        """Store an image once per content and embed it with every enabled image model.

        The body is ``multipart/form-data`` with a ``file`` part and an optional
        ``source``; it is read straight into memory (`imgdex.api.uploads`)."""
        form = await read_form(request, "file", ("source",))
        source = form.text("source")
        result = await library.ingest(form.file, source[:200] if source else None)
        if (who := creator(request)) is not None:
            await library.run_io(library.catalog.users.set_image_creator, result.sha256, who)
        return Response(result, status_code=HTTP_200_OK if result.duplicate else HTTP_201_CREATED)

    @get("/", summary="List images")
    async def list_images(
        self,
        library: LibraryDep,
        offset: Annotated[int, QueryParameter(ge=0, le=1_000_000_000)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 20,
        status: FromQuery[Literal["pending", "ready", "failed"] | None] = None,
        source: FromQuery[str | None] = None,
        include_deleted: FromQuery[bool] = False,
    ) -> ImageListResponse:
        return await library.list_images(
            offset=offset,
            limit=limit,
            status=status,
            source=source,
            include_deleted=include_deleted,
        )

    @get("/{sha256:str}", summary="Image facts and descriptions")
    async def get_image(self, library: LibraryDep, sha256: FromPath[str]) -> ImageOut:
        return await library.get_image(sha256)

    @delete(
        "/{sha256:str}",
        status_code=HTTP_200_OK,
        summary="Delete an image",
        guards=[require("delete")],
    )
    async def delete_image(
        self,
        library: LibraryDep,
        request: Request[Any, Any, Any],
        sha256: FromPath[str],
        hard: FromQuery[bool] = False,
    ) -> DeleteResponse:
        """Soft delete (restorable by uploading the same file), or ``?hard=true`` for good
        (``?hard=true`` needs an admin credential)."""
        if hard:
            check_hard_delete(request)
        return await library.delete(sha256, hard=hard)

    @get("/{sha256:str}/file", summary="The original file")
    async def file(
        self, library: LibraryDep, request: Request[Any, Any, Any], sha256: FromPath[str]
    ) -> Response[Any]:
        row, path = await library.file_path(sha256, "file")
        return _immutable_file(request, sha256, path, media_type(row.format), row.filename)

    @get("/{sha256:str}/thumbnail", summary="A JPEG thumbnail (fits 256x256)")
    async def thumbnail(
        self, library: LibraryDep, request: Request[Any, Any, Any], sha256: FromPath[str]
    ) -> Response[Any]:
        _, path = await library.file_path(sha256, "thumbnail")
        return _immutable_file(request, f"{sha256}-thumb", path, "image/jpeg", "thumbnail.jpg")

    @post(
        "/{sha256:str}/descriptions",
        status_code=HTTP_201_CREATED,
        summary="Add a description",
        guards=[require("write")],
    )
    async def add_description(
        self,
        library: LibraryDep,
        request: Request[Any, Any, Any],
        sha256: FromPath[str],
        data: JSONBody[DescriptionRequest],
    ) -> DescriptionResponse:
        """Store (or replace) the description of one method; embedded by every text model."""
        result = await library.add_description(sha256, data.method, data.content)
        if (who := creator(request)) is not None:
            users = library.catalog.users
            await library.run_io(users.set_description_creator, sha256, data.method, who)
        return result

    @get("/{sha256:str}/descriptions", summary="List descriptions")
    async def descriptions(
        self, library: LibraryDep, sha256: FromPath[str]
    ) -> list[DescriptionOut]:
        return await library.get_descriptions(sha256)

    @delete(
        "/{sha256:str}/descriptions/{method:str}",
        status_code=HTTP_200_OK,
        summary="Delete a description",
        guards=[require("write")],
    )
    async def delete_description(
        self, library: LibraryDep, sha256: FromPath[str], method: FromPath[str]
    ) -> dict[str, str]:
        await library.delete_description(sha256, method)
        return {"message": "description deleted", "sha256": sha256, "method": method}


def _immutable_file(
    request: Request[Any, Any, Any], etag: str, path: Any, media: str, filename: str
) -> Response[Any]:
    # Content under an id never changes: a strong ETag and a year of caching are safe.
    headers = {"Cache-Control": _IMMUTABLE, "ETag": f'"{etag}"'}
    if etag in request.headers.get("if-none-match", ""):
        return Response(content=b"", status_code=304, headers=headers)
    return File(
        path=path,
        media_type=media,
        filename=filename,
        content_disposition_type="inline",
        headers=headers,
    )
