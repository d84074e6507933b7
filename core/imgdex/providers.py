"""The small abstract bases that plugins implement and hand to the core.

A plugin builds `Embedder`, `Describer` and `IndexBackend` objects and registers them
through the hooks in `imgdex.hookspecs`. The core owns everything around them: lazy
loading behind a lock, worker threads, fan-out, enable/disable state and errors.
Methods here are blocking and are always called from worker threads, never on the
event loop.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import msgspec
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from PIL.Image import Image

    from imgdex.config import IndexConfig

__all__ = [
    "Caption",
    "Describer",
    "Embedder",
    "IndexBackend",
    "IndexLocation",
    "Metric",
    "Modality",
    "VectorIndex",
]

Modality = Literal["image", "text"]
Metric = Literal["cosine", "ip", "l2"]
Vectors = npt.NDArray[np.float32]


class Embedder(abc.ABC):
    """Turns images and/or texts into vectors of one vector space, kept in one index.

    `stores` is what the core writes into the index: ``"image"`` (every uploaded image)
    or ``"text"`` (every description). `query_modalities` is what the embedder can turn
    into a query vector of the same space: a SigLIP-2 embedder stores images and answers
    both text and image queries through its two towers.
    """

    index_name: str
    model: str
    version: str
    stores: Modality
    query_modalities: frozenset[Modality]
    metric: Metric = "cosine"
    # Modules (``"torch"``) or names in them (``"transformers:AutoModel"``) that `load`
    # needs. The core imports them once, serially, under a process-wide lock, before
    # any `load` runs: some libraries (transformers 5.x) fail at random when several
    # threads import from them at once. Optional; the default imports nothing.
    imports: tuple[str, ...] = ()

    @property
    def dimension(self) -> int | None:
        """Vector size; may be None until `load` has run (read from the model)."""
        return None

    def load(self) -> None:  # noqa: B027 - loading is optional
        """Load weights. Called once, lazily, in a worker thread, behind a lock."""

    def embed_images(self, images: Sequence[Image]) -> Vectors:
        """Embed decoded RGB images into an ``(n, dimension)`` float32 array."""
        raise NotImplementedError(f"{type(self).__name__} cannot embed images")

    def embed_texts(self, texts: Sequence[str], *, query: bool) -> Vectors:
        """Embed texts; `query` is True for search queries, False for stored documents."""
        raise NotImplementedError(f"{type(self).__name__} cannot embed texts")

    @property
    def family(self) -> str:
        """What stays the same across model versions: the index name without its
        ``_v<version>`` suffix (``siglip2_image``). A new index of the same family and
        plugin replaces the old one once it is complete (a model upgrade)."""
        suffix = f"_v{self.version}"
        name = str(self.index_name)
        return name[: -len(suffix)] if name.endswith(suffix) and len(name) > len(suffix) else name

    def describe(self) -> str:
        return f"{self.index_name} ({self.model} v{self.version})"


class Describer(abc.ABC):
    """Writes a text description of an image under one method name (``vlm_caption``...)."""

    method: str
    model: str
    # What `load` needs imported first, serially (see `Embedder.imports`).
    imports: tuple[str, ...] = ()
    # True when an empty text is an answer (OCR of an image without text), not a fault:
    # the job then finishes without writing a description.
    empty_ok: bool = False

    def load(self) -> None:  # noqa: B027 - loading is optional
        """Load weights or open clients. Called once, lazily, in a worker thread."""

    @abc.abstractmethod
    def describe_images(self, images: Sequence[Image]) -> Sequence[str | Caption]:
        """Describe each decoded RGB image, in order: a string, or a `Caption` with tags
        (a ``{"text", "tags"}`` mapping is taken too). An empty text means the image has
        nothing to say for this method (OCR on a photo without text), not a failure."""


@dataclass(frozen=True, slots=True)
class Caption:
    """A describer's answer for one image: its text and, optionally, a few tags (stored
    with the describer's method as their source)."""

    text: str
    tags: tuple[str, ...] = ()


def as_caption(value: object) -> Caption:
    """A describer's answer for one image as a `Caption` (from a string, a `Caption` or a
    ``{"text", "tags"}`` mapping); raises TypeError for anything else."""
    if isinstance(value, Caption):
        return Caption(value.text.strip(), tuple(str(t) for t in value.tags))
    if isinstance(value, str):
        return Caption(value.strip())
    if isinstance(value, Mapping) and isinstance(value.get("text", ""), str):
        tags = value.get("tags") or ()
        if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
            raise TypeError("a caption's tags must be a list of strings")
        return Caption(str(value.get("text", "")).strip(), tuple(tags))
    raise TypeError(f"a describer answered {type(value).__name__}, not text or a Caption")


