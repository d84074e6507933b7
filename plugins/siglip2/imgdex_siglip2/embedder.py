"""The SigLIP-2 embedder: one vector space for images and the texts that search them.

torch and transformers are imported inside `load`, so registering the plugin (and
`imgdex plugins`) stays fast and works even where the weights cannot be had.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from imgdex import Embedder, resolve_device
from imgdex.hub import fetch_model
from imgdex_siglip2.config import Siglip2PluginConfig

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["Siglip2Embedder", "Siglip2LoadError"]

Vectors = npt.NDArray[np.float32]


class Siglip2LoadError(RuntimeError):
    """The model named in the config could not be loaded; the message says which and why."""


@dataclass(frozen=True)
class _Loaded:
    """Everything `load` produces, published in one assignment so no thread sees half."""

    model: Any
    image_processor: Any
    tokenizer: Any
    device: str
    dtype: Any
    dimension: int


class Siglip2Embedder(Embedder):
    """Stores images; answers image queries (vision tower) and text queries (text tower)."""

    stores = "image"
    query_modalities = frozenset({"image", "text"})
    metric = "cosine"
    # Imported by the core before `load`, serially (transformers 5.x is not thread-safe
    # to import from).
    imports = ("torch", "transformers:AutoModel", "transformers:AutoProcessor")

    def __init__(self, config: Siglip2PluginConfig) -> None:
        self.config = config
        self.model = config.model
        self.version = str(config.version)
        self.index_name = f"siglip2_image_v{self.version}"
        self._loaded: _Loaded | None = None
        self._load_lock = threading.Lock()
        # Fast (Rust) tokenizers are not safe to call from several threads at once with
        # padding/truncation settings ("Already borrowed"); the core embeds concurrently.
        self._tokenizer_lock = threading.Lock()

    @property
    def dimension(self) -> int | None:
        return self._loaded.dimension if self._loaded is not None else None

    def load(self) -> None:
        """Load weights and processor once; later calls (from any thread) return at once."""
        if self._loaded is not None:
            return
        with self._load_lock:
            if self._loaded is None:
                self._loaded = _load(self.config)

    def embed_images(self, images: Sequence[Image]) -> Vectors:
        loaded = self._ensure_loaded()
        return self._batched(list(images), loaded, self._encode_images)

    def embed_texts(self, texts: Sequence[str], *, query: bool) -> Vectors:
        # SigLIP has no query/document prompts: both sides of its text tower are the same.
        loaded = self._ensure_loaded()
        return self._batched(list(texts), loaded, self._encode_texts)

    # --- internals ----------------------------------------------------------------

    def _ensure_loaded(self) -> _Loaded:
        self.load()
        assert self._loaded is not None
        return self._loaded

    def _batched(
        self, items: list[Any], loaded: _Loaded, encode: Callable[[list[Any], _Loaded], Vectors]
    ) -> Vectors:
        if not items:
            return np.empty((0, loaded.dimension), dtype=np.float32)
        size = self.config.batch_size
        parts = [encode(items[i : i + size], loaded) for i in range(0, len(items), size)]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _encode_images(self, images: list[Image], loaded: _Loaded) -> Vectors:
        import torch

        # The image processor is called directly, not through the processor's __call__:
        # in transformers 5.x Siglip2Processor's class defaults (max_num_patches=256,
        # patch_size=16) override what the checkpoint's own processor config says.
        inputs = loaded.image_processor(images=images, return_tensors="pt")
        tensors = {
            name: value.to(loaded.device, loaded.dtype)
            if value.is_floating_point()
            else value.to(loaded.device)
            for name, value in inputs.items()
        }
        # NaFlex checkpoints get pixel_attention_mask and spatial_shapes too: every image
        # is padded to max_num_patches and masked, so a batch gives the same vectors as
        # one image at a time.
        with torch.inference_mode():
            output = loaded.model.get_image_features(**tensors)
        return _normalized(output)

    def _encode_texts(self, texts: list[str], loaded: _Loaded) -> Vectors:
        import torch

        with self._tokenizer_lock:
            encoded = loaded.tokenizer(
                texts,
                padding="max_length",
                max_length=self.config.max_text_length,
                truncation=True,
                return_tensors="pt",
            )
        # Only input_ids, no attention_mask: SigLIP (big_vision) was trained on
        # right-padded sequences without a mask and pools the last position, and the
        # Hugging Face conversion checked its logits the same way. Padding every text to
        # the same fixed length also makes batched and single results identical.
        input_ids = encoded["input_ids"].to(loaded.device)
        with torch.inference_mode():
            output = loaded.model.get_text_features(input_ids=input_ids)
        return _normalized(output)


def _normalized(output: Any) -> Vectors:
    """L2-normalised float32 rows from a features call (a tensor in 4.x, an output in 5.x)."""
    import torch

    features = output if isinstance(output, torch.Tensor) else output.pooler_output
    # Normalise in float32: half-precision norms lose digits the index then keeps.
    features = torch.nn.functional.normalize(features.float(), dim=-1)
    return features.cpu().numpy().astype(np.float32, copy=False)


def _load(config: Siglip2PluginConfig) -> _Loaded:
    source = _source(config.model)
    try:
        import torch
        from transformers import AutoModel, AutoProcessor

        device, dtype = resolve_device(config.device, config.dtype)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {config.device!r} requested but CUDA is not available")
        processor = AutoProcessor.from_pretrained(source)  # type: ignore[no-untyped-call]
        model = AutoModel.from_pretrained(source, dtype=dtype)
        model.to(device).eval()
    except Siglip2LoadError:
        raise
    except Exception as exc:
        raise Siglip2LoadError(_load_message(config.model, source, exc)) from exc

    def fail(reason: str) -> Siglip2LoadError:
        return Siglip2LoadError(f"siglip2: cannot use model {config.model!r}: {reason}")

    image_processor = getattr(processor, "image_processor", None)
    tokenizer = getattr(processor, "tokenizer", None)
    text_config = getattr(model.config, "text_config", None)
    vision_config = getattr(model.config, "vision_config", None)
    if (
        image_processor is None
        or tokenizer is None
        or text_config is None
        or vision_config is None
        or not hasattr(model, "get_image_features")
        or not hasattr(model, "get_text_features")
    ):
        kinds = f"{type(model).__name__} with {type(processor).__name__}"
        raise fail(f"{kinds} is not a SigLIP image-text dual encoder")

    # Vision features come out of the attention-pooling head at the tower's width; text
    # features out of a projection head. Both must match to share one vector space.
    dimension = int(vision_config.hidden_size)
    text_dimension = int(getattr(text_config, "projection_size", None) or text_config.hidden_size)
    if text_dimension != dimension:
        raise fail(f"text features are {text_dimension}-d but image features {dimension}-d")
    max_positions = int(text_config.max_position_embeddings)
    if config.max_text_length > max_positions:
        raise fail(
            f"max_text_length {config.max_text_length} exceeds the text tower's "
            f"{max_positions} positions"
        )
    # Pooling reads the last position, which the model learnt on right-padded input;
    # some 5.x tokenizer classes (Gemma, Siglip2Tokenizer) default to left padding.
    tokenizer.padding_side = "right"
    return _Loaded(model, image_processor, tokenizer, device, dtype, dimension)


def _source(name: str) -> str:
    """A local directory as a path, a repo id as is; a missing directory fails clearly."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    # A repo id is "name" or "owner/name"; anything else that looks like a path is one.
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or path.exists():
        problem = "is not a directory" if path.exists() else "does not exist"
        raise Siglip2LoadError(f"siglip2: cannot load model {name!r}: {path} {problem}")
    try:
        # One quick request instead of from_pretrained's minutes of retries offline.
        return fetch_model(name)
    except RuntimeError as exc:
        raise Siglip2LoadError(f"siglip2: cannot load model {name!r}: {exc}") from exc


def _load_message(name: str, source: str, exc: BaseException) -> str:
    # Hugging Face errors run over several lines and embed URLs; /health wants one line.
    reason = re.sub(r"\s+", " ", str(exc)).strip() or "no details"
    if len(reason) > 500:
        reason = reason[:497] + "..."
    message = f"siglip2: cannot load model {name!r}: {type(exc).__name__}: {reason}"
    if source == name and _offline():
        message += (
            " (HF_HUB_OFFLINE is set: the weights must already be in the Hugging Face "
            "cache, or `model` must name a local directory)"
        )
    return message


def _offline() -> bool:
    try:
        from huggingface_hub import is_offline_mode
    except ImportError:  # pragma: no cover - older huggingface_hub
        return False
    return bool(is_offline_mode())
