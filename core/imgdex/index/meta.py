"""What the core records about each index (``meta.json``), and reading it back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgdex.providers import Metric

__all__ = ["IndexInfo", "info_from_meta", "read_all_meta", "read_meta"]


@dataclass(frozen=True)
class IndexInfo:
    """What ``meta.json`` records about an index."""

    name: str
    model: str
    model_version: str
    dimension: int
    metric: Metric
    stores: str
    backend: str
    created_at: str
    family: str = ""

    def to_json(self, count: int) -> dict[str, Any]:
        return {
            "index": self.name,
            "family": self.family or self.name,
            "model": self.model,
            "model_version": self.model_version,
            "dimension": self.dimension,
            "metric": self.metric,
            "stores": self.stores,
            "backend": self.backend,
            "count": count,
            "created_at": self.created_at,
        }


def info_from_meta(meta: dict[str, Any]) -> IndexInfo:
    return IndexInfo(
        name=str(meta.get("index", "")),
        model=str(meta.get("model", "")),
        model_version=str(meta.get("model_version", "")),
        dimension=int(meta.get("dimension", 0)),
        metric=meta.get("metric", "cosine"),
        stores=str(meta.get("stores", "")),
        backend=str(meta.get("backend", "")),
        created_at=str(meta.get("created_at", "")),
        family=str(meta.get("family", "")),
    )


def read_meta(directory: Path) -> dict[str, Any] | None:
    """The ``meta.json`` of the index in `directory`; None if absent or unreadable."""
    meta = directory / "meta.json"
    if not meta.is_file():
        return None
    try:
        data: dict[str, Any] = json.loads(meta.read_text())
        return data
    except (OSError, ValueError):
        return None


def read_all_meta(root: Path) -> dict[str, dict[str, Any]]:
    """Every index directory's ``meta.json`` under `root`, by index name."""
    out = {}
    for meta_file in sorted(root.glob("[!.]*/meta.json")):
        try:
            out[meta_file.parent.name] = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            continue
    return out
