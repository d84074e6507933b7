"""``imgdex models [download]``: where each enabled model's weights are, and fetching
the missing ones into the Hugging Face cache so a box can be prepared before it goes
offline. Nothing here loads a model."""

from __future__ import annotations

import json
import sys

import msgspec

from imgdex.config import Config
from imgdex.hub import ModelFiles, describe_models, download, one_line

__all__ = ["download_missing", "list_models"]


def _models(config: Config) -> list[ModelFiles]:
    from imgdex.plugins import PluginHost

    host = PluginHost(config)
    host.load_entry_points()
    return describe_models(host)


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def list_models(config: Config, *, as_json: bool) -> int:
    """Print each enabled model: where its files are and their size. 1 if any is missing."""
    models = _models(config)
    if as_json:
        print(json.dumps(msgspec.to_builtins(models), indent=2))
    else:
        if not models:
            print("no enabled plugin loads a model in this process")
        for m in models:
            where = m.path if m.path else (m.problem or "")
            print(f"{m.role:<24} {m.location:<9} {_size(m.size_bytes):>9}  {m.model}")
            if where and where != m.model:
                print(f"    {where}")
        missing = [m for m in models if m.location == "missing"]
        if missing:
            print(f"{len(missing)} missing: `imgdex models download` fetches those from the hub")
    return 1 if any(m.location == "missing" for m in models) else 0


def download_missing(config: Config) -> int:
    """Fetch every missing hub model of the config; 1 if any could not be had."""
    failed = 0
    missing = [m for m in _models(config) if m.location == "missing"]
    if not missing:
        print("every enabled model is already on this machine")
    for m in missing:
        if m.source == "directory":
            failed += 1
            print(
                f"{m.role}: {m.problem} (a local directory cannot be downloaded)", file=sys.stderr
            )
            continue
        print(f"{m.role}: downloading {m.model} into the Hugging Face cache", flush=True)
        try:
            folder = download(m.model)
        except Exception as exc:  # offline, unknown or gated repo, disk full: say which
            failed += 1
            print(
                f"{m.role}: cannot download {m.model!r}: {type(exc).__name__}: {one_line(exc)}",
                file=sys.stderr,
            )
            continue
        print(f"{m.role}: {m.model} is in {folder}")
    return 1 if failed else 0
