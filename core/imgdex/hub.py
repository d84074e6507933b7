"""Fetching model files from the Hugging Face hub, failing fast when it cannot.

`transformers`' ``from_pretrained`` retries every missing file with exponential back-off
when the hub is unreachable, so an offline server spends minutes "loading" each model.
`fetch_model` asks once with ``snapshot_download`` (files already in the cache are used
as they are), then plugins load from the local folder it returns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import msgspec

if TYPE_CHECKING:
    from imgdex.plugins import PluginHost

__all__ = [
    "DOWNLOAD_HINT",
    "MODEL_FILES",
    "ModelFiles",
    "describe_models",
    "fetch_model",
    "find_problem",
    "locate",
    "model_source",
]

# Configs, tokenizers, processors and safetensors weights; not other frameworks' weights.
MODEL_FILES = (
    "*.json",
    "*.safetensors",
    "*.txt",
    "*.model",
    "*.tiktoken",
    "*.jinja",
    "tokenizer*",
    "vocab*",
    "merges*",
)
_FALLBACK_WEIGHTS = ("pytorch_model*.bin",)

# What to do about a model that is neither local nor cached; every plugin's load error
# ends with it. (`huggingface-cli download` is gone from huggingface_hub 1.x: `hf download`.)
DOWNLOAD_HINT = (
    "run `imgdex models download` (or `hf download REPO`) while online, "
    "or set `model` to a local directory"
)


def fetch_model(repo_id: str, allow_patterns: Sequence[str] = MODEL_FILES) -> str:
    """The local folder holding `repo_id`'s files, downloading what the cache lacks.

    Raises `RuntimeError` naming the repo and the reason (offline, unknown repo, gated).
    """
    try:
        folder = download(repo_id, allow_patterns)
    except Exception as exc:
        raise RuntimeError(
            f"model {repo_id!r} is neither in the Hugging Face cache nor downloadable "
            f"({type(exc).__name__}: {one_line(exc)}); {DOWNLOAD_HINT}"
        ) from exc
    return str(folder)


def download(repo_id: str, allow_patterns: Sequence[str] = MODEL_FILES) -> Path:
    """`repo_id`'s model files in the hub cache, fetching what it lacks (with the hub's
    progress bars unless ``HF_HUB_DISABLE_PROGRESS_BARS`` is set). Raises the hub's errors."""
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(repo_id, allow_patterns=list(allow_patterns)))
    if not _has_weights(folder):
        # Older repos ship only PyTorch pickles.
        patterns = [*allow_patterns, *_FALLBACK_WEIGHTS]
        folder = Path(snapshot_download(repo_id, allow_patterns=patterns))
    return folder


def one_line(exc: BaseException, limit: int = 400) -> str:
    """An exception's message on one line (hub errors run over several, with URLs)."""
    return " ".join(str(exc).split())[:limit] or type(exc).__name__


def find_problem(model: str) -> str | None:
    """Why `model` cannot be loaded right now without the network, or None when its
    files are on disk (a local directory, or a repo in the Hugging Face cache).

    Cheap: no weights are read; for `imgdex plugins`, which must not load models.
    """
    source = model_source(model)
    if source == "bundled" or Path(model).expanduser().is_dir():
        return None
    if source == "directory":
        return f"model directory {model} does not exist"
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(model, "config.json")
    except Exception:  # not a valid repo id (spaces, too long...): cannot be on the hub
        return f"model {model!r} is neither a local directory nor a Hugging Face repo id"
    if isinstance(found, str):
        return None
    return (
        f"model {model!r} is not in the Hugging Face cache: it is downloaded on first use "
        f"if the hub is reachable, otherwise {DOWNLOAD_HINT}"
    )


Location = Literal["local", "hub_cache", "bundled", "missing"]
Source = Literal["directory", "hub", "bundled"]
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")


class ModelFiles(msgspec.Struct, kw_only=True, frozen=True):
    """Where one model's weights are on this machine, as `imgdex models` reports it."""

    plugin: str
    # What the model serves: an index name, or "describer <method>".
    role: str
    model: str
    # What the config names: a local directory, a hub repo id (downloadable), or files
    # the plugin ships inside its package.
    source: Source
    location: Location
    # The local directory or the hub cache snapshot; None when missing.
    path: str | None = None
    size_bytes: int | None = None
    problem: str | None = None


def locate(model: str) -> tuple[Location, Path | None, str | None]:
    """``(location, folder, problem)`` for `model` (a local directory or a hub repo id).

    Reads only the file system: never the network, never the weights.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return "local", path.resolve(), None
    if model_source(model) == "bundled":
        return "bundled", None, None
    problem = find_problem(model)
    if problem is not None:
        return "missing", None, problem
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(model, "config.json")
    assert isinstance(config, str)  # find_problem said it is cached
    folder = Path(config).parent
    if not _has_weights(folder):
        # A download cut short, or one that fetched only the configs.
        return "missing", None, f"model {model!r} is only partly in the Hugging Face cache"
    return "hub_cache", folder, None


def folder_size(folder: Path) -> int:
    """Bytes of every file under `folder`, following the hub cache's symlinks once each."""
    seen: set[Path] = set()
    total = 0
    for file in folder.rglob("*"):
        real = file.resolve()
        if real in seen or not real.is_file():
            continue
        seen.add(real)
        total += real.stat().st_size
    return total


def _has_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))


def describe_models(host: PluginHost) -> list[ModelFiles]:
    """Every model the enabled plugins of `host` load in process, and where its files are."""
    found: list[ModelFiles] = []
    providers: list[tuple[str, str, str]] = []
    for record, embedder in host.embedders():
        if record.configured_enabled and _in_process(embedder):
            providers.append((record.name, embedder.index_name, embedder.model))
    for record, describer in host.describers():
        if record.configured_enabled and _in_process(describer):
            providers.append((record.name, f"describer {describer.method}", describer.model))
    for plugin, role, model in providers:
        if not model:
            continue
        location, folder, problem = locate(model)
        found.append(
            ModelFiles(
                plugin=plugin,
                role=role,
                model=model,
                source=model_source(model),
                location=location,
                path=str(folder) if folder else None,
                size_bytes=folder_size(folder) if folder else None,
                problem=problem,
            )
        )
    return found


def _in_process(provider: object) -> bool:
    # Providers that only call a remote endpoint (the api captioner) have no weights here.
    return bool(getattr(provider, "loads_weights", True))


def model_source(model: str) -> Source:
    """What a provider's `model` names: a local directory, a hub repo ("name" or
    "owner/name"), or neither (files the plugin ships itself, e.g. "rapidocr bundled")."""
    path = Path(model).expanduser()
    if path.is_dir() or model.startswith(("/", "./", "../", "~")) or model.count("/") > 1:
        return "directory"
    return "hub" if _REPO_ID.fullmatch(model) else "bundled"
