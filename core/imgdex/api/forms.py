"""The multipart forms of the API, as dataclasses Litestar fills from the parts.

This module must not use ``from __future__ import annotations``: Litestar reads a form's
type hints (`typing.get_type_hints`) on every multipart request, and string annotations
would be evaluated again each time (0.15 ms per image search).
"""

from dataclasses import dataclass

from litestar.datastructures import UploadFile

__all__ = ["ImageSearchForm"]


@dataclass
class ImageSearchForm:
    file: UploadFile
    top_k: str | None = None
    offset: str | None = None
    index: str | None = None  # one name, or several separated by commas
    methods: str | None = None  # comma-separated
    min_score: str | None = None
    fusion: str | None = None
