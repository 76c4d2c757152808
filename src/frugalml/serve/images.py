"""Images in requests: base64 or uploaded files, and Open Inference Protocol tensors, decoded to
the uint8 HWC arrays an image model's predictor takes (it resizes them to the model's input).

Limits, each a clear JSON error: more than `max_items` images, 422; an encoded image of more than
`max_image_bytes`, or of more than `max_image_pixels` pixels (checked on its header, before it is
decoded), 413; data that is no image, 422.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from frugalml.data.images import ImageTooLarge, image_array, open_image
from frugalml.errors import DataError
from frugalml.serve.binary import split_bytes
from frugalml.serve.config import ServeConfig
from frugalml.serve.errors import ApiError

MULTIPART = "multipart/form-data"
FORM_FIELDS = ("model", "version")  # the text fields an upload may carry beside its files
TENSOR_TYPES = {"UINT8": "|u1", "FP32": "<f4"}  # pixel tensors: their numpy dtype in binary data


def check_count(n: int, config: ServeConfig) -> None:
    if n < 1:
        raise ApiError(422, "send at least one image")
    if n > config.max_items:
        raise ApiError(422, f"{n} images in one request; the limit is {config.max_items}")


def decode_encoded(items: Sequence[bytes], channels: int, config: ServeConfig) -> list[np.ndarray]:
    """Encoded image files (PNG, JPEG ...) -> uint8 HWC arrays of `channels`."""
    check_count(len(items), config)
    arrays = []
    for i, raw in enumerate(items):
        name = f"image {i}"
        if len(raw) > config.max_image_bytes:
            raise ApiError(413, f"{name} is {len(raw)} bytes; the limit is {config.max_image_bytes}")
        try:
            arrays.append(image_array(open_image(raw, name, config.max_image_pixels), channels))
        except ImageTooLarge as exc:
            raise ApiError(413, str(exc)) from None
        except DataError as exc:
            raise ApiError(422, str(exc)) from None
    return arrays


def decode_base64(items: Sequence[str], channels: int, config: ServeConfig) -> list[np.ndarray]:
    """Base64 texts of encoded images (a `data:` URL prefix allowed) -> uint8 HWC arrays."""
    check_count(len(items), config)
    limit = 4 * math.ceil(config.max_image_bytes / 3)  # base64 of the largest image allowed
    raw = []
    for i, text in enumerate(items):
        text = text.partition(",")[2] if text.startswith("data:") else text
        if len(text) > limit:
            raise ApiError(413, f"image {i} is over {config.max_image_bytes} bytes once decoded")
        try:
            raw.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise ApiError(422, f"image {i}: not valid base64") from None
    return decode_encoded(raw, channels, config)


async def read_upload(
    headers: Headers, body: bytes, config: ServeConfig
) -> tuple[list[bytes], dict[str, str]]:
    """The files of a multipart/form-data body, in order, and its text fields (model, version)."""

    async def stream():
        yield body

    parser = MultiPartParser(
        headers,
        stream(),
        max_files=config.max_items,
        max_fields=len(FORM_FIELDS),
        max_part_size=config.max_image_bytes,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        status = 422 if "many" in exc.message.lower() else 400
        raise ApiError(status, f"multipart upload: {exc.message}") from None
    files: list[bytes] = []
    fields: dict[str, str] = {}
    try:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.append(await value.read())
            elif key in FORM_FIELDS:
                fields[key] = value
            else:
                raise ApiError(
                    422,
                    f"multipart upload: unknown field {key!r}; send files, and {' or '.join(FORM_FIELDS)}",
                )
    finally:
        await form.close()
    if not files:
        raise ApiError(422, "multipart upload holds no file; send each image as a file part")
    return files, fields


def tensor_images(tensor: Any, channels: int, config: ServeConfig) -> list[np.ndarray]:
    """An Open Inference Protocol input of an image model -> uint8 HWC arrays.

    UINT8 or FP32 (pixel values 0-255): shape [n, H, W] or [n, H, W, C], C = 1, 3 or 4; data flat,
    nested or binary. BYTES: shape [n], each element an encoded image (base64 in JSON, raw bytes
    as binary data).
    """
    shape, data = list(tensor.shape), tensor.data
    if data is None:
        raise ApiError(422, f"input {tensor.name!r} has no data")
    if tensor.datatype == "BYTES":
        if len(shape) != 1 and not (len(shape) == 2 and shape[1] == 1):
            raise ApiError(422, f"a BYTES input of images has shape [n] or [n, 1]; got {shape}")
        items: list[Any] = split_bytes(data) if isinstance(data, bytes) else _flat(data)
        if len(items) != shape[0]:
            raise ApiError(422, f"shape {shape} says {shape[0]} images; the data holds {len(items)}")
        if isinstance(data, bytes):
            return decode_encoded(items, channels, config)
        if not all(isinstance(item, str) for item in items):
            raise ApiError(422, "BYTES data in JSON: one base64 string per image")
        return decode_base64(items, channels, config)
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3, 4)):
        raise ApiError(
            422, f"a {tensor.datatype} input of images has shape [n, H, W] or [n, H, W, C]; got {shape}"
        )
    check_count(shape[0], config)
    if shape[1] * shape[2] > config.max_image_pixels:
        raise ApiError(
            413, f"images of {shape[2]}x{shape[1]} pixels; the limit is {config.max_image_pixels:,}"
        )
    try:
        if isinstance(data, bytes):
            values = np.frombuffer(data, dtype=TENSOR_TYPES[tensor.datatype])
        else:
            values = np.asarray(_flat(data), dtype=np.float64 if tensor.datatype == "FP32" else np.int64)
    except (TypeError, ValueError):
        raise ApiError(422, f"{tensor.datatype} data must be numbers") from None
    if values.size != math.prod(shape):
        raise ApiError(422, f"shape {shape} needs {math.prod(shape)} values; got {values.size}")
    if values.size and (values.min() < 0 or values.max() > 255 or not np.isfinite(values).all()):
        raise ApiError(422, "pixel values must lie in 0-255")
    pixels = np.rint(values).astype(np.uint8).reshape(shape)
    return list(pixels)


def _flat(data: Any) -> list:
    """Nested JSON lists, flattened in row-major order."""
    if not isinstance(data, list):
        raise ApiError(422, "tensor data must be a list")
    if data and isinstance(data[0], list):
        return [value for row in data for value in _flat(row)]
    return data
