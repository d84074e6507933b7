"""The OpenAPI document and the ``/docs`` page, complete and usable offline.

Swagger UI's assets are served from the ``swagger-ui-bundle`` package under a path that
carries their version, so the page references no outside host. Litestar derives paths,
bodies and schemas from the handlers; `finish_document` adds what it cannot know: the
bearer scheme of the admin endpoints, binary image responses, every error status an
operation can answer with the error schema, id patterns, and a description for every
parameter and schema field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import swagger_ui_bundle
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    Schema,
    SecurityScheme,
)
from litestar.router import Router
from litestar.static_files import create_static_files_router

from .fields import FIELDS, PARAMETERS

__all__ = ["ASSETS", "docs_assets", "finish_document", "openapi_config"]

_BUNDLE = Path(swagger_ui_bundle.swagger_ui_path)
# "/docs/assets/swagger-ui-4.15.5": a new bundle version is a new URL (no stale caches).
ASSETS = f"/docs/assets/{_BUNDLE.name}"
ID_PATTERN = "^[0-9a-f]{32}$"
_ERROR = "Error"

_STATUS_TEXT = {
    400: "Bad input: malformed id, JSON, form or option",
    401: "Missing or wrong admin token",
    404: "No such image, description, index, plugin or service",
    409: "Conflicts with the current state (deleted image, disabled index, id collision)",
    413: "Upload larger than server.max_upload_bytes, or too many pixels",
    415: "Not an image, or a format that is not accepted",
    422: "An image that cannot be decoded (truncated, corrupt)",
    503: "No model or index can answer right now; the detail says why",
}
_IMAGE_INPUT = (400, 413, 415, 422)
_SEARCH = (400, 404, 409, 503)
# (method, path) -> the error statuses the operation can answer.
_ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("get", "/api/images"): (400,),
    ("post", "/api/images"): (*_IMAGE_INPUT, 409),
    ("get", "/api/images/{sha256}"): (400, 404),
    ("delete", "/api/images/{sha256}"): (400, 404),
    ("get", "/api/images/{sha256}/file"): (400, 404),
    ("get", "/api/images/{sha256}/thumbnail"): (400, 404),
    ("get", "/api/images/{sha256}/descriptions"): (400, 404),
    ("post", "/api/images/{sha256}/descriptions"): (400, 404, 409),
    ("delete", "/api/images/{sha256}/descriptions/{method}"): (400, 404),
    ("post", "/api/search/text"): _SEARCH,
    ("post", "/api/search/image"): (*_SEARCH, 413, 415, 422),
    ("post", "/api/search/image/base64"): (*_SEARCH, 413, 415, 422),
    ("post", "/api/admin/plugins/{name}/enable"): (404, 409),
    ("post", "/api/admin/plugins/{name}/disable"): (404, 409),
    ("post", "/api/admin/indexes/{name}/rebuild"): (400, 404, 503),
    ("delete", "/api/admin/indexes/{name}"): (400, 404, 409),
    ("post", "/api/admin/services/{id}/enable"): (404,),
    ("post", "/api/admin/services/{id}/disable"): (404,),
}
# (path, media types) of the endpoints that answer with file bytes.
_BINARY = {
    "/api/images/{sha256}/file": ("image/*", "application/octet-stream"),
    "/api/images/{sha256}/thumbnail": ("image/jpeg",),
}
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
_ERROR_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["status_code", "error", "detail"],
    properties={
        "status_code": Schema(type=OpenAPIType.INTEGER, description="The HTTP status"),
        "error": Schema(
            type=OpenAPIType.STRING,
            description="A stable machine-readable code (e.g. unknown_index)",
        ),
        "detail": Schema(type=OpenAPIType.STRING, description="What is wrong, for people"),
    },
    description="Every error answer",
)


def openapi_config(version: str, session_cookie: str) -> OpenAPIConfig:
    """The OpenAPI config: the bearer and cookie schemes, Swagger UI served locally."""
    swagger = SwaggerRenderPlugin(
        path="/",
        js_url=f"{ASSETS}/swagger-ui-bundle.js",
        css_url=f"{ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS}/favicon-32x32.png'>",
    )
    return OpenAPIConfig(
        title="imgdex",
        version=version,
        description="Self-hosted image library: content-addressed storage, descriptions, "
        "pluggable embedding models and fused text/image search. Authenticate with "
        "`Authorization: Bearer <API key or admin token>` (Authorize, above) or the "
        "session cookie of `POST /api/auth/login` (docs/auth.md).",
        path="/docs",
        render_plugins=[swagger],
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="An API key (imgdex_...), or the admin token: "
                    "server.admin_token, IMGDEX_ADMIN_TOKEN, or the one generated in "
                    "<data>/admin_token",
                ),
                "cookie": SecurityScheme(
                    type="apiKey",
                    name=session_cookie,
                    security_scheme_in="cookie",
                    description="The session cookie of POST /api/auth/login; unsafe "
                    "requests also need the X-CSRFToken header.",
                ),
            },
        ),
        security=[{"bearer": []}, {"cookie": []}],
    )


def docs_assets() -> Router:
    """Swagger UI's files, from the installed package."""
    return create_static_files_router(
        path=ASSETS, directories=[_BUNDLE], include_in_schema=False, name="docs-assets"
    )


