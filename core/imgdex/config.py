"""Configuration: YAML files decoded into typed, frozen msgspec Structs.

Resolution order for the file: ``--config``, then ``IMGDEX_CONFIG``, then
``./config/imgdex.yaml`` when it exists, else the built-in defaults. Environment
variables ``IMGDEX_DATA_DIR`` and ``IMGDEX_ADMIN_TOKEN`` override the file; command-line
flags override both. Every unknown key or wrong type is a `ConfigError` naming the key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import msgspec.yaml

from imgdex.errors import ConfigError

__all__ = [
    "AuthConfig",
    "Config",
    "ImagesConfig",
    "IndexConfig",
    "PluginConfig",
    "PluginSettings",
    "SearchConfig",
    "ServerConfig",
    "ServiceConfig",
    "StorageConfig",
    "load_config",
]

DEFAULT_CONFIG_PATH = Path("config") / "imgdex.yaml"

T = TypeVar("T")


class ServerConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 6060
    # Bearer token for /api/admin/*. None: a random token is generated once and kept in
    # <data_dir>/admin_token (readable by the owner only).
    admin_token: str | None = None
    # Largest request body accepted (uploads, base64 searches); larger bodies get 413.
    max_upload_bytes: int = 200 * 1024 * 1024
    # JSON endpoints (searches, descriptions) never need big bodies: larger ones get 413
    # before they are read, so nothing large is ever decoded.
    max_json_bytes: Annotated[int, msgspec.Meta(gt=0)] = 1024 * 1024
    # Request line plus headers; past it the connection gets 431 and is closed before
    # the parser sees more.
    max_header_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 64 * 1024
    # Seconds a client may take to send the request line and headers, and may stay
    # silent in the middle of a body; then the connection is dropped.
    header_timeout: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    body_timeout: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    # Seconds an idle keep-alive connection stays open between requests.
    keep_alive_timeout: Annotated[int, msgspec.Meta(ge=1)] = 5
    # Open connections; one more is answered 503 and closed at once.
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 1000
    # Upload bodies (image uploads, image search forms) larger than this are hashed and
    # written to the blob store's staging directory (<data_dir>/storage/.tmp) while they
    # stream, never held whole in memory.
    upload_spool_bytes: Annotated[int, msgspec.Meta(ge=0)] = 8 * 1024 * 1024
    # Bytes of upload bodies being received or processed at once; an upload that would
    # pass it waits up to `upload_wait` seconds, then gets 503 with Retry-After.
    uploads_in_flight_bytes: Annotated[int, msgspec.Meta(ge=1)] = 1024 * 1024 * 1024
    upload_wait: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    # Origins allowed to call the API from a browser (CORS); none by default.
    cors_origins: tuple[str, ...] = ()


class AuthConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Who may do what (``docs/auth.md``). ``none``: the open API, loopback only."""

    mode: Literal["none", "users"] = "none"
    # Seconds a login session lasts, and how long it may sit unused before it ends.
    session_lifetime: Annotated[float, msgspec.Meta(gt=0)] = 14 * 24 * 3600.0
    session_idle_timeout: Annotated[float, msgspec.Meta(gt=0)] = 24 * 3600.0
    # Failed logins allowed per account and per client address within the window
    # (seconds); past them, 429 with Retry-After.
    login_attempts_per_account: Annotated[int, msgspec.Meta(ge=1)] = 5
    login_attempts_per_address: Annotated[int, msgspec.Meta(ge=1)] = 20
    login_window: Annotated[float, msgspec.Meta(gt=0)] = 300.0


class ImagesConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    # Decompression-bomb policy: images with more pixels than this are rejected (422).
    max_pixels: int = 178_956_970
    thumbnail_size: int = 256
    thumbnail_quality: int = 85
    # Images are decoded for models at reduced scale (JPEG draft mode) but never below
    # this shortest side, so models see at least this much detail.
    decode_min_side: Annotated[int, msgspec.Meta(ge=16)] = 1024
    # Memory (bytes) that image decoding may hold at once in the whole process, all
    # requests and workers together; each decode's cost is estimated from the header.
    # An image costing more alone is refused (422); others wait up to `decode_wait`
    # seconds for their share, then get 503 with Retry-After.
    decode_budget_bytes: Annotated[int, msgspec.Meta(ge=1)] = 1024 * 1024 * 1024
    decode_wait: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    formats: tuple[str, ...] = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIF")


class IndexConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    backend: str = "hnswlib"
    m: int = 16
    ef_construction: int = 200
    ef_search: int = 64
    # The on-disk index is a cache of the .npy vectors: it is saved at most this often
    # (seconds) when changed, at shutdown, and rebuilt from the vectors when stale.
    save_interval: float = 30.0


class SearchConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    fusion: Literal["rrf", "max"] = "rrf"
    rrf_k: int = 60
    # Per-index weight in reciprocal rank fusion (default 1.0).
    weights: dict[str, float] = msgspec.field(default_factory=dict)
    # Each index is asked for at least this many candidates (and at least 3 x top_k).
    min_candidates: int = 50
    # Memory for what filters allow, kept between searches that use them again (the
    # labels, and for narrower filters their vectors; imgdex.filter_sets). 0 keeps none.
    filter_cache_mb: Annotated[int, msgspec.Meta(ge=0)] = 256


class ServiceConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A model provider of a plugin's index (the seed's ``embedding_services``).

    `endpoint` is a model service's base URL (``imgdex serve-model``), or ``in-process``
    for the plugin's own model in this process. See ``docs/services.md``.
    """

    plugin: str
    endpoint: str
    # Smaller numbers are tried first; equal priorities share the load by `weight`.
    priority: int = 1
    timeout: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    # Requests per minute, 0 = unlimited.
    rate_limit: Annotated[int, msgspec.Meta(ge=0)] = 0
    enabled: bool = True
    api_key: str | None = None
    weight: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    # At most this many images or texts per request.
    batch_size: Annotated[int, msgspec.Meta(ge=1)] = 32
    # Images are sent re-encoded with their longest side capped at this (0: as decoded).
    max_image_side: Annotated[int, msgspec.Meta(ge=0)] = 1024
    image_format: Literal["jpeg", "png"] = "jpeg"


class DuplicatesConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Near-duplicate detection over the image indexes (see ``docs/architecture.md``)."""

    enabled: bool = True
    # Pairs at least this similar (cosine in the image index) are recorded ...
    min_score: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.9
    # ... and `GET /api/duplicates` lists those at least this similar by default.
    threshold: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.95
    # Each image is compared with this many nearest neighbours.
    neighbours: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10

    def __post_init__(self) -> None:
        if self.threshold < self.min_score:
            raise ValueError("threshold must be at least min_score (pairs below it are not kept)")


class WorkerConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    # How often the background workers look for due jobs when nothing wakes them.
    interval: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    batch_size: Annotated[int, msgspec.Meta(ge=1)] = 16
    # A job that fails is retried after retry_delay, then 2x, 4x ... (at most
    # retry_delay_max seconds), and is marked failed after max_attempts tries.
    max_attempts: Annotated[int, msgspec.Meta(ge=1)] = 3
    retry_delay: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    retry_delay_max: Annotated[float, msgspec.Meta(ge=0)] = 3600.0
    # Batches run at once per plugin (default 1): more only helps remote model services
    # or models that leave cores idle.
    concurrency: dict[str, Annotated[int, msgspec.Meta(ge=1, le=64)]] = msgspec.field(
        default_factory=dict
    )
    # A model that failed to load is retried after this many seconds.
    retry_load_after: float = 60.0
    # Model services (``services:``) are health-checked this often (seconds).
    health_interval: Annotated[float, msgspec.Meta(gt=0)] = 60.0


class StorageConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    # File-mode mask (octal, like a shell's umask) the server process runs with: "077"
    # makes the data directory and everything in it 0700/0600, owner only (the library
    # is private); "027" lets the group read. At start the data directory itself and
    # the catalog files are set to it too.
    umask: Annotated[str, msgspec.Meta(pattern=r"^0?[0-7]{1,3}$")] = "077"
    # Soft-deleted images stay restorable this many days, then upkeep deletes them for
    # good (files, vectors, rows); 0 keeps them until deleted by hand.
    trash_days: Annotated[float, msgspec.Meta(ge=0)] = 30.0

    @property
    def mask(self) -> int:
        return int(self.umask, 8)

    @property
    def dir_mode(self) -> int:
        return 0o777 & ~self.mask

    @property
    def file_mode(self) -> int:
        return 0o666 & ~self.mask


