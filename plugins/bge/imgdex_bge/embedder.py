"""`BgeEmbedder`: texts to L2-normalised vectors with a BERT-family encoder on ONNX Runtime."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from imgdex import Embedder, Modality
from imgdex_bge.config import BgeConfig
from imgdex_bge.errors import ModelLoadError
from imgdex_bge.export import discard_export, ensure_export
from imgdex_bge.files import read_config, read_json, resolve_model_dir
from imgdex_bge.runtime import open_session
from imgdex_bge.tokenizer import TextEncoder, load_text_encoder, model_max_length

__all__ = ["BgeEmbedder"]

log = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]


class BgeEmbedder(Embedder):
    """A sentence encoder (BGE by default) whose index stores embedded descriptions.

    Queries get the configured instruction prepended; stored descriptions never do.
    Nothing is read from disk until `load` (or the first `embed_texts`).
    """

    stores: Modality = "text"
    query_modalities: frozenset[Modality] = frozenset({"text"})
    # transformers and torch are needed only to export on a cache miss (or for a model
    # without tokenizer.json); those paths import them through `import_serially`.
    imports = ("onnxruntime",)

    def __init__(self, config: BgeConfig, cache_dir: Path) -> None:
        self.config = config
        self.index_name = f"bge_text_v{config.index_version}"
        self.model = config.model
        self.version = config.index_version
        self.cache_dir = Path(config.cache_dir).expanduser() if config.cache_dir else cache_dir
        self.query_instruction = config.instruction
        self.onnx_path: Path | None = None
        self.exported = False  # whether the last load made the ONNX export (vs. reused it)
        self.providers: list[str] = []
        self._dimension: int | None = None
        self._session: Any = None
        self._tokenizer: TextEncoder | None = None
        self._load_lock = threading.Lock()

    @property
    def dimension(self) -> int | None:
        return self._dimension

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def load(self) -> None:
        """Find the weights, export them to ONNX on a cache miss, open the session; once."""
        if self._session is not None:
            return
        with self._load_lock:
            if self._session is None:
                self._load()

    def _load(self) -> None:
        model = self.model
        model_dir = resolve_model_dir(model)
        settings = read_config(model_dir)
        dimension = settings.get("hidden_size") or settings.get("dim") or settings.get("d_model")
        if not isinstance(dimension, int) or dimension <= 0:
            raise ModelLoadError(f"model {model!r}: config.json gives no hidden_size")
        _check_pooling(model_dir, self.config.pooling, model)
        limit = model_max_length(model_dir, settings)
        max_length = min(self.config.max_length, limit) if limit else self.config.max_length
        tokenizer = load_text_encoder(model_dir, model, max_length)
        onnx_path, exported = ensure_export(model, model_dir, self.cache_dir)
        try:
            session = self._open_session(onnx_path)
        except ModelLoadError:
            raise
        except Exception as exc:  # onnxruntime cannot read the file
            if exported:
                raise ModelLoadError(
                    f"model {model!r}: onnxruntime cannot open the export {onnx_path} ({exc})"
                ) from exc
            # A cached export that was damaged on disk, or that this onnxruntime cannot
            # read: make it once more rather than fail until someone deletes it.
            log.warning("cached export %s unusable (%s); exporting again", onnx_path, exc)
            discard_export(onnx_path)
            onnx_path, exported = ensure_export(model, model_dir, self.cache_dir)
            session = self._open_session(onnx_path)
        self._tokenizer = tokenizer
        self._dimension = dimension
        self.onnx_path = onnx_path
        self.exported = exported
        self.providers = list(session.get_providers())
        self._session = session  # last: its presence means "loaded"
        log.info(
            "%s: %s (%d-d, %s pooling) on %s",
            self.index_name,
            model,
            dimension,
            self.config.pooling,
            self.providers[0],
        )

    def _open_session(self, onnx_path: Path) -> Any:
        return open_session(
            onnx_path, device=self.config.device, threads=self.config.threads, model=self.model
        )

    def embed_texts(self, texts: Sequence[str], *, query: bool) -> Vectors:
        """Embed texts into unit vectors; queries get the query instruction prepended."""
        self.load()
        assert self._dimension is not None and self._tokenizer is not None
        prefix = self.query_instruction if query else ""
        inputs = [prefix + text for text in texts]
        out = np.empty((len(inputs), self._dimension), dtype=np.float32)
        # Batches of similar lengths waste less work on padding; results go back in order.
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
        size = self.config.batch_size
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            ids, mask = self._tokenizer([inputs[i] for i in chunk])
            (pooled,) = self._session.run(
                [self.config.pooling], {"input_ids": ids, "attention_mask": mask}
            )
            out[chunk] = pooled
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.maximum(norms, 1e-12)
        return out


def _check_pooling(model_dir: Path, pooling: str, model: str) -> None:
    # sentence-transformers checkpoints say how they were trained to be pooled; another
    # pooling still runs but gives worse vectors, so say so at load.
    data = read_json(model_dir / "1_Pooling" / "config.json")
    trained = {
        "cls": data.get("pooling_mode_cls_token"),
        "mean": data.get("pooling_mode_mean_tokens"),
    }
    if trained.get(pooling) is False and any(trained.values()):
        other = next(name for name, on in trained.items() if on)
        log.warning("model %s was trained with %s pooling, configured: %s", model, other, pooling)
