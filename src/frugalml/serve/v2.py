"""Open Inference Protocol v2 (KServe / Triton REST): health, metadata, readiness and infer.

A text classifier takes one BYTES input of shape [n] (or [n, 1]) and returns `label` (BYTES [n]) and
`score` (FP32 [n]); `probabilities` (FP32 [n, labels]) comes back when asked for in `outputs`.
Versions are bundle ids; routes without a version use the model's first one.
"""

from enum import Enum
from typing import Any

from fastapi import Depends, FastAPI, Request, Response

from frugalml import __version__
from frugalml.serve.catalog import Catalog, ServedModel
from frugalml.serve.config import ServeConfig
from frugalml.serve.http import body_schema, infer, json_response, parse_body, read_body, timeout_header
from frugalml.serve.lifecycle import Lifecycle
from frugalml.serve.schemas import (
    INPUT_NAME,
    InferenceResponse,
    Live,
    ModelMetadata,
    ModelReady,
    Ready,
    RequestModels,
    ServerMetadata,
)

MODEL = "/v2/models/{name}"
VERSION = "/v2/models/{name}/versions/{version}"


def _metadata(model: ServedModel, versions: list[str]) -> dict:
    n_labels = len(model.predictor.labels)
    return {
        "name": model.name,
        "versions": versions,
        "platform": model.platform,
        "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "score", "datatype": "FP32", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, n_labels]},
        ],
    }


def add_v2_routes(
    app: FastAPI,
    catalog: Catalog,
    config: ServeConfig,
    lifecycle: Lifecycle,
    models: RequestModels,
    guard: list,
    errors: dict,
) -> None:
    tags: list[str | Enum] = ["v2 (Open Inference Protocol)"]

    @app.get("/v2", response_model=ServerMetadata, tags=tags, summary="Server metadata")
    async def server_metadata() -> dict:
        return {"name": "frugalml", "version": __version__, "extensions": []}

    @app.get("/v2/health/live", response_model=Live, tags=tags, summary="Liveness")
    async def live() -> dict:
        return {"live": True}

    @app.get("/v2/health/ready", response_model=Ready, responses={503: {"model": Ready}}, tags=tags)
    async def ready() -> Response:
        return json_response({"ready": lifecycle.ready}, 200 if lifecycle.ready else 503)

    def model_ready(name: str, version: str | None) -> Response:
        # Open without the API key: an unknown name or version is refused without listing the others.
        model = catalog.get(name, version, list_known=False)
        is_ready = model.ready and lifecycle.ready
        return json_response({"name": name, "ready": is_ready}, 200 if is_ready else 503)

    def metadata(name: str, version: str | None) -> dict:
        model = catalog.get(name, version)
        versions = [m.version for m in catalog.versions(name)] if version is None else [version]
        return _metadata(model, versions)

    ready_doc: dict[str, Any] = {
        "response_model": ModelReady,
        "responses": {404: errors[404], 503: {"model": ModelReady}},
    }
    meta_doc: dict[str, Any] = {
        "response_model": ModelMetadata,
        "responses": {**errors},
        "dependencies": guard,
    }

    @app.get(MODEL + "/ready", tags=tags, summary="Model readiness", **ready_doc)
    async def ready_default(name: str) -> Response:
        return model_ready(name, None)

    @app.get(VERSION + "/ready", tags=tags, summary="Model version readiness", **ready_doc)
    async def ready_version(name: str, version: str) -> Response:
        return model_ready(name, version)

    @app.get(MODEL, tags=tags, summary="Model metadata", **meta_doc)
    async def metadata_default(name: str) -> dict:
        return metadata(name, None)

    @app.get(VERSION, tags=tags, summary="Model version metadata", **meta_doc)
    async def metadata_version(name: str, version: str) -> dict:
        return metadata(name, version)

    async def counted(request: Request) -> None:  # async: no thread-pool hop per request
        # Past the API key check (the dependency before), a request is inference traffic: it
        # counts under model "" until its model is known, even if its header fails validation.
        request.state.route = MODEL + "/infer"
        request.state.model = ""

    async def run(request: Request, name: str, version: str | None, timeout: float | None) -> Response:
        model = catalog.get(name, version)
        request.state.model = model.name
        body = parse_body(models.infer, await read_body(request, config, lifecycle))
        tensor = body.inputs[0]
        wanted = [o.name for o in body.outputs] if body.outputs else ["label", "score"]
        probabilities = await infer(request, model, tensor.data, config, lifecycle, timeout)
        n = len(tensor.data)
        best = probabilities.argmax(axis=1)
        labels = model.predictor.labels
        tensors = {
            "label": lambda: {"datatype": "BYTES", "shape": [n], "data": [labels[i] for i in best]},
            "score": lambda: {
                "datatype": "FP32",
                "shape": [n],
                "data": probabilities[range(n), best].tolist(),
            },
            "probabilities": lambda: {
                "datatype": "FP32",
                "shape": [n, len(labels)],
                "data": probabilities.ravel().tolist(),
            },
        }
        return json_response(
            {
                "model_name": model.name,
                "model_version": model.version,
                "id": body.id,
                "outputs": [{"name": o, **tensors[o]()} for o in dict.fromkeys(wanted)],
            }
        )

    infer_doc: dict[str, Any] = {
        "response_model": InferenceResponse,
        "responses": errors,
        "dependencies": [*guard, Depends(counted)],
        "openapi_extra": body_schema(models.infer, config),
        "tags": tags,
    }

    @app.post(MODEL + "/infer", summary="Infer", **infer_doc)
    async def infer_default(
        request: Request,
        name: str,
        timeout: float = timeout_header(config.timeout_s),
    ) -> Response:
        return await run(request, name, None, timeout)

    @app.post(VERSION + "/infer", summary="Infer with a model version", **infer_doc)
    async def infer_version(
        request: Request,
        name: str,
        version: str,
        timeout: float = timeout_header(config.timeout_s),
    ) -> Response:
        return await run(request, name, version, timeout)
