"""`POST /v1/predict`: texts or images in, top label and its probability out.

Images come as `{"b64": ...}` items of `inputs`, or as the files of a multipart/form-data upload
(with optional `model` and `version` fields); serve/images.py decodes them.

The hot path, so it is served by a plain ASGI handler instead of a FastAPI endpoint: Python on the
event loop holds the GIL that the inference threads need between model calls, and FastAPI's
per-request dependency solving and request wrapping are work this route can skip (docs/serving.md).
It still runs inside the app's middleware (request ids, access log, request metrics) and exception
handlers (an ApiError becomes a JSON error); a FastAPI route that is never mounted describes it in
/openapi.json.
"""

import asyncio
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Response
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.routing import Route

from frugalml.bundle import IMAGE_TASK
from frugalml.runtime.predictor import top_predictions
from frugalml.serve.auth import check_api_key
from frugalml.serve.catalog import Catalog, ServedModel
from frugalml.serve.config import ServeConfig
from frugalml.serve.errors import ApiError
from frugalml.serve.http import (
    TIMEOUT_HEADER,
    body_schema,
    infer,
    json_response,
    parse_body,
    parse_timeout,
    read_body,
    timeout_header,
)
from frugalml.serve.images import MULTIPART, decode_base64, decode_encoded, read_upload
from frugalml.serve.lifecycle import Lifecycle
from frugalml.serve.schemas import Base64Image, PredictResponse, RequestModels

ROUTE = "/v1/predict"


class PredictHandler:
    """The ASGI app behind POST /v1/predict."""

    def __init__(
        self,
        catalog: Catalog,
        config: ServeConfig,
        lifecycle: Lifecycle,
        models: RequestModels,
    ):
        self.catalog, self.config, self.lifecycle, self.models = catalog, config, lifecycle, models

    async def __call__(self, scope, receive, send) -> None:
        request = Request(scope, receive)
        # Before the route is named: like the v2 routes, unauthorized requests count for no model.
        check_api_key(request.headers.get("authorization"), self.config.api_key)
        request.state.route = ROUTE
        request.state.model = ""  # until the model is known (as on v2)
        timeout = parse_timeout(request.headers.get(TIMEOUT_HEADER))
        declared = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if declared == MULTIPART and self.models.images:  # else refused as no JSON (415)
            # A web page can post a form to another site without asking it first; browsers send
            # `Origin` with it, upload tools do not.
            if "origin" in request.headers:
                raise ApiError(403, "multipart uploads from web pages are refused; send JSON")
            raw = await read_body(request, self.config, self.lifecycle, any_type=True)
            files, fields = await read_upload(request.headers, raw, self.config)
            served = self.catalog.get(fields.get("model"), fields.get("version"))
            request.state.model = served.name
            if served.task != IMAGE_TASK:
                raise ApiError(422, f"model {served.name!r} classifies texts; send them as JSON")
            inputs: Sequence[Any] = await asyncio.to_thread(
                decode_encoded, files, served.image_input[0], self.config
            )
        else:
            body = parse_body(self.models.predict, await read_body(request, self.config, self.lifecycle))
            served = self.catalog.get(body.model, body.version)
            request.state.model = served.name
            inputs = await self._inputs(served, body.inputs)
        probabilities = await infer(request, served, inputs, self.config, self.lifecycle, timeout)
        predictions = top_predictions(served.predictor.labels, probabilities)
        response = json_response(
            {
                "model": served.name,
                "version": served.version,
                "predictions": [{"label": p.label, "score": p.score} for p in predictions],
            }
        )
        await response(scope, receive, send)

    async def _inputs(self, served: ServedModel, items: list) -> Sequence[Any]:
        """The JSON inputs as the model's task takes them: texts, or images decoded from base64."""
        if served.task != IMAGE_TASK:
            if not all(isinstance(item, str) for item in items):
                raise ApiError(422, f"model {served.name!r} classifies texts; send strings, not images")
            return items
        if not all(isinstance(item, Base64Image) for item in items):
            raise ApiError(
                422,
                f'model {served.name!r} classifies images; send {{"b64": ...}} items or a multipart upload',
            )
        encoded = [item.b64 for item in items]
        return await asyncio.to_thread(decode_base64, encoded, served.image_input[0], self.config)


def add_v1_routes(
    app: FastAPI,
    catalog: Catalog,
    config: ServeConfig,
    lifecycle: Lifecycle,
    models: RequestModels,
    guard: list,
    errors: dict,
) -> APIRoute:
    """Mount the v1 handler; return the route that documents it (for the OpenAPI document)."""
    app.router.routes.append(
        Route(ROUTE, PredictHandler(catalog, config, lifecycle, models), methods=["POST"])
    )

    async def predict(timeout: float = timeout_header(config.timeout_s)) -> Response:
        raise NotImplementedError("documentation only: PredictHandler serves this route")

    return APIRoute(
        ROUTE,
        predict,
        methods=["POST"],
        response_model=PredictResponse,
        responses=errors,
        dependencies=guard,
        openapi_extra=body_schema(models.predict, config),
        tags=["v1"],
        summary="Classify texts or images",
    )
