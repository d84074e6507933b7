"""The app's `Request`: JSON bodies bounded and decoded off the loop, disconnects named.

Litestar reads a ``data`` body with `Request.body` (bounded only by
``server.max_upload_bytes``) and decodes it with `Request.json` on the event loop. Here
a JSON endpoint's body is refused past ``server.max_json_bytes`` (from Content-Length
before anything is read, and while a chunked body streams), a body past
`THREAD_DECODE_BYTES` is decoded in a worker thread, and JSON that is malformed or nested
too deeply for the decoder is a 400 ``bad_json``. A client that goes away while its body
is read raises `ClientDisconnected`, not Litestar's 500.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Any

import anyio.to_thread
import msgspec
from litestar import Request
from litestar.connection.base import empty_receive, empty_send
from litestar.enums import RequestEncodingType
from litestar.exceptions import InternalServerException, SerializationException
from litestar.serialization import decode_json
from litestar.types import Empty, Receive, ReceiveMessage, Scope, Send

from imgdex.errors import BadRequest, ImgdexError, PayloadTooLarge
from imgdex.server import counters

__all__ = ["LARGE_JSON", "THREAD_DECODE_BYTES", "ClientDisconnected", "request_class"]

# Bodies at most this large decode on the loop (a thread hop costs more than that).
THREAD_DECODE_BYTES = 64 * 1024

# `opt` of a JSON handler whose body may be as large as an upload (base64 images): it is
# bounded by server.max_upload_bytes instead of server.max_json_bytes.
LARGE_JSON: dict[str, Any] = {"large_json": True}

log = logging.getLogger("imgdex.api")

_JSON_MEDIA = (RequestEncodingType.JSON, RequestEncodingType.JSON.value)


class ClientDisconnected(ImgdexError):
    """The client closed the connection before its request body was read."""

    status = 400
    code = "client_disconnected"


class _ImgdexRequest(Request[Any, Any, Any]):
    max_json_bytes = 1024 * 1024

    # Defaults as in Litestar's `Request`: its CSRF middleware builds one from scope and
    # receive only.
    def __init__(
        self, scope: Scope, receive: Receive = empty_receive, send: Send = empty_send
    ) -> None:
        super().__init__(scope, receive, send)
        self._peer_gone = False
        inner = self.receive

        async def watched() -> ReceiveMessage:
            message = await inner()
            if message["type"] == "http.disconnect":
                self._peer_gone = True
            return message

        self.receive = watched

    def _json_limit(self) -> int | None:
        """``server.max_json_bytes`` for a handler whose ``data`` is JSON, else None."""
        handler = self.route_handler
        if handler.opt.get("large_json"):
            return None
        data = handler.parsed_fn_signature.parameters.get("data")
        if data is None:
            return None
        media = getattr(data.kwarg_definition, "media_type", RequestEncodingType.JSON)
        return self.max_json_bytes if media in _JSON_MEDIA else None

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"a JSON body may have at most {self.max_json_bytes} bytes (server.max_json_bytes)"
        )

    async def stream(self) -> AsyncGenerator[bytes, None]:
        limit = self._json_limit() if self._body is Empty else None
        if limit is not None and (self.content_length or 0) > limit:
            raise self._too_large()
        received = 0
        try:
            async with contextlib.aclosing(super().stream()) as chunks:
                async for chunk in chunks:
                    received += len(chunk)
                    if limit is not None and received > limit:
                        raise self._too_large()
                    yield chunk
        except InternalServerException:
            if self._peer_gone:
                counters.client_disconnects += 1
                log.info("%s %s: the client disconnected mid-body", self.method, self.url.path)
                raise ClientDisconnected("the client left before its body was read") from None
            raise

    async def json(self) -> Any:
        if self._json is Empty:
            if (cached := self._connection_state.json) is not Empty:
                self._json = cached
            else:
                body = await self.body()
                decoders = self.route_handler.resolve_type_decoders()
                if len(body) > THREAD_DECODE_BYTES:
                    value = await anyio.to_thread.run_sync(_decode, body, decoders)
                else:
                    value = _decode(body, decoders)
                self._json = self._connection_state.json = value
        return self._json


def _decode(body: bytes, type_decoders: Any) -> Any:
    try:
        return decode_json(body or b"null", type_decoders=type_decoders)
    except RecursionError:
        raise BadRequest("the JSON body is nested too deeply", code="bad_json") from None
    except (SerializationException, msgspec.DecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="bad_json") from None


def request_class(max_json_bytes: int) -> type[Request[Any, Any, Any]]:
    """The app's request class, with ``server.max_json_bytes`` bound."""
    return type("ImgdexRequest", (_ImgdexRequest,), {"max_json_bytes": max_json_bytes})
