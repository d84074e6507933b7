"""Benchmark embedders and the plugin objects the benchmark server registers.

- `TableEmbedder` answers queries from a table of precomputed vectors, so search can be
  measured on 100k realistic vectors without running a model: the text query ``"q17"``
  is row 17 of the table, and so is an image whose first pixel encodes 17
  (`key_image`). Its index is filled directly through the core (`VectorWriter.store`).
- `NullEmbedder` turns any image into a vector at almost no cost, so ingest can be
  measured with the models out of the way.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from imgdex import Embedder
from imgdex.testing import ToyPlugin

if TYPE_CHECKING:
    from PIL.Image import Image

Vectors = npt.NDArray[np.float32]


class TableEmbedder(Embedder):
    """Stores images (written by the benchmark), answers text and image queries by key."""

    stores = "image"
    query_modalities = frozenset({"image", "text"})

    def __init__(self, index_name: str, dim: int, table: str | Path | None = None) -> None:
        self.index_name = index_name
        self.model = f"bench-table-{dim}"
        self.version = "1"
        self._dim = dim
        self._path = Path(table) if table else None
        self._table: npt.NDArray[np.float32] | None = None

    @property
    def dimension(self) -> int:
        return self._dim

    def load(self) -> None:
        if self._path is not None:
            # In memory (300 rows): a memmap's Python-level __getitem__ costs more than
            # the lookup and would count as the server's time.
            self._table = np.ascontiguousarray(np.load(self._path), dtype=np.float32)

    def _rows(self, keys: Sequence[int]) -> Vectors:
        if self._table is None:
            raise RuntimeError(f"{self.index_name}: no query table")
        return np.asarray(self._table[list(keys)], dtype=np.float32)

    def embed_texts(self, texts: Sequence[str], *, query: bool) -> Vectors:
        return self._rows([int(t.strip().lstrip("q")) for t in texts])

    def embed_images(self, images: Sequence[Image]) -> Vectors:
        return self._rows([image_key(im) for im in images])


class NullEmbedder(Embedder):
    """A cheap deterministic image vector (from a 8x8 corner of the decoded image)."""

    stores = "image"
    query_modalities = frozenset({"image"})

    def __init__(self, index_name: str = "bench_null_v1", dim: int = 64) -> None:
        self.index_name = index_name
        self.model = "bench-null"
        self.version = "1"
        self._dim = dim

    @property
    def dimension(self) -> int:
        return self._dim

    def embed_images(self, images: Sequence[Image]) -> Vectors:
        out = np.empty((len(images), self._dim), dtype=np.float32)
        for row, image in enumerate(images):
            corner = image.crop((0, 0, 8, 8)).tobytes() + repr(image.size).encode()
            seed = int.from_bytes(hashlib.blake2b(corner, digest_size=8).digest(), "little")
            v = np.random.default_rng(seed).standard_normal(self._dim).astype(np.float32)
            out[row] = v / np.linalg.norm(v)
        return out


def key_image(key: int, size: int = 16) -> bytes:
    """A small PNG whose pixels encode `key` (what `TableEmbedder` reads back)."""
    from PIL import Image

    rgb = ((key >> 16) & 255, (key >> 8) & 255, key & 255)
    buf = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(buf, "PNG")
    return buf.getvalue()


def image_key(image: Image) -> int:
    r, g, b = image.convert("RGB").getpixel((0, 0))  # type: ignore[misc]
    return (int(r) << 16) | (int(g) << 8) | int(b)


def table_index_name(dim: int) -> str:
    return f"bench_d{dim}_v1"


def build_plugins(specs: Sequence[dict[str, Any]]) -> dict[str, object]:
    """Plugin objects for `create_app(plugins=...)` from JSON-able specs.

    ``{"kind": "table", "dim": 384, "table": "q384.npy"}``, ``{"kind": "null"}``,
    ``{"kind": "toy"}`` (the core's test embedders), or ``{"kind": "module", "name":
    "siglip2", "module": "imgdex_siglip2"}`` for a real plugin configured under
    ``plugins.<name>`` in the config.
    """
    import importlib

    plugins: dict[str, object] = {}
    for spec in specs:
        kind = spec["kind"]
        if kind == "table":
            dim = int(spec["dim"])
            name = spec.get("index", table_index_name(dim))
            plugins[name] = ToyPlugin(TableEmbedder(name, dim, spec.get("table")))
        elif kind == "null":
            plugins["bench_null"] = ToyPlugin(NullEmbedder(dim=int(spec.get("dim", 64))))
        elif kind == "toy":
            from imgdex.testing import toy_plugins

            plugins.update(toy_plugins())
        elif kind == "module":
            plugins[spec["name"]] = importlib.import_module(spec["module"])
        else:
            raise ValueError(f"unknown plugin kind {kind!r}")
    return plugins
