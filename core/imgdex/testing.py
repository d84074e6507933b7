"""Test helpers and pytest fixtures, for the core's tests and for plugin authors.

Installed as a pytest plugin (entry point ``pytest11``), so any test can use the fixtures
``imgdex_config``, ``imgdex_app_factory`` and ``imgdex_client``. Two small but real
embedders stand in for neural models when a test is about the server, not the model:

- `ColorEmbedder` (index ``toy_color_v1``) stores images as colour histograms plus a
  coarse layout, so an image searched with itself scores 1.0 and similar colours come
  close; its "text tower" maps colour words onto the same histogram space, so text can
  search the image index as it would through SigLIP.
- `WordEmbedder` (index ``toy_words_v1``) stores descriptions as signed feature-hashed
  bags of words, so descriptions sharing words with the query rank first.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
import numpy.typing as npt

from imgdex.config import Config, PluginConfig, PluginSettings, decode_config
from imgdex.hookspecs import hookimpl
from imgdex.providers import Embedder, Modality

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.testing import TestClient
    from PIL.Image import Image

__all__ = [
    "COLORS",
    "ColorEmbedder",
    "ConfiguredToyPlugin",
    "ToyConfig",
    "ToyPlugin",
    "WordEmbedder",
    "image_bytes",
    "toy_plugins",
]

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 40, 220),
    "yellow": (235, 220, 40),
    "black": (10, 10, 10),
    "white": (245, 245, 245),
    "orange": (240, 140, 20),
    "purple": (140, 40, 180),
}

_BINS = 4


def _hist_index(rgb: tuple[int, int, int]) -> int:
    r, g, b = (min(c * _BINS // 256, _BINS - 1) for c in rgb)
    return (r * _BINS + g) * _BINS + b


class ColorEmbedder(Embedder):
    """Colour histogram (64 bins) + 4x4 grey layout: 80-d, image and colour-word queries."""

    stores: Modality = "image"
    query_modalities = frozenset({"image", "text"})

    def __init__(self, index_name: str = "toy_color_v1", version: str = "1") -> None:
        self.index_name = index_name
        self.model = "imgdex-toy-color"
        self.version = version
        self.loads = 0

    @property
    def dimension(self) -> int:
        return _BINS**3 + 16

    def load(self) -> None:
        self.loads += 1

    def embed_images(self, images: Sequence[Image]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(images), self.dimension), np.float32)
        for row, image in enumerate(images):
            small = np.asarray(image.convert("RGB").resize((32, 32)), dtype=np.int64)
            bins = (np.minimum(small * _BINS // 256, _BINS - 1) * [_BINS**2, _BINS, 1]).sum(-1)
            out[row, : _BINS**3] = np.bincount(bins.ravel(), minlength=_BINS**3) / bins.size
            grey = np.asarray(image.convert("L").resize((4, 4)), dtype=np.float32) / 255.0
            out[row, _BINS**3 :] = 0.25 * grey.ravel()
        return _normalise(out)

    def embed_texts(self, texts: Sequence[str], *, query: bool) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), self.dimension), np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                if word in COLORS:
                    out[row, _hist_index(COLORS[word])] += 1.0
            out[row, _BINS**3 :] = 0.05
        return _normalise(out)


class WordEmbedder(Embedder):
    """Signed feature hashing of lower-cased words into 256 dimensions."""

    stores: Modality = "text"
    query_modalities = frozenset({"text"})
    DIM = 256

    def __init__(self, index_name: str = "toy_words_v1", version: str = "1") -> None:
        self.index_name = index_name
        self.model = "imgdex-toy-words"
        self.version = version
        self.loads = 0

    @property
    def dimension(self) -> int:
        return self.DIM

    def load(self) -> None:
        self.loads += 1

    def embed_texts(self, texts: Sequence[str], *, query: bool) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), self.DIM), np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                h = int.from_bytes(digest, "little")
                out[row, h % self.DIM] += 1.0 if (h >> 32) & 1 else -1.0
        return _normalise(out)


def _normalise(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


class ToyPlugin:
    """A plugin object registering given embedders through the real hook."""

    def __init__(self, *embedders: Embedder) -> None:
        self.embedders = embedders

    @hookimpl
    def register_embedders(self, register: Callable[[Embedder], None]) -> None:
        for embedder in self.embedders:
            register(embedder)


class ToyConfig(PluginConfig, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The ``plugins.toy_color`` / ``plugins.toy_words`` section of a test config."""

    version: str = "1"
    # Seconds added per embedded item, to watch background work while it happens.
    delay: float = 0.0


