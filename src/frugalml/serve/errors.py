"""Every error answer is JSON `{"error": "<what was wrong>"}` (the Open Inference Protocol shape)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

log = logging.getLogger("frugalml.serve")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, detail=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.detail = detail


def invalid_body(exc: ValidationError, raw: bytes) -> ApiError:
    """400 for bytes that are not JSON (or not UTF-8), 422 for JSON of the wrong shape."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    if any(e["type"] == "json_invalid" for e in errors):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            return ApiError(400, f"body is not valid UTF-8 (byte {bad.start})")
        return ApiError(400, f"body is not valid JSON: {errors[0]['msg'].removeprefix('Invalid JSON: ')}")
    return ApiError(422, "; ".join(_describe(e) for e in errors[:5]), detail=errors[:20])


def _describe(error: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "body"
    return f"{where}: {error['msg']}"


def install_error_handlers(app: FastAPI) -> None:
    def answer(status: int, message: str, headers=None, detail=None) -> JSONResponse:
        body = {"error": message} if detail is None else {"error": message, "detail": detail}
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return answer(exc.status, exc.message, exc.headers, exc.detail)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return answer(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def request_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: e[k] for k in ("type", "loc", "msg") if k in e} for e in exc.errors()]
        return answer(422, "; ".join(_describe(e) for e in errors[:5]), detail=errors[:20])

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        request_id = request.scope.get("state", {}).get("request_id", "?")
        log.exception("request %s failed", request_id)
        return answer(500, f"internal error (request id {request_id}); see the server log")
