"""`POST /v1/predict`: texts in, top label and its probability out."""

from fastapi import FastAPI, Header, Request, Response

from frugalml.runtime.predictor import top_predictions
from frugalml.serve.catalog import Catalog
from frugalml.serve.config import ServeConfig
from frugalml.serve.http import TIMEOUT_HEADER, body_schema, infer, json_response, parse_body, read_body
from frugalml.serve.lifecycle import Lifecycle
from frugalml.serve.schemas import PredictResponse, RequestModels

ROUTE = "/v1/predict"


def add_v1_routes(
    app: FastAPI,
    catalog: Catalog,
    config: ServeConfig,
    lifecycle: Lifecycle,
    models: RequestModels,
    guard: list,
    errors: dict,
) -> None:
    @app.post(
        ROUTE,
        response_model=PredictResponse,
        responses=errors,
        dependencies=guard,
        openapi_extra=body_schema(models.predict),
        tags=["v1"],
        summary="Classify texts",
    )
    async def predict(
        request: Request,
        timeout: float | None = Header(
            None,
            alias=TIMEOUT_HEADER,
            gt=0,
            le=3600,
            description="Deadline in seconds (at most the server's).",
        ),
    ) -> Response:
        request.state.route = ROUTE
        request.state.model = catalog.default.name
        body = parse_body(models.predict, await read_body(request, config.max_body_bytes))
        served = catalog.get(body.model, body.version)
        request.state.model = served.name
        probabilities = await infer(request, served, body.inputs, config, lifecycle, timeout)
        predictions = top_predictions(served.predictor.labels, probabilities)
        return json_response(
            {
                "model": served.name,
                "version": served.version,
                "predictions": [{"label": p.label, "score": p.score} for p in predictions],
            }
        )
