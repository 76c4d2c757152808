"""Request plumbing shared by the v1 and v2 routes: bounded body reads, parsing, inference calls."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import numpy as np
from fastapi import Header, Request, Response
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from frugalml.client import MAX_DEADLINE_S
from frugalml.serve.batcher import ClientGone, DeadlineExceeded, Overloaded
from frugalml.serve.catalog import ServedModel
from frugalml.serve.config import ServeConfig
from frugalml.serve.errors import ApiError, invalid_body
from frugalml.serve.lifecycle import Lifecycle

TIMEOUT_HEADER = "X-Request-Timeout"
JSON_MEDIA_TYPE = "application/json"  # the inference routes' body type (v2 also takes binary)
MAX_TIMEOUT_S = MAX_DEADLINE_S


def timeout_header(server_timeout_s: float):
    """The `X-Request-Timeout` parameter of a FastAPI route (and of its OpenAPI entry).

    The header is optional, and a number when sent: annotate the parameter `float`, not
    `float | None`, so that its OpenAPI schema is not nullable (an absent header still gives None).
    """
    return Header(
        None,
        alias=TIMEOUT_HEADER,
        gt=0,
        le=MAX_TIMEOUT_S,
        description=f"Deadline in seconds (at most the server's {server_timeout_s:g} s).",
    )


def parse_timeout(value: str | None) -> float | None:
    """`X-Request-Timeout` read by hand, as `timeout_header` declares it (routes outside FastAPI)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= MAX_TIMEOUT_S:  # also refuses nan
        raise ApiError(
            422, f"header {TIMEOUT_HEADER}: a deadline in seconds, > 0 and <= {MAX_TIMEOUT_S}; got {value!r}"
        )
    return seconds


def json_response(payload: dict, status: int = 200) -> Response:
    # Handlers build plain dicts: skipping FastAPI's response-model pass saves time per request.
    return Response(
        json.dumps(payload, separators=(",", ":")), status_code=status, media_type="application/json"
    )


def body_schema(model: type[BaseModel], config: ServeConfig) -> dict:
    """`openapi_extra` declaring `model` as the JSON request body (parsed by `parse_body`)."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "requestBody": {
            "required": True,
            "description": f"At most {config.max_body_bytes} bytes (413 beyond).",
            "content": {"application/json": {"schema": ref}},
        }
    }


@contextmanager
def answered_when_drain_ends(lifecycle: Lifecycle) -> Iterator[None]:
    """uvicorn cancels what still runs when the drain (--drain) runs out and would answer a
    plain-text 500: the request gets a JSON 503 instead, which clients retry."""
    try:
        yield
    except asyncio.CancelledError:
        if not lifecycle.draining:
            raise
        asyncio.current_task().uncancel()  # type: ignore[union-attr]
        raise ApiError(
            503,
            "server shut down before this request was answered; retry",
            headers={"Retry-After": "1", "Connection": "close"},
        ) from None


def require_json(request: Request) -> None:
    """415 unless the body is JSON no web page could have posted across sites. A browser posts a
    form or plain text to another site without asking it first (no CORS preflight), but never a
    JSON content type. A body with no declared type is taken as JSON from clients that are no
    browser (tritonclient declares none), told apart by the `Origin` header browsers send with
    every POST."""
    declared = request.headers.get("content-type")
    if declared is None and "origin" not in request.headers:
        return
    if (declared or "").partition(";")[0].strip().lower() != JSON_MEDIA_TYPE:
        given = repr(declared[:100]) if declared is not None else "none"
        raise ApiError(415, f"send the body as Content-Type: {JSON_MEDIA_TYPE} (got {given})")


async def read_body(
    request: Request, config: ServeConfig, lifecycle: Lifecycle, *, any_type: bool = False
) -> bytes:
    """The body, declared JSON unless `any_type`, within `max_body_bytes` and within `timeout_s` (a
    client that sends part of a body and stalls would otherwise hold its connection open for good).
    `any_type` is for requests whose own headers already need a CORS preflight."""
    if not any_type:
        require_json(request)
    limit = config.max_body_bytes
    assert limit is not None, "create_app settles the body limit"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"body is {int(declared)} bytes; the limit is {limit}")
    chunks, size = [], 0
    try:
        with answered_when_drain_ends(lifecycle):
            async with asyncio.timeout(config.timeout_s):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise ApiError(413, f"body is larger than the limit of {limit} bytes")
                    chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(499, "client closed the request") from None
    except TimeoutError:
        raise ApiError(
            408, f"body not received within {config.timeout_s:g} s", headers={"Connection": "close"}
        ) from None
    return b"".join(chunks)


def parse_body(model: type[BaseModel], raw: bytes):
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid_body(exc, raw) from None


async def _disconnect(request: Request) -> None:
    # Once the body is read, the next ASGI message can only be the client disconnecting.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def infer(
    request: Request,
    model: ServedModel,
    texts: Sequence[Any],
    config: ServeConfig,
    lifecycle: Lifecycle,
    timeout: float | None,
) -> np.ndarray:
    """Run `texts` (inputs of the model's task: texts or images) through `model`'s batcher;
    every way it can fail becomes an ApiError."""
    if lifecycle.draining:
        raise ApiError(503, "server is shutting down", headers={"Retry-After": "1", "Connection": "close"})
    if not model.ready:
        raise ApiError(503, f"model {model.name!r} is not ready yet", headers={"Retry-After": "1"})
    budget = min(timeout, config.timeout_s) if timeout else config.timeout_s
    gone = asyncio.ensure_future(_disconnect(request))
    try:
        with answered_when_drain_ends(lifecycle):
            probabilities = await model.batcher.predict(texts, budget, gone)
    except Overloaded as exc:
        raise ApiError(
            503, f"server overloaded: {exc}", headers={"Retry-After": str(exc.retry_after)}
        ) from None
    except DeadlineExceeded:
        raise ApiError(504, f"no answer within the deadline of {budget:g} s") from None
    except ClientGone:
        raise ApiError(499, "client closed the request") from None
    finally:
        gone.cancel()
    if model.drift is not None:
        model.drift.observe(texts, probabilities)
        # Computed only if the access log writes this request's line (serve/access.py).
        request.state.drift = partial(model.drift.request_features, texts, probabilities)
    return probabilities
