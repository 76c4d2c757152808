"""Serving settings: batching, queue, deadlines, request and connection limits, the optional API key."""

from __future__ import annotations

import math
from dataclasses import dataclass

TEXT_BODY_BYTES = 1 << 20
IMAGE_BODY_SLACK = 64 << 10  # the JSON around an image, and a few small images beside it


@dataclass(frozen=True)
class ServeConfig:
    max_batch_size: int = 32  # texts per model call
    max_wait_ms: float = 10.0  # longest a queued text waits for companions (never when idle)
    max_queue: int = 1024  # texts waiting; beyond it requests get 503 + Retry-After
    parallel: int = 1  # model calls at once: inference threads, shared by every served model
    timeout_s: float = 30.0  # per-request deadline (clients may ask for less); past it, 504
    max_body_bytes: int | None = None  # 413 beyond; None: body_limit() by the tasks served
    max_items: int = 256  # texts per request; 422 beyond
    max_text_chars: int = 10_000  # characters per text; 422 beyond
    max_image_bytes: int = 8 << 20  # an encoded image (base64 decoded, upload, BYTES); 413 beyond
    max_image_pixels: int = 4096 * 4096  # width x height of one image, before decoding; 413 beyond
    header_timeout_s: float = 10.0  # a request's headers arrive within this of the connection idling
    max_idle_per_client: int = 64  # connections waiting for a request, per client address
    api_key: str | None = None  # when set, inference routes need `Authorization: Bearer <key>`
    access_log: bool = True  # one JSON line per request on the `frugalml.access` logger

    def __post_init__(self) -> None:
        for name in (
            "max_batch_size",
            "max_queue",
            "parallel",
            "max_items",
            "max_text_chars",
            "max_image_bytes",
            "max_image_pixels",
            "max_idle_per_client",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_body_bytes is not None and self.max_body_bytes < 1:
            raise ValueError("max_body_bytes must be at least 1")
        if self.max_items > self.max_queue:
            raise ValueError("max_items must not exceed max_queue (such a request could never be queued)")
        if self.max_wait_ms < 0 or self.timeout_s <= 0:
            raise ValueError("max_wait_ms must be >= 0 and timeout_s > 0")
        if self.header_timeout_s <= 0:
            raise ValueError("header_timeout_s must be > 0")
        if self.api_key is not None:
            # A header cannot carry a key's surrounding whitespace (say, a secret file's newline).
            object.__setattr__(self, "api_key", self.api_key.strip())
            if not self.api_key:
                # Fail closed: an empty secret must not quietly open the inference routes.
                raise ValueError("api_key is empty; leave it unset to serve without a key")

    def body_limit(self, images: bool) -> int:
        """`max_body_bytes`, or when it is left open 1 MiB, and with image models served room for
        one image of `max_image_bytes` sent as base64 in JSON (so that limit is the one that bites)."""
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        return (
            max(TEXT_BODY_BYTES, 4 * math.ceil(self.max_image_bytes / 3) + IMAGE_BODY_SLACK)
            if images
            else TEXT_BODY_BYTES
        )
