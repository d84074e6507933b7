"""Asking the server that owns a data directory, for commands that would otherwise read
its files (``imgdex plugins``): a running server knows which models loaded, which
failed and why, which the files cannot tell.

The server answers with a `data_dir_id` (a digest of its resolved data directory, not
the path itself: bodies never carry paths) so a command only trusts a server on the
configured host and port that serves the same directory.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec

from imgdex.config import Config
from imgdex.status import PluginInfo

__all__ = ["PluginsAnswer", "ask_plugins", "data_dir_id", "server_url"]


class PluginsAnswer(msgspec.Struct, kw_only=True, frozen=True):
    """``GET /api/admin/plugins``."""

    plugins: list[PluginInfo]
    # Which data directory the server serves (see `data_dir_id`).
    data_dir_id: str | None = None


def data_dir_id(path: Path) -> str:
    """A stable id of a data directory: the first 16 hex of the SHA-256 of its real path."""
    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]


def server_url(config: Config) -> str:
    """Where the configured server listens, as a URL this machine can reach."""
    host = config.server.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.server.port}"


def _admin_token(config: Config) -> str | None:
    if config.server.admin_token:
        return config.server.admin_token
    path = config.data_path / "admin_token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def ask_plugins(config: Config, timeout: float = 3.0) -> tuple[list[PluginInfo] | None, str]:
    """``(plugins, why)``: the running server's plugin report when a server on the
    configured address serves this config's data directory, else None and the reason."""
    import httpx

    url = server_url(config)
    token = _admin_token(config)
    if token is None:
        return None, "no server has run on this data directory (no admin token)"
    try:
        r = httpx.get(
            f"{url}/api/admin/plugins",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )
    except httpx.HTTPError:
        return None, f"no server running at {url}"
    if r.status_code != 200:
        return None, f"the server at {url} answered {r.status_code}"
    try:
        answer = msgspec.json.decode(r.content, type=PluginsAnswer)
    except msgspec.DecodeError:
        return None, f"the server at {url} is not an imgdex of this version"
    if answer.data_dir_id != data_dir_id(config.data_path):
        return None, f"the server at {url} serves another data directory"
    return answer.plugins, f"from the running server at {url}"