class VectorIndex(abc.ABC):
    """One opened vector index. Labels are the catalog's ``vector_entries.id``.

    Implementations must be safe to call from several threads at once; the core never
    relies on a global lock around them.
    """

    dimension: int
    metric: Metric

    @abc.abstractmethod
    def add(self, ids: npt.NDArray[np.int64], vectors: Vectors) -> None:
        """Insert (or replace) vectors under the given labels."""

    @abc.abstractmethod
    def hide(self, ids: Sequence[int]) -> None:
        """Exclude labels from results (deleted or soft-deleted); unknown labels are ignored."""

    @abc.abstractmethod
    def unhide(self, ids: Sequence[int]) -> None:
        """Make hidden labels visible again (a soft-deleted image restored)."""

    @abc.abstractmethod
    def search(self, vector: Vectors, k: int) -> tuple[npt.NDArray[np.int64], Vectors]:
        """The up-to-`k` nearest visible labels and their similarity (higher is closer)."""

    def search_among(
        self, vector: Vectors, k: int, among: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], Vectors]:
        """The up-to-`k` nearest visible labels among `among` (a filtered search).

        This default widens a plain `search` until `k` of them are found or the index is
        exhausted; backends override it with a filtered or an exact search."""
        total = len(self)
        fetch = min(total, max(4 * k, 64))
        while True:
            labels, scores = self.search(vector, fetch)
            keep = np.isin(labels, among)
            if keep.sum() >= k or fetch >= total:
                return labels[keep][:k], scores[keep][:k]
            fetch = min(total, fetch * 4)

    def gather(self, among: npt.NDArray[np.int64]) -> Vectors | None:
        """The stored vectors of the labels `among` (ascending) as one matrix, a row per
        label, for `search_gathered`: the labels a filter allows, kept while the filter
        is used again. None when the backend has no use for them (the default) or does
        not hold every one of them."""
        return None

    def search_gathered(
        self, vector: Vectors, k: int, among: npt.NDArray[np.int64], vectors: Vectors
    ) -> tuple[npt.NDArray[np.int64], Vectors]:
        """`search_among` over labels whose vectors `gather` returned earlier, without
        gathering them again. The default ignores `vectors`."""
        return self.search_among(vector, k, among)

    @abc.abstractmethod
    def labels(self) -> set[int]:
        """Every label stored, hidden or not."""

    @abc.abstractmethod
    def hidden(self) -> set[int]:
        """The labels currently hidden."""

    @abc.abstractmethod
    def save(self) -> None:
        """Persist atomically: after a crash the previous or the new state is on disk."""

    def __len__(self) -> int:
        return len(self.labels()) - len(self.hidden())

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release resources (called after a final `save`)."""


class IndexLocation(msgspec.Struct, kw_only=True, frozen=True):
    """Where one index lives, as the core hands it to a backend.

    `path` is a directory of the data dir that belongs to this index (files-based
    backends keep everything there; others may keep a cache there, or ignore it); `url`
    names a database or service that holds the index, when the data dir's configuration
    gives one. `meta` is what the core recorded about the index (model, version,
    dimension, metric, backend ...; empty for a new index)."""

    name: str
    path: Path | None = None
    url: str | None = None
    meta: dict[str, Any] = msgspec.field(default_factory=dict)

    @classmethod
    def at(cls, path: Path, **meta: Any) -> IndexLocation:
        """A local directory as a location (named after it)."""
        return cls(name=path.name, path=path, meta=meta)

    def directory(self, backend: str) -> Path:
        """`path`, created if missing; `ValueError` for a location without one."""
        if self.path is None:
            raise ValueError(f"the {backend} backend keeps index {self.name} in files: no path")
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path


class IndexBackend(abc.ABC):
    """A kind of vector index (hnswlib, exact NumPy, one in a database ...)."""

    name: ClassVar[str]

    def configure(self, config: IndexConfig) -> None:  # noqa: B027 - options are optional
        """Receive the ``index:`` config section (M, ef ...) before any `open`."""

    @abc.abstractmethod
    def open(self, location: IndexLocation, *, dimension: int, metric: Metric) -> VectorIndex:
        """Open the index at `location`, creating it when it does not exist yet."""
