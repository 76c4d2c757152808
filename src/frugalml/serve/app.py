"""ASGI app: `POST /v1/predict`, health, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from frugalml.monitor.metrics import ServingMetrics
from frugalml.runtime.predictor import Predictor, top_predictions


class PredictRequest(BaseModel):
    inputs: list[str] = Field(min_length=1, max_length=256, description="Texts to classify.")


class LabelScore(BaseModel):
    label: str
    score: float


class PredictResponse(BaseModel):
    model: str
    predictions: list[LabelScore]


def create_app(predictor: Predictor, name: str | None = None) -> FastAPI:
    """An app serving one loaded predictor; ready once it has been warmed up."""
    model_name = name or (predictor.bundle.name if predictor.bundle else "model")
    metrics = ServingMetrics()
    state = {"ready": False}
    lock = asyncio.Lock()  # one batch at a time: the model already uses every core

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(predictor.warmup)
        bundle = predictor.bundle
        if bundle is not None:
            metrics.model_info.labels(
                model_name, bundle.id, bundle.format, bundle.precision, bundle.method
            ).set(1)
        state["ready"] = True
        yield
        state["ready"] = False

    app = FastAPI(title="frugalml", lifespan=lifespan)

    @app.post("/v1/predict", response_model=PredictResponse)
    async def predict(body: PredictRequest) -> PredictResponse:
        started = time.perf_counter()
        metrics.in_flight.labels(model_name).inc()
        try:
            async with lock:
                begun = time.perf_counter()
                probabilities = await run_in_threadpool(predictor.predict_proba, body.inputs)
                metrics.inference.labels(model_name).observe(time.perf_counter() - begun)
                metrics.batch_size.labels(model_name).observe(len(body.inputs))
        finally:
            metrics.in_flight.labels(model_name).dec()
        predictions = top_predictions(predictor.labels, probabilities)
        metrics.requests.labels(model_name, "/v1/predict", "200").inc()
        metrics.latency.labels(model_name, "/v1/predict").observe(time.perf_counter() - started)
        return PredictResponse(
            model=model_name,
            predictions=[LabelScore(label=p.label, score=p.score) for p in predictions],
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        if not state["ready"]:
            raise HTTPException(status_code=503, detail="model not loaded yet")
        return {"status": "ready"}

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
