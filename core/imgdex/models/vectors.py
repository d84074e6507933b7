"""The one check every vector passes before the core trusts it, whoever made it."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["BadVectors", "as_vectors"]


class BadVectors(ValueError):
    """A model (local or remote) answered something that is not `n` finite vectors."""


def as_vectors(out: object, n: int, dimension: int | None = None) -> npt.NDArray[np.float32]:
    """`out` as an ``(n, dimension)`` float32 array (any width when `dimension` is None);
    `BadVectors` says what is wrong otherwise ("vectors of shape ..., expected ...")."""
    try:
        vectors = np.asarray(out, dtype=np.float32)
    except (TypeError, ValueError):
        raise BadVectors("malformed embeddings") from None
    width = vectors.shape[1] if vectors.ndim == 2 and dimension is None else dimension
    if vectors.ndim != 2 or vectors.shape != (n, width):
        expected = f"({n}, {'any' if dimension is None else dimension})"
        raise BadVectors(f"vectors of shape {vectors.shape}, expected {expected}")
    if not np.isfinite(vectors).all():
        raise BadVectors("non-finite values")
    return vectors
