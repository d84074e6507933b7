"""The errors imgdex raises on purpose, each carrying the HTTP status it maps to.

The API layer turns every `ImgdexError` into a JSON body
``{"status_code": N, "error": "<code>", "detail": "<message>"}`` in one place
(`imgdex.api.errors`); library code raises these and never builds responses.
"""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "ConfigError",
    "Conflict",
    "ImgdexError",
    "NotFound",
    "PayloadTooLarge",
    "ServiceUnavailable",
    "UnprocessableImage",
    "UnsupportedMedia",
    "detail_of",
    "reason_of",
]


class ImgdexError(Exception):
    """Base of all deliberate errors; `status` and `code` describe it to clients."""

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self, detail: str, *, code: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        # Seconds after which a retry may succeed (a ``Retry-After`` header), for 503s.
        self.retry_after = retry_after


class BadRequest(ImgdexError):
    status = 400
    code = "bad_request"


class NotFound(ImgdexError):
    status = 404
    code = "not_found"


class Conflict(ImgdexError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ImgdexError):
    status = 413
    code = "payload_too_large"


class UnsupportedMedia(ImgdexError):
    status = 415
    code = "not_an_image"


class UnprocessableImage(ImgdexError):
    status = 422
    code = "unprocessable_image"


class ServiceUnavailable(ImgdexError):
    """A model or index needed for the request cannot serve right now (not the client's fault)."""

    status = 503
    code = "service_unavailable"


class ConfigError(ImgdexError):
    """The configuration file or environment is invalid; raised at start-up."""

    code = "config_error"


def reason_of(detail: str, name: str) -> str:
    """`detail` without a leading ``"<name>: "``, for places that name the index (or
    model) themselves: a model slot's errors start with its name, and an answer saying
    ``"siglip2_image_v1: siglip2_image_v1: model unavailable"`` helps nobody."""
    prefix = f"{name}: "
    return detail[len(prefix) :] if detail.startswith(prefix) else detail


def detail_of(exc: BaseException) -> str:
    """What went wrong, for a log line, a report or another error's detail: an
    `ImgdexError`'s own detail, else the exception's type and message."""
    return exc.detail if isinstance(exc, ImgdexError) else f"{type(exc).__name__}: {exc}"
