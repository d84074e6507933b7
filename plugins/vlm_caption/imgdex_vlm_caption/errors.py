"""The errors this plugin raises: a model that cannot be loaded, a caption that failed.

Both are `imgdex.errors.ServiceUnavailable` (HTTP 503): the model or endpoint cannot
serve right now, which is never the client's fault. Messages name the describer's
method, the model or endpoint, and the reason.
"""

from __future__ import annotations

from imgdex.errors import ServiceUnavailable

__all__ = ["CaptionError", "ModelLoadError"]


class ModelLoadError(ServiceUnavailable):
    """The model or endpoint of a describer is not available (missing weights, unreachable)."""

    code = "model_unavailable"


class CaptionError(ServiceUnavailable):
    """Writing a caption failed: HTTP error, malformed response, timeout or empty text."""

    code = "caption_failed"
