"""The ``imgdex`` command: serve, serve-model, plugins, models and import."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from imgdex.config import Config, load_config
from imgdex.datalock import DataDirLocked
from imgdex.errors import ConfigError

if TYPE_CHECKING:
    from imgdex.status import PluginInfo

__all__ = ["main"]


def _config(args: argparse.Namespace) -> Config:
    return load_config(
        args.config,
        data_dir=getattr(args, "data_dir", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from imgdex.api import create_app
    from imgdex.auth.cli import check_bind
    from imgdex.datalock import acquire
    from imgdex.server import serve

    config = _config(args)
    check_bind(config, config.server.host)
    # Before plugins load or the port opens: a second server on this data directory
    # stops here, naming the first.
    with acquire(config.data_path):
        app = create_app(config)
        print(
            f"imgdex: serving on http://{config.server.host}:{config.server.port} "
            f"(data in {config.data_path}; API docs at /docs)",
            flush=True,
        )
        serve(
            app,
            config.server,
            host=config.server.host,
            port=config.server.port,
            log_level=args.log_level.lower(),
            timeout_graceful_shutdown=10,
        )
    return 0


def cmd_serve_model(args: argparse.Namespace) -> int:
    from imgdex.server import serve
    from imgdex.services.server import create_model_app

    # The model service's own --host/--port, not the core's `server:` section.
    config = load_config(args.config)
    api_key = os.environ.get("IMGDEX_MODEL_API_KEY") or None
    app = create_model_app(config, args.name, api_key=api_key)
    if api_key is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"imgdex: warning: serving on {args.host} without an API key "
            "(set IMGDEX_MODEL_API_KEY)",
            file=sys.stderr,
        )
    print(
        f"imgdex: serving plugin {args.name} as a model service on "
        f"http://{args.host}:{args.port} (GET /health)",
        flush=True,
    )
    serve(
        app,
        config.server,
        host=args.host,
        port=args.port,
        log_level=args.log_level.lower(),
        timeout_graceful_shutdown=10,
    )
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from imgdex.serverquery import ask_plugins

    config = _config(args)
    # A running server on this data directory knows what loaded and what failed; the
    # files are the fallback when none is up.
    infos, why = ask_plugins(config)
    if infos is None:
        infos = _plugins_from_files(config)
        why = f"from files, {why}"
    if args.json:
        print(f"imgdex plugins: {why}", file=sys.stderr)
        print(json.dumps(msgspec.to_builtins(infos), indent=2))
        return 0
    print(f"({why})")
    for info in infos:
        flag = "enabled" if info.enabled else "disabled"
        if info.state == "failed":
            flag = "FAILED"
        kinds = ", ".join(info.kinds) or "-"
        dist = f"{info.distribution or ''} {info.version or ''}".strip()
        print(f"{info.name:<14} {flag:<9} {kinds:<22} {dist}")
        if info.error:
            print(f"    error: {info.error}")
        for ix in info.indexes:
            dim = ix.dimension if ix.dimension is not None else "?"
            model = f"{ix.model} v{ix.model_version}"
            print(f"    index {ix.index:<22} {model}  dim={dim}  vectors={ix.count}")
            if ix.progress is not None and (ix.progress.queued or ix.progress.failed):
                p = ix.progress
                print(
                    f"        jobs: {p.done}/{p.total} done, {p.queued} queued, {p.failed} failed"
                )
            if ix.role and ix.role != "active":
                print(f"        role: {ix.role}")
            if ix.error:
                print(f"        {ix.state}: {ix.error}")
        for d in info.describers:
            print(f"    describer {d.method:<18} {d.model}")
            if d.error:
                print(f"        {d.state}: {d.error}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from imgdex.cli_models import download_missing, list_models

    config = _config(args)
    if args.action == "download":
        return download_missing(config)
    return list_models(config, as_json=args.json)


def _plugins_from_files(config: Config) -> list[PluginInfo]:
    """The plugin report from the installed plugins and the data directory's files."""
    from imgdex.catalog import Catalog, vector_job_kind
    from imgdex.hub import find_problem
    from imgdex.index import IndexManager
    from imgdex.plugins import PluginHost
    from imgdex.status import Progress, plugin_infos
    from imgdex.status import progress as index_progress

    host = PluginHost(config)
    host.load_entry_points()
    data = config.data_path
    states: dict[str, bool] = {}
    counts: dict[str, int] = {}
    on_disk: dict[str, dict[str, object]] = {}
    progress: dict[str, Progress] = {}
    roles: dict[str, tuple[str | None, str | None]] = {}
    if (data / "imgdex.db").is_file():
        catalog = Catalog(data / "imgdex.db")
        states, counts = catalog.plugin_states(), catalog.index_counts()
        # Background jobs per index, counted as the server's /api/admin/jobs counts them.
        progress = index_progress(
            catalog,
            [(vector_job_kind(e.stores), e.index_name, e.index_name) for _, e in host.embedders()],
        )
        roles = {name: (r.role, None) for name, r in catalog.index_roles().items()}
        catalog.close()
    if (data / "vector_index").is_dir():
        on_disk = IndexManager.read_all_meta(data / "vector_index")
    # Say which model files are missing without loading any model.
    model_states: dict[str, tuple[str, str | None]] = {}
    for _, embedder in host.embedders():
        problem = find_problem(embedder.model) if embedder.model else None
        model_states[embedder.index_name] = ("missing" if problem else "not_loaded", problem)
    for _, describer in host.describers():
        problem = find_problem(describer.model) if describer.model else None
        state = "missing" if problem else "not_loaded"
        model_states[f"describer {describer.method}"] = (state, problem)
    return plugin_infos(
        list(host.records.values()),
        enabled={
            r.name: r.state == "loaded" and states.get(r.name, r.configured_enabled)
            for r in host.records.values()
        },
        counts=counts,
        on_disk=on_disk,
        model_states=model_states,
        progress=progress,
        roles=roles,
    )


