"""ASGI middleware: request ids, one JSON access-log line per request, request metrics.

Plain ASGI rather than BaseHTTPMiddleware: it sits on the hot path of every request.
Inference handlers put `model` and `route` in the request state; those requests are counted.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

from frugalml.monitor.metrics import ServingMetrics

access_log = logging.getLogger("frugalml.access")
HEADER = b"x-request-id"


def _incoming_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    for key, value in headers:
        if key == HEADER:
            text = value.decode("latin-1")
            # Echoed into logs and headers: accept only short, printable ids.
            if 0 < len(text) <= 128 and text.isprintable() and text.isascii():
                return text
    return None


class RequestContext:
    def __init__(self, app, metrics: ServingMetrics, log_requests: bool = True):
        self.app = app
        self.metrics = metrics
        self.log_requests = log_requests

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _incoming_id(scope["headers"]) or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500

        async def send_with_id(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (HEADER, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            model = state.get("model")
            if model is not None:
                route = state.get("route", scope["path"])
                self.metrics.requests.labels(model, route, str(status)).inc()
                self.metrics.latency.labels(model, route).observe(seconds)
            if self.log_requests and access_log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                record = {
                    "ts": round(time.time(), 3),
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "ms": round(seconds * 1000, 2),
                    "model": model,
                    "client": f"{client[0]}:{client[1]}" if client else None,
                }
                if "drift" in state:  # the drift features of the texts answered (monitor/window.py)
                    record["drift"] = state["drift"]()
                access_log.info(json.dumps(record))
