"""Run imgdex under uvicorn for a benchmark: ``python bench/_server.py SPEC.json PORT``.

The spec (written by `_common.BenchServer`) holds the config mapping, the plugins to
register (`_embedders.build_plugins`) and the `create_app` flags. The app is the real
one: `imgdex.api.create_app`, served the way ``imgdex serve`` serves it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main() -> None:
    from _embedders import build_plugins

    from imgdex.api import create_app
    from imgdex.config import ServerConfig, decode_config
    from imgdex.server import serve

    spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    port = int(sys.argv[2])
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    app: Any
    limits = ServerConfig()
    if "floor" in spec:
        app = floor_app(spec["floor"])
    else:
        config = decode_config(json.dumps(spec["config"]).encode(), "bench config")
        app = create_app(
            config,
            plugins=build_plugins(spec.get("plugins", [])),
            entry_points=False,
            background=spec.get("background", True),
            preload=spec.get("preload", True),
        )
        limits = config.server
    # The floor too runs under imgdex's own protocol, so it measures the same HTTP layer.
    serve(
        app,
        limits,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=10,
        **spec.get("uvicorn", {}),
    )


def floor_app(canned: dict[str, Any]) -> Any:
    """The cost of serving a search with no search in it, to split the server's overhead.

    ``POST /api/search/text`` is a Litestar handler with the same typed request body as
    imgdex's, and ``POST /api/search/image`` one that reads the multipart form as
    imgdex's does (`imgdex.api.uploads.read_form`); both return a canned response of the
    same size (HTTP + Litestar + msgspec). ``/raw`` answers the same bytes from a bare
    ASGI callable (HTTP only).
    ``/health`` reports no models, so `BenchServer.start` sees it ready at once.
    """
    from litestar import Litestar, Request, get, post

    from imgdex.api.search import IMAGE_SEARCH_FIELDS
    from imgdex.api.uploads import read_form
    from imgdex.schemas import SearchTextRequest

    body = json.dumps(canned).encode()

    @post("/api/search/text", status_code=200)
    async def text(data: SearchTextRequest) -> dict[str, Any]:
        return canned

    @post("/api/search/image", status_code=200)
    async def image(request: Request[Any, Any, Any]) -> dict[str, Any]:
        await read_form(request, "file", IMAGE_SEARCH_FIELDS)
        return canned

    @get("/health")
    async def health() -> dict[str, Any]:
        return {"models": []}

    inner = Litestar(
        route_handlers=[text, image, health],
        logging_config=None,
        openapi_config=None,
        signature_namespace={
            "SearchTextRequest": SearchTextRequest,
            "Request": Request,
            "Any": Any,
        },
    )

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/raw":
            more = True
            while more:
                more = (await receive()).get("more_body", False)
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await inner(scope, receive, send)

    return app


if __name__ == "__main__":
    main()
