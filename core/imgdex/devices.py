"""Choosing a torch device and dtype for in-process models (torch is imported lazily).

``auto`` picks CUDA, then Apple MPS, then CPU; half precision (float16) on a GPU, float32
on the CPU. Plugins call `resolve_device` from their `load`, so the core never imports
torch itself.
"""

from __future__ import annotations

from typing import Any

__all__ = ["resolve_device"]


def resolve_device(preference: str = "auto", dtype: str = "auto") -> tuple[str, Any]:
    """``(device, torch dtype)`` for a ``device:`` / ``dtype:`` config pair."""
    import torch

    device = preference
    if preference == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    if dtype == "auto":
        chosen = torch.float32 if device == "cpu" else torch.float16
    else:
        try:
            chosen = {
                "float32": torch.float32,
                "float16": torch.float16,
                "bfloat16": torch.bfloat16,
            }[dtype]
        except KeyError:
            raise ValueError(
                f"dtype must be auto, float32, float16 or bfloat16, not {dtype!r}"
            ) from None
    return device, chosen
