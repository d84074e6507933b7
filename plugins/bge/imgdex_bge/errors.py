"""The one error this plugin raises on purpose."""

from __future__ import annotations

__all__ = ["ModelLoadError"]


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message names the model and the reason."""
