"""`GET /v1/drift`: each monitored model's drift window, scores and features (monitor/window.py).

What `frugalml monitor report --url` reads. It returns texts' features (never the texts), behind
the API key like the inference routes.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from frugalml.serve.catalog import Catalog

ROUTE = "/v1/drift"


def add_drift_route(app: FastAPI, catalog: Catalog, guard: list) -> None:
    @app.get(ROUTE, dependencies=guard, tags=["v1"], summary="Drift of the recent window")
    async def drift() -> dict[str, Any]:
        models = {m.name: m.drift.snapshot() for m in catalog if m.drift is not None}
        return {"models": models}
