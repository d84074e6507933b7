"""Opening an ONNX Runtime session on the configured device (CUDA provider or CPU)."""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import logging
import sys
from pathlib import Path
from typing import Any

from imgdex_bge.errors import ModelLoadError

__all__ = ["open_session"]

log = logging.getLogger(__name__)

_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


def open_session(path: Path, *, device: str, threads: int | None, model: str) -> Any:
    """An `onnxruntime.InferenceSession` for `path` on `device` (auto, cpu, cuda, cuda:N).

    ``auto`` uses the CUDA provider when onnxruntime has one and a CUDA driver is present,
    and falls back to the CPU (with a warning in the log) when CUDA cannot start; an
    explicit ``cuda`` that cannot start is an error.
    """
    import onnxruntime as ort

    _warn_if_both_runtimes_installed()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
    # Idle worker threads spin by default; in a server running several models that steals
    # CPU from the others between batches for a latency gain of a few percent.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3

    providers: list[Any] = [_CPU]
    want_cuda = device.startswith("cuda") or (device == "auto" and _cuda_usable(ort))
    if want_cuda:
        if _CUDA not in ort.get_available_providers():
            raise ModelLoadError(
                f"model {model!r}: device {device!r} asked for, but the installed onnxruntime "
                f"has no CUDA provider (install onnxruntime-gpu instead of onnxruntime)"
            )
        _, _, index = device.partition(":")
        providers = [(_CUDA, {"device_id": int(index or 0)}), _CPU]
        with contextlib.suppress(Exception):  # CUDA/cuDNN libraries from pip (nvidia-*)
            ort.preload_dlls()
    session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    if want_cuda and _CUDA not in session.get_providers():
        message = (
            f"model {model!r}: the CUDA provider of onnxruntime {ort.__version__} could not "
            f"start (needs a matching CUDA and cuDNN; see the onnxruntime log above)"
        )
        if device != "auto":
            raise ModelLoadError(message)
        log.warning("%s; running on the CPU", message)
    return session


def _cuda_usable(ort: Any) -> bool:
    # onnxruntime-gpu lists the CUDA provider even on machines without a GPU and then logs
    # an error for every session; without the driver library there is no point trying.
    if _CUDA not in ort.get_available_providers():
        return False
    driver = {"win32": "nvcuda.dll", "darwin": ""}.get(sys.platform, "libcuda.so.1")
    if not driver:
        return False
    try:
        ctypes.CDLL(driver)
    except OSError:
        return False
    return True


def _warn_if_both_runtimes_installed() -> None:
    # onnxruntime and onnxruntime-gpu install the same package; with both, whichever was
    # installed last wins file by file and uninstalling either breaks the other.
    installed = []
    for name in ("onnxruntime", "onnxruntime-gpu"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            installed.append(f"{name} {importlib.metadata.version(name)}")
    if len(installed) > 1:
        log.warning(
            "both %s are installed and overwrite each other; uninstall both and reinstall one",
            " and ".join(installed),
        )
