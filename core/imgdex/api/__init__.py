"""The REST API (Litestar): controllers grouped by area, errors mapped in one place."""

from imgdex.api.app import create_app

__all__ = ["create_app"]