class Config(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    data_dir: str = "./data"
    storage: StorageConfig = msgspec.field(default_factory=StorageConfig)
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    images: ImagesConfig = msgspec.field(default_factory=ImagesConfig)
    index: IndexConfig = msgspec.field(default_factory=IndexConfig)
    search: SearchConfig = msgspec.field(default_factory=SearchConfig)
    worker: WorkerConfig = msgspec.field(default_factory=WorkerConfig)
    duplicates: DuplicatesConfig = msgspec.field(default_factory=DuplicatesConfig)
    plugins: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    services: dict[str, ServiceConfig] = msgspec.field(default_factory=dict)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    def plugin_settings(self, name: str) -> PluginSettings:
        return PluginSettings(
            name, self.plugins.get(name) or {}, cache_dir=self.data_path / "cache" / name
        )


class PluginConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Base of every plugin's own config section: ``enabled`` and ``model`` always exist."""

    enabled: bool = True
    model: str | None = None


class PluginSettings:
    """One plugin's raw ``plugins.<name>`` section, decoded by the plugin into its Struct.

    `cache_dir` (``<data_dir>/cache/<name>``, not created until used) is where a plugin
    may keep derived files such as an ONNX export of its model.
    """

    def __init__(self, name: str, raw: dict[str, Any], cache_dir: Path | None = None) -> None:
        self.name = name
        self.raw = dict(raw)
        self.cache_dir = cache_dir if cache_dir is not None else Path(".imgdex-cache") / name

    @property
    def enabled(self) -> bool:
        value = self.raw.get("enabled", True)
        if not isinstance(value, bool):
            raise ConfigError(f"plugins.{self.name}.enabled: expected true or false")
        return value

    def decode(self, type_: type[T]) -> T:
        """Decode the section into `type_`, naming the offending key on error."""
        try:
            return msgspec.convert(self.raw, type_, strict=False)
        except msgspec.ValidationError as exc:
            raise ConfigError(_name_key(f"plugins.{self.name}", str(exc))) from None


def _name_key(prefix: str, message: str) -> str:
    # msgspec says "... - at `$.server.port`" or "Object contains unknown field `x` - at `$`".
    match = re.search(r"- at `\$(.*)`$", message)
    path = (prefix + (match.group(1) if match else "")).strip(".")
    text = message[: match.start()].strip() if match else message
    unknown = re.match(r"Object contains unknown field `(.+)`", text)
    if unknown:
        key = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
        return f"{key}: unknown key"
    return f"{path or 'config'}: {text}"


def decode_config(data: bytes, source: str = "config") -> Config:
    """Decode YAML bytes into a `Config`; an empty document gives the defaults."""
    try:
        raw = msgspec.yaml.decode(data) if data.strip() else {}
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    services = raw.get("services")
    if isinstance(services, dict):
        # msgspec reports a mapping's entries as `[...]`: check each one to name it.
        for key, value in services.items():
            try:
                msgspec.convert(value, ServiceConfig, strict=False)
            except msgspec.ValidationError as exc:
                raise ConfigError(f"{source}: {_name_key(f'services.{key}', str(exc))}") from None
    try:
        return msgspec.convert(raw, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_name_key('', str(exc))}") from None


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    data_dir: str | None = None,
    host: str | None = None,
    port: int | None = None,
) -> Config:
    """Load the configuration with the documented precedence (flags > env > file > defaults)."""
    chosen = path or os.environ.get("IMGDEX_CONFIG") or None
    if chosen is not None:
        file = Path(chosen)
        if not file.is_file():
            raise ConfigError(f"config file not found: {file}")
    elif DEFAULT_CONFIG_PATH.is_file():
        file = DEFAULT_CONFIG_PATH
    else:
        file = None
    config = decode_config(file.read_bytes(), str(file)) if file is not None else Config()

    server_changes: dict[str, Any] = {}
    if token := os.environ.get("IMGDEX_ADMIN_TOKEN"):
        server_changes["admin_token"] = token
    if host is not None:
        server_changes["host"] = host
    if port is not None:
        server_changes["port"] = port
    if server_changes:
        config = msgspec.structs.replace(
            config, server=msgspec.structs.replace(config.server, **server_changes)
        )
    chosen_dir = data_dir or os.environ.get("IMGDEX_DATA_DIR")
    if chosen_dir:
        config = msgspec.structs.replace(config, data_dir=chosen_dir)
    return config
