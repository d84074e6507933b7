"""Serving an app under uvicorn with limits a hostile client cannot get around.

uvicorn's httptools protocol has no limit on the size of a request's head, no timeout
while a client sends it or its body, and no cap on open connections. `HardenedProtocol`
adds them below the app, where a connection costs the least: a head over
``server.max_header_bytes`` gets 431 before the parser is fed more, a client that stalls
is disconnected, and a connection past ``server.max_connections`` gets 503 at once.
`serve` runs an app with it (``imgdex serve`` and ``imgdex serve-model``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import msgspec
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from imgdex.config import ServerConfig

__all__ = ["HardenedProtocol", "HttpCounters", "counters", "protocol_class", "serve"]

log = logging.getLogger("imgdex.server")


class HttpCounters(msgspec.Struct, kw_only=True):
    """What the HTTP layer refused or dropped since start (``/api/stats`` shows it)."""

    client_disconnects: int = 0
    headers_too_large: int = 0
    header_timeouts: int = 0
    body_timeouts: int = 0
    connections_refused: int = 0


# One per process: the protocol and the app both count into it.
counters = HttpCounters()


class HardenedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head size, stall timeouts and a connection cap."""

    limits: ClassVar[ServerConfig] = ServerConfig()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # True from the end of one request until the next one's headers are complete:
        # every byte received then belongs to a request head.
        self._in_head = True
        self._head_bytes = 0
        self._last_body = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._refused = False

    # --- connection --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            counters.connections_refused += 1
            log.warning("refused a connection: %d open", len(self.connections) - 1)
            self._refuse(503, "too_many_connections", "the server has too many open connections")
            return
        self._arm(self.limits.header_timeout, self._on_header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._feed(data)
        # Timers start only for what is still incomplete after this read, so a request
        # that arrives whole in one read arms none.
        if self._timer is None and not self.transport.is_closing():
            if not self._in_head:
                self._last_body = self.loop.time()
                self._arm(self.limits.body_timeout, self._on_body_timeout)
            elif self._head_bytes:
                self._arm(self.limits.header_timeout, self._on_header_timeout)

    def _feed(self, data: bytes) -> None:
        while data:
            if not self._in_head:
                super().data_received(data)
                return
            # Feed the parser at most what is left of the head budget, so that a huge
            # head is never parsed (the parser builds header values by concatenation).
            room = self.limits.max_header_bytes - self._head_bytes
            if room <= 0:
                counters.headers_too_large += 1
                log.info("%s: request head over %d bytes", self._peer(), self._head_bytes)
                self._refuse(
                    431,
                    "headers_too_large",
                    f"the request line and headers exceed {self.limits.max_header_bytes} "
                    "bytes (server.max_header_bytes)",
                )
                return
            piece, data = data[:room], data[room:]
            self._head_bytes += len(piece)
            super().data_received(piece)
            if self.transport.is_closing():
                return

    # --- parser callbacks --------------------------------------------------------

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()  # the head deadline (the body timer is armed after this read)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._last_body = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    # --- timeouts ----------------------------------------------------------------

    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_header_timeout(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head behind a response still being written: once that one is
            # done, uvicorn's keep-alive timeout closes an idle connection.
            self._arm(self.limits.header_timeout, self._on_header_timeout)
            return
        counters.header_timeouts += 1
        timeout = self.limits.header_timeout
        log.info("%s: no complete request head within %gs", self._peer(), timeout)
        if self._head_bytes:
            self._refuse(408, "request_timeout", "the request head was not received in time")
        else:
            self.transport.close()

    def _on_body_timeout(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused:
            # The app is slow to take the body, the client is not stalling: start over.
            self._last_body = now
            self._arm(self.limits.body_timeout, self._on_body_timeout)
            return
        idle = now - self._last_body
        if idle < self.limits.body_timeout:  # body arrived since the timer was armed
            self._arm(self.limits.body_timeout - idle, self._on_body_timeout)
            return
        counters.body_timeouts += 1
        log.info("%s: request body stalled for %gs", self._peer(), self.limits.body_timeout)
        # The app sees a disconnect; a response it started cannot be completed anyway.
        self.transport.close()

    # --- helpers -----------------------------------------------------------------

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "client"

    def _refuse(self, status: int, code: str, detail: str) -> None:
        """Answer with the JSON error shape and close, whatever the parser's state."""
        self._refused = True
        self._disarm()
        if self.cycle is not None and not self.cycle.response_complete:
            # A response is being written on this connection: ours would corrupt it.
            self.transport.close()
            return
        body = msgspec.json.encode({"status_code": status, "error": code, "detail": detail})
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n",
        ]
        if status == 503:
            head.append(b"retry-after: 1\r\n")
        self.transport.write(b"".join([*head, b"\r\n", body]))
        self.transport.close()


def protocol_class(limits: ServerConfig) -> type[HardenedProtocol]:
    """`HardenedProtocol` bound to `limits` (uvicorn builds one protocol per connection)."""
    return type("HardenedProtocol", (HardenedProtocol,), {"limits": limits})


def serve(
    app: Any,
    limits: ServerConfig,
    *,
    host: str,
    port: int,
    log_level: str = "info",
    **uvicorn_options: Any,
) -> None:
    """Run `app` under uvicorn with `limits` (the ``server:`` section) until stopped."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=protocol_class(limits),
        timeout_keep_alive=limits.keep_alive_timeout,
        log_level=log_level,
        **uvicorn_options,
    )
