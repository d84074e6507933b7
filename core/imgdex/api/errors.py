"""Every error becomes one JSON shape: ``{"status_code", "error", "detail"}``.

This is the only place where exceptions meet HTTP. Client mistakes get a 4xx naming the
problem; anything unexpected is logged with its traceback and answered with a generic
500 that leaks nothing.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from imgdex.errors import ImgdexError

__all__ = ["exception_handlers"]

log = logging.getLogger("imgdex.api")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def _json(
    status: int,
    code: str,
    detail: str,
    extra: Any = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"status_code": status, "error": code, "detail": detail}
    if extra:
        body["extra"] = extra
    return Response(body, status_code=status, media_type=MediaType.JSON, headers=headers)


def _private_roots(request: Request[Any, Any, Any]) -> list[str]:
    """Where this box keeps its files: the data directory, and the working directory
    (a relative path in a message resolves from it)."""
    roots = [os.getcwd()]
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is not None:
        data = runtime.config.data_path
        roots += [str(data), str(data.resolve())]
    return sorted({r for r in roots if len(r) > 1}, key=len, reverse=True)


def _redact(request: Request[Any, Any, Any], detail: str) -> str:
    """A detail with every path of this box's files cut out: a message may name what
    failed, never where the server keeps it."""
    for root in _private_roots(request):
        detail = re.sub(re.escape(root) + r"[^\s'\"]*", "<path>", detail)
    return detail


def _imgdex_error(request: Request[Any, Any, Any], exc: ImgdexError) -> Response[dict[str, Any]]:
    if exc.status >= 500:
        log.warning("%s: %s", exc.code, exc.detail)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return _json(exc.status, exc.code, _redact(request, exc.detail), headers=headers)


def _validation_error(
    _: Request[Any, Any, Any], exc: ValidationException
) -> Response[dict[str, Any]]:
    # Litestar lists what failed in `extra` ([{"key": ..., "message": ...}]); name it.
    problems = exc.extra if isinstance(exc.extra, list) else []
    parts = []
    for item in problems:
        if isinstance(item, dict):
            key = item.get("key")
            parts.append(f"{key}: {item.get('message')}" if key else str(item.get("message")))
    detail = "; ".join(parts) or exc.detail
    return _json(400, "invalid_request", detail, problems or None)


def _msgspec_error(
    _: Request[Any, Any, Any], exc: msgspec.ValidationError
) -> Response[dict[str, Any]]:
    return _json(400, "invalid_request", str(exc))


_PASSED_HEADERS = frozenset({"allow", "www-authenticate", "retry-after"})


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    if status >= 500 and status != 503:
        # A framework 500 (a file response whose file vanished, say) describes internals,
        # paths included: log it, answer the generic error.
        log.error("HTTP %s on %s %s: %s", status, request.method, request.url.path, exc.detail)
        return _json(status, "internal_error", "internal server error")
    detail = exc.detail
    if status == 413:
        detail = "the request body is larger than server.max_upload_bytes"
    # Headers the exception carries go out: Allow on a 405 (RFC 9110), WWW-Authenticate
    # on a 401, Retry-After.
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() in _PASSED_HEADERS}
    return _json(
        status, _CODES.get(status, "http_error"), _redact(request, detail), headers=headers or None
    )


def _internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _json(HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", "internal server error")


exception_handlers: dict[Any, Any] = {
    ImgdexError: _imgdex_error,
    ValidationException: _validation_error,
    msgspec.ValidationError: _msgspec_error,
    HTTPException: _http_error,
    Exception: _internal_error,
}
