"""Open Inference Protocol v2 (KServe / Triton REST): health, metadata, readiness and infer.

A text classifier takes one BYTES input of shape [n] (or [n, 1], its data flat or nested); an image
classifier one input `image`: UINT8 or FP32 pixels [n, H, W(, C)], or BYTES of encoded images
(serve/images.py). Both return
`label` (BYTES [n]), `score` (FP32 [n]) and `probabilities` (FP32 [n, labels]): those asked for in
`outputs`, else all three. Tensors travel as JSON or, with the binary tensor data extension
(`binary.py`), as raw bytes after a JSON header. Versions are bundle ids; routes without a version
use the model's first one.
"""

import asyncio
from enum import Enum
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request, Response
from pydantic import BaseModel, ValidationError

from frugalml import __version__
from frugalml.bundle import IMAGE_TASK
from frugalml.serve import binary
from frugalml.serve.catalog import Catalog, ServedModel
from frugalml.serve.config import ServeConfig
from frugalml.serve.errors import ApiError, invalid_body
from frugalml.serve.http import body_schema, infer, json_response, parse_body, read_body, timeout_header
from frugalml.serve.images import tensor_images
from frugalml.serve.lifecycle import Lifecycle
from frugalml.serve.schemas import (
    IMAGE_INPUT,
    INPUT_NAME,
    V2_OUTPUTS,
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
    if model.task == IMAGE_TASK:
        channels, size = model.image_input
        inputs = [{"name": IMAGE_INPUT, "datatype": "UINT8", "shape": [-1, size, size, channels]}]
    else:
        inputs = [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}]
    return {
        "name": model.name,
        "versions": versions,
        "platform": model.platform,
        "inputs": inputs,
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "score", "datatype": "FP32", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, n_labels]},
        ],
    }


async def _request_body(
    request: Request, model: type[BaseModel], config: ServeConfig, lifecycle: Lifecycle, raw_data: bool
):
    """The validated request: JSON, or a JSON header and binary tensor data (kept as bytes with
    `raw_data`, for an image model)."""
    header_length = request.headers.get(binary.HEADER)
    # That header needs a CORS preflight, which the server never grants: any body type is safe.
    raw = await read_body(request, config, lifecycle, any_type=header_length is not None)
    if header_length is None:
        return parse_body(model, raw)
    header, data = binary.split_body(raw, header_length)
    try:
        return model.model_validate(binary.with_binary_inputs(header, data, raw=raw_data))
    except ValidationError as exc:
        raise invalid_body(exc, header) from None


def _timeout_parameter(parameters: dict | None) -> float | None:
    """The request's `timeout` parameter (microseconds, as Triton and tritonclient give it) in seconds."""
    value = (parameters or {}).get("timeout")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ApiError(422, f"parameters.timeout: a deadline in microseconds, an integer > 0; got {value!r}")
    return value / 1e6


def _sooner(first: float | None, second: float | None) -> float | None:
    given = [t for t in (first, second) if t is not None]
    return min(given) if given else None


def _response(payload: dict, tensors: list[tuple[dict, np.ndarray | list[str], bool]]) -> Response:
    """`payload` with its outputs: (tensor without data, data, binary?) each."""
    outputs, blobs = [], []
    for tensor, data, as_binary in tensors:
        if not as_binary:
            values = data.ravel().tolist() if isinstance(data, np.ndarray) else data
            outputs.append({**tensor, "data": values})
            continue
        blob = binary.encode_fp32(data) if isinstance(data, np.ndarray) else binary.encode_bytes(data)
        outputs.append({**tensor, "parameters": {"binary_data_size": len(blob)}})
        blobs.append(blob)
    payload["outputs"] = outputs
    return binary.binary_response(payload, blobs) if blobs else json_response(payload)


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
        return {"name": "frugalml", "version": __version__, "extensions": [binary.EXTENSION]}

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
        images = model.task == IMAGE_TASK
        body = await _request_body(
            request, models.image_infer if images else models.infer, config, lifecycle, images
        )
        if body.model_name not in (None, model.name):
            raise ApiError(422, f"model_name {body.model_name!r} is not the model {model.name!r} in the path")
        inputs = body.inputs[0].data
        if images:
            if body.inputs[0].name != IMAGE_INPUT:
                raise ApiError(422, f"the model's input is {IMAGE_INPUT!r}, not {body.inputs[0].name!r}")
            inputs = await asyncio.to_thread(tensor_images, body.inputs[0], model.image_input[0], config)
        timeout = _sooner(timeout, _timeout_parameter(body.parameters))
        probabilities = await infer(request, model, inputs, config, lifecycle, timeout)
        n = len(inputs)
        best = probabilities.argmax(axis=1)
        labels = model.predictor.labels
        # Each output as asked: its own `binary_data`, else the request's `binary_data_output`.
        every = (body.parameters or {}).get("binary_data_output") is True
        asked = {o.name: (o.parameters or {}).get("binary_data", every) is True for o in body.outputs or []}
        payload: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
        if body.id is not None:
            payload["id"] = body.id
        chosen: list[tuple[dict, np.ndarray | list[str], bool]] = []
        for name, as_binary in (asked or dict.fromkeys(V2_OUTPUTS, every)).items():
            data: np.ndarray | list[str]
            if name == "label":
                tensor, data = {"datatype": "BYTES", "shape": [n]}, [labels[i] for i in best]
            elif name == "score":
                tensor, data = {"datatype": "FP32", "shape": [n]}, probabilities[range(n), best]
            else:
                tensor, data = {"datatype": "FP32", "shape": [n, len(labels)]}, probabilities
            chosen.append(({"name": name, **tensor}, data, as_binary))
        return _response(payload, chosen)

    infer_doc: dict[str, Any] = {
        "response_model": InferenceResponse,
        "responses": {
            200: {
                "description": f"JSON; with binary outputs asked for, {binary.MEDIA_TYPE}: a JSON header "
                f"of {binary.HEADER} bytes, then each binary output's data",
                "content": {binary.MEDIA_TYPE: {}},
            },
            **errors,
        },
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
