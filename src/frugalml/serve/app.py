"""The ASGI app: v1 and Open Inference Protocol v2 routes over one or more models, plus health,
readiness, Prometheus metrics and an OpenAPI document with the request and response schemas."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import cast

from fastapi import FastAPI, Response
from fastapi.openapi.utils import get_openapi
from prometheus_client import CollectorRegistry

from frugalml import __version__
from frugalml.bundle import IMAGE_TASK
from frugalml.monitor.metrics import ServingMetrics
from frugalml.runtime.predictor import Predictor
from frugalml.serve.access import RequestContext
from frugalml.serve.auth import api_key_dependencies
from frugalml.serve.catalog import Catalog
from frugalml.serve.config import ServeConfig
from frugalml.serve.drift import add_drift_route
from frugalml.serve.errors import install_error_handlers
from frugalml.serve.http import json_response
from frugalml.serve.lifecycle import Lifecycle
from frugalml.serve.schemas import ErrorResponse, request_models
from frugalml.serve.v1 import ROUTE as V1_ROUTE
from frugalml.serve.v1 import add_v1_routes
from frugalml.serve.v2 import MODEL as V2_MODEL
from frugalml.serve.v2 import add_v2_routes

ERROR_STATUSES = {
    400: "Malformed JSON or body not UTF-8",
    401: "Missing or wrong API key",
    404: "Unknown model or version",
    408: "Body not received within the server's timeout",
    413: "Body, or an image in it, larger than the limit (bytes or pixels)",
    415: "Body not declared as Content-Type: application/json (or multipart/form-data for images)",
    422: "Body of the wrong shape, over the text or item limits, or an image that cannot be decoded",
    503: "Queue full or shutting down (see Retry-After)",
    504: "Deadline passed",
}


def _named(models: Predictor | Sequence[Predictor | tuple[str, Predictor]], name: str | None):
    # One predictor is whatever has predict_proba (Predictor is a Protocol, for type checks only).
    items = [cast(Predictor, models)] if hasattr(models, "predict_proba") else list(models)
    named = []
    for item in items:
        if isinstance(item, tuple):
            named.append(item)
        else:
            bundle = item.bundle
            named.append((name or (bundle.name if bundle else "model"), item))
    return named


def create_app(
    models: Predictor | Sequence[Predictor | tuple[str, Predictor]],
    config: ServeConfig | None = None,
    name: str | None = None,
) -> FastAPI:
    """An app serving `models` (predictors, or (name, predictor) pairs).

    Bundles that share a name become versions of one model. The app is ready once every model
    has been warmed up; model calls run on `config.parallel` dedicated inference threads.
    """
    given = config or ServeConfig()
    metrics = ServingMetrics()
    catalog = Catalog(_named(models, name), metrics, given)
    images = any(model.task == IMAGE_TASK for model in catalog)
    settled = replace(given, max_body_bytes=given.body_limit(images))
    lifecycle = Lifecycle()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        executor = ThreadPoolExecutor(max_workers=settled.parallel, thread_name_prefix="frugalml-inference")
        loop = asyncio.get_running_loop()
        for model in catalog:
            metrics.ready.labels(model.name, model.version).set(0)
            metrics.queue_limit.labels(model.name).inc(settled.max_queue)  # versions queue apart
            metrics.start_at_zero(model.name, (V1_ROUTE, V2_MODEL + "/infer"))
        for model in catalog:
            await loop.run_in_executor(executor, model.predictor.warmup)
            bundle = model.predictor.bundle
            if bundle is not None:
                metrics.model_info.labels(
                    model.name, model.version, bundle.id, bundle.format, bundle.precision, bundle.method
                ).set(1)
            model.batcher.start(executor)
            model.ready = True
            metrics.ready.labels(model.name, model.version).set(1)
        lifecycle.started = True
        app.state.loop = loop
        lifecycle.drain_on_signals()
        try:
            yield
        finally:
            lifecycle.draining = True
            for model in catalog:
                metrics.ready.labels(model.name, model.version).set(0)
            for model in catalog:
                await model.batcher.close()
                model.ready = False
            executor.shutdown(wait=False)
            ServingMetrics.process_exited(os.getpid())

    app = FastAPI(
        title="frugalml",
        version=__version__,
        summary="Text classification: a simple v1 API and the Open Inference Protocol v2.",
        lifespan=lifespan,
        # /metrics (Prometheus) is the server's telemetry. FastAPI's native OpenTelemetry would
        # otherwise look up three global providers on every request of the hot path.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.catalog = catalog
    app.state.config = settled
    app.state.lifecycle = lifecycle
    app.state.metrics = metrics
    install_error_handlers(app)
    schemas = request_models(settled, images=images)
    errors = {
        status: {"model": ErrorResponse, "description": text} for status, text in ERROR_STATUSES.items()
    }
    guard = api_key_dependencies(settled.api_key)
    v1_document = add_v1_routes(app, catalog, settled, lifecycle, schemas, guard, errors)
    add_v2_routes(app, catalog, settled, lifecycle, schemas, guard, errors)
    add_drift_route(app, catalog, guard)

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Readiness", responses={503: {"model": ErrorResponse}})
    async def readyz() -> Response:
        if lifecycle.ready:
            return json_response({"status": "ready"})
        reason = "shutting down" if lifecycle.draining else "models not loaded yet"
        return json_response({"error": reason}, 503)

    def refresh_drift() -> None:
        for model in catalog:  # drift gauges up to date with the last request
            if model.drift is not None:
                model.drift.refresh()

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        refresh_drift()
        return Response(metrics.exposition(), media_type=metrics.content_type)

    def alert_registry() -> CollectorRegistry:
        """What /metrics shows, for the embedded alert evaluator's thread: the drift windows are
        refreshed on the event loop first, as a scrape refreshes them."""
        loop = getattr(app.state, "loop", None)
        if loop is not None and loop.is_running():
            refreshed = asyncio.run_coroutine_threadsafe(refresh_on_loop(), loop)
            with contextlib.suppress(TimeoutError):  # a busy loop: read the gauges as they are
                refreshed.result(timeout=5)
        return metrics.collecting_registry()

    async def refresh_on_loop() -> None:
        refresh_drift()

    app.state.alert_registry = alert_registry

    def openapi() -> dict:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=[v1_document, *app.routes]
            )
            components = document.setdefault("components", {}).setdefault("schemas", {})
            for model in (schemas.predict, schemas.infer):
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(schema.pop("$defs", {}))
                components[model.__name__] = schema
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema
    app.add_middleware(RequestContext, metrics=metrics, log_requests=settled.access_log)
    return app