class ConfiguredToyPlugin:
    """A toy plugin configured like the real ones: ``version`` names its index
    (``toy_color_v<version>``), ``model`` names its model, ``delay`` slows it down."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    @hookimpl
    def register_embedders(
        self, register: Callable[[Embedder], None], config: PluginSettings
    ) -> None:
        cfg = config.decode(ToyConfig)
        embedder: ColorEmbedder | WordEmbedder
        if self.kind == "color":
            embedder = ColorEmbedder(f"toy_color_v{cfg.version}", version=cfg.version)
        else:
            embedder = WordEmbedder(f"toy_words_v{cfg.version}", version=cfg.version)
        if cfg.model:
            embedder.model = cfg.model
        if cfg.delay:
            register(_Slowed(embedder, cfg.delay))
        else:
            register(embedder)


class _Slowed(Embedder):
    """Another embedder, `delay` seconds per item slower."""

    def __init__(self, inner: Embedder, delay: float) -> None:
        self.inner, self.delay = inner, delay
        self.index_name, self.model, self.version = inner.index_name, inner.model, inner.version
        self.stores, self.query_modalities = inner.stores, inner.query_modalities

    @property
    def dimension(self) -> int | None:
        return self.inner.dimension

    def embed_images(self, images: Sequence[Image]) -> npt.NDArray[np.float32]:
        time.sleep(self.delay * len(images))
        return self.inner.embed_images(images)

    def embed_texts(self, texts: Sequence[str], *, query: bool) -> npt.NDArray[np.float32]:
        if not query:
            time.sleep(self.delay * len(texts))
        return self.inner.embed_texts(texts, query=query)


def toy_plugins() -> dict[str, object]:
    """Fresh ``{"toy_color": ..., "toy_words": ...}`` plugins for `create_app`, each
    configured by its ``plugins.<name>`` section (`ToyConfig`)."""
    return {"toy_color": ConfiguredToyPlugin("color"), "toy_words": ConfiguredToyPlugin("words")}


def image_bytes(
    color: str | tuple[int, int, int] = "red",
    size: tuple[int, int] = (64, 48),
    fmt: str = "PNG",
    *,
    pattern: int = 0,
    exif_orientation: int | None = None,
) -> bytes:
    """A small real image file; `pattern` draws a distinct stripe so bytes differ."""
    from PIL import Image

    rgb = COLORS[color] if isinstance(color, str) else color
    im = Image.new("RGB", size, rgb)
    if pattern:
        stripe = Image.new("RGB", (max(1, size[0] // 8), size[1]), (pattern * 37 % 256, 128, 64))
        im.paste(stripe, ((pattern * 7) % max(1, size[0] - stripe.width), 0))
    buf = io.BytesIO()
    kwargs: dict[str, Any] = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def make_config(data_dir: Path, **overrides: Any) -> Config:
    """A config for tests: data in `data_dir`, fast worker intervals, admin token set."""
    raw: dict[str, Any] = {
        "data_dir": str(data_dir),
        "server": {"admin_token": "test-admin-token"},
        "worker": {"interval": 0.2, "retry_load_after": 0.5, "retry_delay": 0.1},
        "index": {"save_interval": 1.0},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return decode_config(msgspec.yaml.encode(raw), "test config")


# --- pytest fixtures --------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is a dev dependency
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def imgdex_config(tmp_path: Path) -> Config:
        """A `Config` with its data directory in a fresh temporary folder."""
        return make_config(tmp_path / "data")

    @pytest.fixture
    def imgdex_app_factory(
        imgdex_config: Config,
    ) -> Callable[..., Litestar]:
        """``factory(config=None, plugins=None, **kwargs) -> Litestar`` with toy plugins."""
        from imgdex.api import create_app

        def factory(
            config: Config | None = None, plugins: dict[str, object] | None = None, **kwargs: Any
        ) -> Litestar:
            kwargs.setdefault("entry_points", False)
            kwargs.setdefault("preload", False)
            return create_app(
                config or imgdex_config,
                plugins=toy_plugins() if plugins is None else plugins,
                **kwargs,
            )

        return factory

    @pytest.fixture
    def imgdex_client(
        imgdex_app_factory: Callable[..., Litestar],
    ) -> Iterator[TestClient[Litestar]]:
        """A Litestar test client on a fresh library with the toy embedders."""
        from litestar.testing import TestClient

        with TestClient(app=imgdex_app_factory()) as client:
            yield client
