"""The ``local`` backend: captions from an in-process transformers vision-language model.

Any checkpoint that `AutoModelForImageTextToText` and `AutoProcessor` load and whose
processor has a chat template works (SmolVLM/Idefics3, Qwen2-VL, LLaVA ...). Decoding is
greedy, so the same image always gets the same caption. torch and transformers are
imported in `load`, never at plugin import.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgdex.devices import resolve_device
from imgdex.hub import fetch_model
from imgdex.providers import Caption, Describer
from imgdex_vlm_caption.config import CaptionSettings
from imgdex_vlm_caption.errors import CaptionError, ModelLoadError
from imgdex_vlm_caption.tagging import split_caption, tag_prompt

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["LocalCaptioner"]


class LocalCaptioner(Describer):
    """A describer running a vision-language model with `generate`, in batches."""

    # Imported by the core before `load`, serially (transformers 5.x is not thread-safe
    # to import from).
    imports = (
        "torch",
        "transformers:AutoModelForImageTextToText",
        "transformers:AutoProcessor",
    )

    def __init__(self, settings: CaptionSettings) -> None:
        self.settings = settings
        self.method = settings.method
        self.model = settings.model
        self.device: str | None = None
        self._processor: Any = None
        self._model: Any = None
        self._dtype: Any = None
        self._chat_prompt: str | None = None
        self._load_lock = threading.Lock()
        # One generate at a time per model: concurrent calls would only compete for the
        # same cores or GPU memory.
        self._infer_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalCaptioner(method={self.method!r}, model={self.model!r})"

    def load(self) -> None:
        """Load processor and weights once; later calls return at once."""
        with self._load_lock:
            if self._model is not None:
                return
            try:
                from transformers import AutoModelForImageTextToText, AutoProcessor
            except ImportError as exc:
                raise ModelLoadError(
                    f"{self.method}: the local backend needs torch and transformers: {exc}"
                ) from exc
            try:
                device, dtype = resolve_device(self.settings.device, self.settings.dtype)
            except (RuntimeError, ValueError) as exc:
                raise ModelLoadError(
                    f"{self.method}: device {self.settings.device!r}: {exc}"
                ) from exc
            source = _model_source(self.model)
            if source is None:
                raise ModelLoadError(
                    f"{self.method}: cannot load vision-language model {self.model!r}: "
                    "no such directory"
                )
            try:
                # transformers' own annotations are incomplete: treat both as Any.
                auto_processor: Any = AutoProcessor
                auto_model: Any = AutoModelForImageTextToText
                if not Path(source).is_dir():
                    # One quick request instead of from_pretrained's retries offline.
                    source = fetch_model(source)
                processor = auto_processor.from_pretrained(source)
                model = auto_model.from_pretrained(source, dtype=dtype).to(device).eval()
            except Exception as exc:  # OSError (missing/offline), ValueError (architecture)...
                raise ModelLoadError(
                    f"{self.method}: cannot load vision-language model {self.model!r} "
                    f"on {device}: {type(exc).__name__}: {exc}"
                ) from exc
            tokenizer = getattr(processor, "tokenizer", None)
            if tokenizer is not None:
                # Decoder-only generation in a batch needs the padding on the left.
                tokenizer.padding_side = "left"
            try:
                chat_prompt = processor.apply_chat_template(
                    self._messages(), add_generation_prompt=True, tokenize=False
                )
            except Exception as exc:
                raise ModelLoadError(
                    f"{self.method}: the processor of {self.model!r} cannot build a chat "
                    f"prompt (no chat template?): {type(exc).__name__}: {exc}"
                ) from exc
            if isinstance(chat_prompt, list):  # some processors always answer a batch
                chat_prompt = chat_prompt[0]
            self.device, self._dtype, self._processor = device, dtype, processor
            self._chat_prompt = chat_prompt
            self._model = model

    def _messages(self) -> list[dict[str, Any]]:
        content = [{"type": "image"}, {"type": "text", "text": self.settings.prompt}]
        if tags := tag_prompt(self.settings.language, self.settings.tags):
            content.append({"type": "text", "text": tags})
        return [{"role": "user", "content": content}]

    def describe_images(self, images: Sequence[Image]) -> list[str | Caption]:
        """One greedy-decoded caption per image, in order (with its tags when the model
        wrote a tag line); an empty one raises `CaptionError`."""
        if not images:
            return []
        self.load()
        size = self.settings.batch_size
        captions: list[str] = []
        for start in range(0, len(images), size):
            captions.extend(self._generate(images[start : start + size]))
        for i, caption in enumerate(captions):
            if not caption:
                raise CaptionError(
                    f"{self.method}: model {self.model!r} wrote an empty caption for image {i}"
                )
        return [split_caption(caption, self.settings.tags) for caption in captions]

    def _generate(self, images: Sequence[Image]) -> list[str]:
        import torch

        processor, model = self._processor, self._model
        rgb = [image if image.mode == "RGB" else image.convert("RGB") for image in images]
        with self._infer_lock, torch.inference_mode():
            inputs = processor(
                text=[self._chat_prompt] * len(rgb),
                images=[[image] for image in rgb],
                return_tensors="pt",
                padding=True,
            )
            inputs = inputs.to(self.device)
            for key, value in inputs.items():
                if torch.is_floating_point(value):
                    inputs[key] = value.to(self._dtype)
            tokenizer = getattr(processor, "tokenizer", None)
            pad_id = getattr(tokenizer, "pad_token_id", None)
            output = model.generate(
                **inputs,
                max_new_tokens=self.settings.max_new_tokens,
                do_sample=False,
                num_beams=1,
                **({"pad_token_id": pad_id} if pad_id is not None else {}),
            )
            # Keep only what the model wrote after the prompt.
            new_tokens = output[:, inputs["input_ids"].shape[1] :]
            texts = processor.batch_decode(new_tokens, skip_special_tokens=True)
        return [str(text).strip() for text in texts]


def _model_source(model: str) -> str | None:
    """A local directory (``~`` expanded) or a hub repo id; None for a missing directory."""
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path)
    # Repo ids look like "org/name"; anything path-like that is not there is a mistake.
    if model.startswith(("/", "./", "../", "~", "\\")) or path.drive:
        return None
    return model
