"""``/api/search``: text, image (multipart) and image (base64) search."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec
from litestar import Controller, Request, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK

from imgdex.auth.guards import require
from imgdex.errors import BadRequest
from imgdex.schemas import (
    SearchImageBase64Request,
    SearchOptions,
    SearchResponse,
    SearchTextRequest,
)
from imgdex.staging import StagedFile

from .deps import SearcherDep
from .request import LARGE_JSON
from .uploads import Form, read_form, upload_operation

__all__ = ["FILTER_FIELDS", "IMAGE_SEARCH_FIELDS", "SearchController"]

# The filters as plain form fields (the JSON searches take them as a `filters` object).
FILTER_FIELDS = {
    "taken_after": "filter: taken at or after this ISO 8601 date or date-time",
    "taken_before": "filter: taken before this ISO 8601 date or date-time",
    "camera": "filter: camera make or model, case-insensitive",
    "source": "filter: exact source label",
    "tags": "filter: images with all these tags, separated by commas",
    "any_tags": "filter: images with at least one of these tags, separated by commas",
    "album": "filter: album id",
    "favorite": "filter: true for favourites only, false for the others",
    "min_rating": "filter: rating at least (0-5)",
    "has_gps": "filter: true for images with a GPS position, false for those without",
    "near": "filter: lat,lon,km: images taken within km of the point",
    "format": "filter: stored format (JPEG, PNG, HEIF ...)",
}
_LIST_FILTERS = ("tags", "any_tags")

# The text parts of an image search form, with their OpenAPI descriptions.
IMAGE_SEARCH_FIELDS = {
    "top_k": "results per page (default 10)",
    "offset": "results to skip",
    "index": "one index name, or several separated by commas (default: every index)",
    "methods": "description methods to match, separated by commas",
    "min_score": "drop results scoring below this",
    "fusion": "rrf (default) or max",
    "weights": 'per-index fusion weights as a JSON object, e.g. {"siglip2_image_v1": 2}',
    "sort": "relevance (default) or taken_at (the relevant results, newest first)",
    **FILTER_FIELDS,
}


class SearchController(Controller):
    path = "/api/search"
    tags = ["search"]
    guards = [require("read")]

    @post("/text", status_code=HTTP_200_OK, summary="Search by text")
    async def text(
        self, searcher: SearcherDep, data: JSONBody[SearchTextRequest]
    ) -> SearchResponse:
        """Fan out to every enabled index that answers text (or ``index``) and fuse."""
        return await searcher.search_text(data.query, data)

    @post(
        "/image",
        status_code=HTTP_200_OK,
        summary="Search by image (multipart)",
        operation_class=upload_operation("file", IMAGE_SEARCH_FIELDS),
    )
    async def image(self, searcher: SearcherDep, request: Request[Any, Any, Any]) -> SearchResponse:
        """The query image as a ``file`` part; the options as text parts."""
        # The searcher is the only dependency: with two, Litestar resolves them in an
        # anyio task group, which costs more per request than the search's own hop. The
        # form is read by `read_form`, which is cheaper than Litestar's form parsing.
        form = await read_form(request, "file", IMAGE_SEARCH_FIELDS, searcher.spooling)
        try:
            options = _form_options(form)
            file = form.file
            return await searcher.search_image(
                file.path if isinstance(file, StagedFile) else file, options
            )
        finally:
            form.close()

    @post(
        "/image/base64",
        status_code=HTTP_200_OK,
        summary="Search by image (base64 JSON)",
        opt=LARGE_JSON,  # the image is in the body: bounded like an upload
    )
    async def image_base64(
        self, searcher: SearcherDep, data: JSONBody[SearchImageBase64Request]
    ) -> SearchResponse:
        searcher.image_targets(data)  # bad options answer before the image is decoded
        return await searcher.search_image(_b64decode(data.image), data)


def _split(value: str | None) -> list[str] | None:
    if value is None or not value.strip():
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _form_options(form: Form) -> SearchOptions:
    raw: dict[str, Any] = {}
    for key in ("top_k", "offset", "min_score", "fusion", "sort"):
        if (value := form.text(key)) is not None:
            raw[key] = value
    if filters := _form_filters(form):
        raw["filters"] = filters
    if (names := _split(form.text("index"))) is not None:
        raw["index"] = names[0] if len(names) == 1 else names
    if (methods := _split(form.text("methods"))) is not None:
        raw["methods"] = methods
    if (weights := form.text("weights")) is not None:
        try:
            raw["weights"] = msgspec.json.decode(weights)
        except msgspec.DecodeError:
            raise BadRequest("weights: not a JSON object", code="invalid_request") from None
    try:
        return msgspec.convert(raw, SearchOptions, strict=False)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid search option: {exc}", code="invalid_request") from None


def _form_filters(form: Form) -> dict[str, Any]:
    """The filter fields given, as the `filters` object's raw values."""
    raw: dict[str, Any] = {}
    for key in FILTER_FIELDS:
        value = form.text(key)
        if value is None or not value.strip():
            continue
        if key in _LIST_FILTERS:
            raw[key] = _split(value)
        elif key == "near":
            parts = _split(value) or []
            if len(parts) != 3:
                raise BadRequest("near: give lat,lon,km", code="bad_filter")
            raw[key] = dict(zip(("lat", "lon", "km"), parts, strict=True))
        else:
            raw[key] = value.strip()
    return raw


def _b64decode(value: str) -> bytes:
    if value.startswith("data:"):
        header, _, value = value.partition(",")
        if ";base64" not in header:
            raise BadRequest("the data URL is not base64-encoded", code="bad_base64")
    try:
        data = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("'image' is not valid base64", code="bad_base64") from None
    if not data:
        raise BadRequest("'image' decodes to an empty file", code="empty_file")
    return data
