"""The application factory: `create_app(config) -> Litestar`.

The lifespan owns every resource: it opens the runtime (`imgdex.runtime`: catalog, blob
store, indexes, models), starts the background tasks (enrichment, index saving, start-up
reconciliation, model preloading) and closes everything in order on shutdown, saving
the indexes last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

from litestar import Litestar
from litestar.config.cors import CORSConfig

import imgdex
from imgdex.auth.audit import AuditMiddleware
from imgdex.auth.guards import document
from imgdex.auth.middleware import (
    SESSION_COOKIE,
    AuthMiddleware,
    SecurityHeadersMiddleware,
    csrf_config,
)
from imgdex.auth.service import AuthService
from imgdex.auth.shares import Shares
from imgdex.config import Config
from imgdex.ops.recovery import recover_storage
from imgdex.plugins import PluginHost
from imgdex.runtime import Runtime

from .admin import AdminController
from .albums import AlbumsController
from .auth import AuthController
from .deps import dependencies
from .docs import docs_assets, finish_document, openapi_config
from .duplicates import DuplicatesController
from .errors import exception_handlers
from .images import ImagesController
from .keys import KeysController
from .request import request_class
from .search import SearchController
from .services import ServicesController
from .sharelinks import ShareController
from .shares import SharesController
from .similar import SimilarController
from .system import SystemController
from .tags import TagsController
from .users import UsersController

__all__ = ["create_app"]

log = logging.getLogger("imgdex")


def admin_token(config: Config) -> str:
    """The configured token, or one generated once and kept in ``<data>/admin_token``."""
    if config.server.admin_token:
        return config.server.admin_token
    path = config.data_path / "admin_token"
    if path.is_file() and (token := path.read_text().strip()):
        return token
    config.data_path.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    log.warning("no admin token configured: generated one in %s", path)
    return token


def _secret_file(config: Config, name: str) -> str:
    """A random secret kept in ``<data>/<name>`` (owner-only), made on first use."""
    path = config.data_path / name
    if path.is_file() and (value := path.read_text().strip()):
        return value
    config.data_path.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return value


def create_app(
    config: Config,
    *,
    plugins: dict[str, object] | None = None,
    entry_points: bool = True,
    background: bool = True,
    preload: bool = True,
) -> Litestar:
    """Build the app. `plugins` registers extra plugin objects (tests, embedding apps);
    `entry_points=False` skips installed plugins except the core's own; `background=False`
    leaves enrichment to explicit calls (``app.state.enricher.run_once()``).

    Plugins are loaded here, not in the lifespan, so that a plugin config section that
    does not decode is a `ConfigError` before anything listens.
    """
    host = PluginHost(config)
    if entry_points:
        host.load_entry_points()
    else:
        from imgdex.index import flat, hnsw

        host.add("hnswlib", hnsw)
        host.add("flat", flat)
    for name, plugin in (plugins or {}).items():
        host.add(name, plugin)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        runtime = await asyncio.to_thread(Runtime, config, host)
        enricher = runtime.worker
        app.state.runtime = runtime
        app.state.enricher = enricher  # `run_once()` drives it with background=False
        app.state.admin_token = await asyncio.to_thread(admin_token, config)
        secret = await asyncio.to_thread(_secret_file, config, "csrf_secret")
        app.state.csrf_config = csrf_config(secret)
        app.state.shares = Shares(runtime.catalog.shares)  # for the albums API
        app.state.auth = AuthService(runtime.catalog.users, config.auth, app.state.admin_token)
        tasks: list[asyncio.Task[Any]] = []
        if background:
            tasks.append(asyncio.create_task(_startup(runtime, preload), name="imgdex-startup"))
            tasks.append(asyncio.create_task(enricher.run(), name="imgdex-enricher"))
        tasks.append(
            asyncio.create_task(
                _every(config.index.save_interval, runtime, runtime.indexes.save_dirty)
            )
        )
        if background:  # near-duplicates of new (and, once, of older) images
            finder = runtime.duplicate_finder
            tasks.append(
                asyncio.create_task(_every(config.worker.interval, runtime, finder.run_once))
            )
        if runtime.services.slots:
            tasks.append(asyncio.create_task(runtime.services.run(), name="imgdex-health"))
        log.info("imgdex %s serving data in %s", imgdex.__version__, config.data_path)
        try:
            yield
        finally:
            enricher.stop()
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=30)
            await asyncio.to_thread(runtime.close)

    app = Litestar(
        route_handlers=[
            SystemController,
            ImagesController,
            SearchController,
            SimilarController,
            DuplicatesController,
            AdminController,
            ServicesController,
            TagsController,
            AlbumsController,
            SharesController,
            ShareController,  # /s/{token}: public, read-only (imgdex.api.sharelinks)
            docs_assets(),
            AuthController,
            KeysController,
            UsersController,
        ],
        # Outermost first: headers on every HTML answer (errors too), then who is asking
        # (and CSRF for cookie sessions), then the audit of admin actions that succeeded.
        middleware=[SecurityHeadersMiddleware, AuthMiddleware, AuditMiddleware],
        cors_config=CORSConfig(
            allow_origins=list(config.server.cors_origins),
            allow_headers=["Authorization", "Content-Type", "X-CSRFToken"],
            allow_credentials=True,
        )
        if config.server.cors_origins
        else None,
        lifespan=[lifespan],
        plugins=[_web_plugin()],  # the web app at / (imgdex.web)
        dependencies=dependencies(),
        exception_handlers=exception_handlers,
        request_max_body_size=config.server.max_upload_bytes,
        request_class=request_class(config.server.max_json_bytes),
        openapi_config=openapi_config(imgdex.__version__, SESSION_COOKIE),
        # Logging belongs to whoever runs the app (the CLI, uvicorn, a test runner).
        logging_config=None,
        debug=False,
    )
    document(app)  # before the schema is built: it edits the handlers
    finish_document(app.openapi_schema)
    return app


async def _startup(runtime: Runtime, preload: bool) -> None:
    """Recover storage, then load enabled models so /health tells at once what fails,
    and keep loading those that failed whenever their next attempt is due."""
    try:
        await runtime.pools.run_io(
            recover_storage,
            runtime.config.images,
            runtime.catalog,
            runtime.blobs,
            runtime.registry,
            runtime.wakeup,
            runtime.locks,
        )
    except Exception:
        log.exception("start-up storage recovery failed")
    finally:
        runtime.recovered.set()
    wake = runtime.wakeup.ring
    if not preload:
        wake()
        return
    await _load_due(runtime)
    wake()
    while True:
        # A failure outside the model (an import race, memory) is due again in seconds;
        # without this the retry would wait for the next job or search to need the model.
        waits = [s.retry_in for s in _model_slots(runtime) if s.retry_in is not None]
        await asyncio.sleep(min([RELOAD_TICK, *waits]) + 0.05)
        if await _load_due(runtime):
            wake()


RELOAD_TICK = 5.0


def _model_slots(runtime: Runtime) -> list[Any]:
    return [*runtime.registry.embedder_slots(), *runtime.registry.describer_slots()]


async def _load_due(runtime: Runtime) -> bool:
    """Load every enabled model not loaded yet or whose retry is due; True if any loaded."""
    due = [
        slot
        for slot in _model_slots(runtime)
        if slot.state in ("not_loaded", "failed") and slot.available()
    ]
    outcomes = await asyncio.gather(
        *(runtime.pools.run_model(slot.ensure_loaded) for slot in due), return_exceptions=True
    )
    return any(outcome is None for outcome in outcomes)


async def _every(seconds: float, runtime: Runtime, fn: Callable[[], object]) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await runtime.pools.run_io(fn)
        except Exception:
            log.exception("periodic task %s failed", getattr(fn, "__name__", fn))


def _web_plugin() -> Any:
    # Imported here, not at the top: the web app's controllers use this package's
    # dependencies, so a top-level import would make `import imgdex.web` circular.
    from imgdex.web import WebPlugin

    return WebPlugin()