def cmd_import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from imgdex.importer import ImportReport, discover, import_local, import_to_server

    config = _config(args)
    report = ImportReport()
    items = list(discover(args.paths, report))
    bar = tqdm(total=len(items), unit="file", desc="importing", disable=args.quiet)

    def tick() -> None:
        bar.update(1)

    if args.local:
        from imgdex.plugins import PluginHost
        from imgdex.runtime import Runtime

        host = PluginHost(config)
        host.load_entry_points()
        runtime = Runtime(config, host)
        try:
            import_local(
                items,
                runtime,
                source=args.source,
                workers=args.workers,
                report=report,
                progress=tick,
            )
        finally:
            runtime.close()
    else:
        server = args.server or f"http://{_loopback(config.server.host)}:{config.server.port}"
        import_to_server(
            items,
            server,
            source=args.source,
            workers=args.workers,
            report=report,
            progress=tick,
            api_key=os.environ.get("IMGDEX_API_KEY") or None,
        )
    bar.close()
    counts = report.counts
    summary = ", ".join(
        f"{counts[k]} {k}" for k in ("added", "duplicate", "rejected", "skipped", "failed")
    )
    print(f"imgdex import: {len(items)} files: {summary}")
    for name, reason in report.problems[: args.show]:
        print(f"  {name}: {reason}", file=sys.stderr)
    if len(report.problems) > args.show:
        print(f"  ... and {len(report.problems) - args.show} more", file=sys.stderr)
    return 1 if counts["failed"] else 0


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgdex", description="Self-hosted image library server.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument(
        "--config", help="YAML config file (default: $IMGDEX_CONFIG or config/imgdex.yaml)"
    )
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--data-dir", help="data directory (default: $IMGDEX_DATA_DIR or ./data)")
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.set_defaults(func=cmd_serve)

    model = sub.add_parser(
        "serve-model",
        help="run one plugin as a standalone model service (see docs/services.md)",
        description="Serve one installed plugin over the model service protocol "
        "(POST /embed/image, /embed/text, /describe; GET /health). Its config section "
        "plugins.<NAME> applies. Set IMGDEX_MODEL_API_KEY to require an API key.",
    )
    model.add_argument("name", help="plugin name, as listed by `imgdex plugins`")
    model.add_argument("--config", help="YAML config file (plugins.<NAME> is used)")
    model.add_argument("--host", default="127.0.0.1")
    model.add_argument("--port", type=int, default=6010)
    model.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    model.set_defaults(func=cmd_serve_model)

    plugins = sub.add_parser("plugins", help="list installed plugins, their indexes and state")
    plugins.add_argument("--config")
    plugins.add_argument("--data-dir")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(func=cmd_plugins)

    models = sub.add_parser(
        "models",
        help="where each enabled model's weights are; `download` fetches the missing ones",
        description="List every model the enabled plugins load (local directory, Hugging "
        "Face cache, or missing) with its size; exits 1 when one is missing. `imgdex models "
        "download` fetches every missing hub model into the Hugging Face cache.",
    )
    models.add_argument("action", nargs="?", choices=["list", "download"], default="list")
    models.add_argument("--config")
    models.add_argument("--json", action="store_true", help="machine-readable listing")
    models.set_defaults(func=cmd_models)

    imp = sub.add_parser(
        "import",
        help="bulk import files, folders and ZIP archives",
        description="Import images into a running server (default) or, with --local, "
        "straight into a data directory no server is using. Re-running an interrupted "
        "import skips what is already stored.",
    )
    imp.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders, ZIP archives")
    imp.add_argument(
        "--server", help="server URL (default: from the config, http://127.0.0.1:6060)"
    )
    imp.add_argument("--local", action="store_true", help="write into the data dir, no server")
    imp.add_argument("--config")
    imp.add_argument("--data-dir")
    imp.add_argument("--source", help="source label stored with every image")
    imp.add_argument("--workers", type=int, default=4, help="parallel uploads (default 4)")
    imp.add_argument("--show", type=int, default=20, help="how many problems to list")
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    imp.set_defaults(func=cmd_import)

    from imgdex.auth.cli import add_users_parser

    add_users_parser(sub, _config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"imgdex: configuration error: {exc.detail}", file=sys.stderr)
        return 2
    except DataDirLocked as exc:
        print(f"imgdex: {exc.detail}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