def finish_document(document: OpenAPI) -> None:
    """Add to Litestar's document what the handlers do not say (see the module doc)."""
    for path, item in (document.paths or {}).items():
        for method in _METHODS:
            operation: Operation | None = getattr(item, method, None)
            if operation is None:
                continue
            _finish_operation(path, method, operation)
    if document.components is None:
        document.components = Components()
    if document.components.schemas is None:
        document.components.schemas = {}
    schemas = document.components.schemas
    schemas[_ERROR] = _ERROR_SCHEMA
    schemas.pop("ErrorBody", None)  # the guards' copy of the same shape (auth.guards)
    for name, schema in schemas.items():
        if name == _ERROR or not isinstance(schema, Schema):
            continue
        properties = schema.properties or {}
        for field, prop in properties.items():
            if isinstance(prop, Schema) and prop.description:
                continue
            text = FIELDS.get(f"{name}.{field}") or FIELDS.get(field)
            if text and isinstance(prop, Schema):
                prop.description = text
            elif text:  # a $ref cannot carry a description of its own in OpenAPI 3.1
                properties[field] = Schema(all_of=[prop], description=text)


def _finish_operation(path: str, method: str, operation: Operation) -> None:
    responses: dict[str, Any] = dict(operation.responses or {})
    errors = _ERRORS.get((method, path), ())
    if path.startswith("/api/admin/"):
        errors = (401, *errors)
    # Litestar documents its own validation shape under 400; ours replaces it. Errors
    # documented elsewhere (the guards' 401 and 403) keep their text, with our schema.
    responses.pop("400", None)
    described = {
        int(status): response.description
        for status, response in responses.items()
        if int(status) >= 400 and isinstance(response, OpenAPIResponse)
    }
    for status in sorted(set(errors) | set(described)):
        responses[str(status)] = OpenAPIResponse(
            description=described.get(status) or _STATUS_TEXT[status],
            content={
                "application/json": OpenAPIMediaType(
                    schema=Reference(f"#/components/schemas/{_ERROR}")
                )
            },
        )
    if (kinds := _BINARY.get(path)) is not None:
        binary = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
        responses["200"] = OpenAPIResponse(
            description="The file's bytes",
            content={kind: OpenAPIMediaType(schema=binary) for kind in kinds},
        )
    operation.responses = responses
    for parameter in operation.parameters or []:
        if isinstance(parameter, Reference):
            continue
        if not parameter.description:
            parameter.description = PARAMETERS.get(parameter.name)
        if parameter.name == "sha256" and isinstance(parameter.schema, Schema):
            parameter.schema.pattern = ID_PATTERN
