"""Python client for a frugalml server (sync `Client`, async `AsyncClient`).

Both retry 503 answers (queue full, server draining) and connection failures with exponential
back-off, honouring the server's Retry-After, and raise one exception type per failure kind:

    with Client("http://127.0.0.1:8000", api_key="...") as client:
        client.predict(["where is my card?"])   # -> [Prediction(label="card_arrival", score=0.93)]
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

import httpx

MAX_DEADLINE_S = 3600  # the longest X-Request-Timeout a frugalml server accepts


class ClientError(Exception):
    """Base of every error this client raises; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class AuthError(ClientError):
    """401: missing or wrong API key."""


class BadRequest(ClientError):
    """4xx: the request was refused (malformed, too large, unknown model); retrying will not help."""


class Overloaded(ClientError):
    """503 still, after every retry: the server's queue stayed full or it is shutting down."""


class DeadlineExceeded(ClientError):
    """504, or no answer within the client's own timeout."""


class ServerError(ClientError):
    """5xx other than 503/504: a bug or failure on the server side."""


class Unreachable(ClientError):
    """No connection could be made, after every retry."""


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float


@dataclass(frozen=True)
class _Retry:
    retries: int
    backoff: float
    max_backoff: float

    def delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds before retry number `attempt` (0-based): Retry-After if given, else back-off."""
        # Jitter, so that many clients told to wait together do not come back in lock-step:
        # up to half as long again past Retry-After (all within max_backoff); full jitter for
        # the back-off.
        if retry_after is not None and retry_after.replace(".", "", 1).isdigit():
            return min(float(retry_after), self.max_backoff / 1.5) * random.uniform(1, 1.5)
        return random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    return body.get("error", str(body)) if isinstance(body, dict) else str(body)


def _raise_for(response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    message = f"{status}: {_error_message(response)}"
    if status == 401:
        raise AuthError(message, status)
    if status == 503:
        raise Overloaded(message, status)
    if status == 504:
        raise DeadlineExceeded(message, status)
    if status < 500:
        raise BadRequest(message, status)
    raise ServerError(message, status)


def _infer_path(model: str, version: str | None) -> str:
    """The v2 infer route; names are escaped, so a space or `?` in one stays part of it."""
    path = f"/v2/models/{quote(model, safe='')}"
    return path + (f"/versions/{quote(version, safe='')}" if version else "") + "/infer"


def _predict_body(texts: Sequence[str], model: str | None, version: str | None) -> dict:
    if isinstance(texts, str):
        raise TypeError("predict takes a list of texts, not one string")
    body: dict = {"inputs": list(texts)}
    if model is not None:
        body["model"] = model
    if version is not None:
        body["version"] = version
    return body


def _predictions(response: httpx.Response) -> list[Prediction]:
    return [Prediction(p["label"], p["score"]) for p in response.json()["predictions"]]


class _Base:
    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        timeout: float | None = 30.0,
        retries: int = 4,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
    ):
        self.url = url.rstrip("/")
        # The server gets the same deadline (within what it accepts), so it drops work nobody will
        # wait for; without a client timeout the server's own deadline applies.
        self.headers: dict[str, str | bytes] = {}
        if timeout is not None:
            self.headers["X-Request-Timeout"] = f"{min(timeout, MAX_DEADLINE_S):g}"
        # Trimmed, as the server trims its own (a secret file's newline): no header can carry it.
        api_key = (api_key or "").strip()
        if any(c in api_key for c in "\r\n\0"):
            raise ValueError("api_key holds a line break or NUL, which no HTTP header can carry")
        if api_key:
            # As UTF-8 bytes, which the server compares: httpx takes str headers in ASCII only.
            self.headers["Authorization"] = f"Bearer {api_key}".encode()
        self.timeout = timeout
        self.retry = _Retry(retries, backoff, max_backoff)


class Client(_Base):
    """Blocking client; use as a context manager or call `close()`."""

    def __init__(self, url: str, **options):
        super().__init__(url, **options)
        # httpx takes str and bytes values in one mapping (it normalises each); its stubs do not say so.
        self._http = httpx.Client(base_url=self.url, headers=self.headers, timeout=self.timeout)  # type: ignore[arg-type]

    def _send(self, method: str, path: str, **kwargs) -> httpx.Response:
        attempt = 0
        while True:
            last = attempt >= self.retry.retries
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TimeoutException as exc:
                raise DeadlineExceeded(f"no answer within {self.timeout} s ({exc})") from None
            except httpx.TransportError as exc:
                if last:
                    raise Unreachable(f"{self.url}: {exc}") from None
                time.sleep(self.retry.delay(attempt, None))
                attempt += 1
                continue
            if response.status_code != 503 or last:
                _raise_for(response)
                return response
            time.sleep(self.retry.delay(attempt, response.headers.get("retry-after")))
            attempt += 1

    def predict(
        self, texts: Sequence[str], model: str | None = None, version: str | None = None
    ) -> list[Prediction]:
        """Top label and probability per text, in input order."""
        return _predictions(self._send("POST", "/v1/predict", json=_predict_body(texts, model, version)))

    def infer(self, model: str, request: dict, version: str | None = None) -> dict:
        """An Open Inference Protocol v2 infer call; `request` is the v2 request body."""
        return self._send("POST", _infer_path(model, version), json=request).json()

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise Unreachable(f"{self.url} not ready within {timeout} s")
            time.sleep(0.1)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncClient(_Base):
    """asyncio client; use as an async context manager or await `aclose()`."""

    def __init__(self, url: str, **options):
        super().__init__(url, **options)
        # httpx takes str and bytes values in one mapping (it normalises each); its stubs do not say so.
        self._http = httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=self.timeout)  # type: ignore[arg-type]

    async def _send(self, method: str, path: str, **kwargs) -> httpx.Response:
        attempt = 0
        while True:
            last = attempt >= self.retry.retries
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TimeoutException as exc:
                raise DeadlineExceeded(f"no answer within {self.timeout} s ({exc})") from None
            except httpx.TransportError as exc:
                if last:
                    raise Unreachable(f"{self.url}: {exc}") from None
                await asyncio.sleep(self.retry.delay(attempt, None))
                attempt += 1
                continue
            if response.status_code != 503 or last:
                _raise_for(response)
                return response
            await asyncio.sleep(self.retry.delay(attempt, response.headers.get("retry-after")))
            attempt += 1

    async def predict(
        self, texts: Sequence[str], model: str | None = None, version: str | None = None
    ) -> list[Prediction]:
        response = await self._send("POST", "/v1/predict", json=_predict_body(texts, model, version))
        return _predictions(response)

    async def infer(self, model: str, request: dict, version: str | None = None) -> dict:
        return (await self._send("POST", _infer_path(model, version), json=request)).json()

    async def ready(self) -> bool:
        try:
            return (await self._http.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
