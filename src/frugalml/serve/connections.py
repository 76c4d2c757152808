"""Connection guards on uvicorn's HTTP/1.1 protocol (httptools).

uvicorn bounds neither the time a request's headers take to arrive nor how long a connection that
never sends one stays open, so slow senders could hold sockets for good. This protocol adds:

- a headers deadline: a connection whose request headers have not all arrived within
  `header_timeout_s` of it turning idle (opened, or its last response sent) is closed, however
  slowly the bytes trickle in;
- a headers size limit: httptools buffers headers without bound, so past MAX_HEADER_BYTES the
  request gets 431 and its connection is closed;
- an idle cap: a client address holds at most `max_idle_per_client` idle connections (waiting for
  a request's headers). Past it, the one idle longest is closed, once it has been idle for
  EVICTABLE_AFTER_S, so that a burst of new connections is never cut;
- a gentler shutdown: uvicorn closes idle connections at once, and closing a socket with a
  request unread resets it. Here an idle connection gets SHUTDOWN_GRACE_S to deliver a request
  already on its way, and every request answered after shutdown begins closes its connection.
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from frugalml.serve.config import ServeConfig

EVICTABLE_AFTER_S = 1.0  # a connection idle for less is never closed for its client's cap
SHUTDOWN_GRACE_S = 1.0  # an idle connection may still bring a request this long after shutdown
MAX_HEADER_BYTES = 64 * 1024  # request line and headers; 431 beyond


class IdleConnections:
    """One server's idle connections by client address, each client's idle longest first."""

    def __init__(self) -> None:
        self._by_client: dict[str, dict[GuardedHttpProtocol, float]] = {}

    def add(self, client: str, connection: GuardedHttpProtocol, cap: int) -> None:
        idle = self._by_client.setdefault(client, {})
        idle[connection] = time.monotonic()
        while len(idle) > cap:
            oldest, since = next(iter(idle.items()))
            if time.monotonic() - since < EVICTABLE_AFTER_S:
                return
            oldest.close_idle()  # which discards it

    def discard(self, client: str, connection: GuardedHttpProtocol) -> None:
        idle = self._by_client.get(client)
        if idle is not None:
            idle.pop(connection, None)
            if not idle:
                del self._by_client[client]


_IDLE_BY_SERVER: weakref.WeakKeyDictionary[ServerState, IdleConnections] = weakref.WeakKeyDictionary()


def idle_connections(server_state: ServerState) -> IdleConnections:
    """The idle connections of the server that `server_state` belongs to."""
    return _IDLE_BY_SERVER.setdefault(server_state, IdleConnections())


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a headers deadline and a per-client idle cap; its settings
    come from the ServerConfig that builds it."""

    def __init__(
        self,
        config: ServerConfig,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.header_timeout_s = config.serve.header_timeout_s
        self.max_idle_per_client = config.serve.max_idle_per_client
        self.idle_connections = idle_connections(server_state)
        self.headers_deadline: asyncio.TimerHandle | None = None
        self.header_bytes = 0  # received while the request's headers are incomplete
        self.shutting_down = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_request(self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        awaiting_headers = self.headers_deadline is not None
        super().data_received(data)
        if awaiting_headers and self.headers_deadline is not None:  # all of `data` was headers
            self.header_bytes += len(data)
            if self.header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
                self._refuse_large_headers()

    def on_headers_complete(self) -> None:
        self._stop_waiting()
        super().on_headers_complete()
        if self.shutting_down:
            self.cycle.keep_alive = False  # answered with Connection: close, then closed

    def shutdown(self) -> None:
        """Called by uvicorn when the server stops: finish the request in progress, if any, then
        close; an idle connection is closed after a short grace (or its headers deadline)."""
        self.shutting_down = True
        if not self._idle():
            super().shutdown()
        elif (
            self.headers_deadline is not None
            and self.headers_deadline.when() > self.loop.time() + SHUTDOWN_GRACE_S
        ):
            self._stop_waiting()
            self._await_request(SHUTDOWN_GRACE_S)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._idle():
            self._await_request(self.header_timeout_s)

    def close_idle(self) -> None:
        """Close this connection, which has no request in progress."""
        self._stop_waiting()
        if not self.transport.is_closing():
            self.transport.close()

    def _idle(self) -> bool:
        return not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete)

    def _refuse_large_headers(self) -> None:
        body = json.dumps({"error": f"request headers larger than {MAX_HEADER_BYTES} bytes"}).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.close_idle()

    def _await_request(self, timeout_s: float) -> None:
        self.header_bytes = 0
        self.headers_deadline = self.loop.call_later(timeout_s, self.close_idle)
        if self.client:
            self.idle_connections.add(self.client[0], self, self.max_idle_per_client)

    def _stop_waiting(self) -> None:
        if self.headers_deadline is None:
            return
        self.headers_deadline.cancel()
        self.headers_deadline = None
        if self.client:
            self.idle_connections.discard(self.client[0], self)


class ServerConfig(uvicorn.Config):
    """uvicorn's settings, serving HTTP/1.1 with the guarded protocol (no WebSockets) under the
    connection settings of `serve`."""

    def __init__(self, app: Any, serve: ServeConfig, **options: Any) -> None:
        super().__init__(app, http=GuardedHttpProtocol, ws="none", **options)
        self.serve = serve
