"""The Open Inference Protocol's binary tensor data extension (as Triton and KServe define it).

A binary request body is a JSON header of `Inference-Header-Content-Length` bytes followed by the
raw data of each input whose `parameters.binary_data_size` says so, in input order. Data is
little-endian and row-major; a BYTES element is a 4-byte unsigned length followed by its bytes.
Outputs come back the same way when the request asks (`binary_data` on an output, or
`binary_data_output` on the request for every output that does not say).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

import numpy as np
from fastapi import Response

from frugalml.serve.errors import ApiError

HEADER = "Inference-Header-Content-Length"
EXTENSION = "binary_tensor_data"  # its name in the server metadata's `extensions`
MEDIA_TYPE = "application/octet-stream"
_LENGTH = struct.Struct("<I")


def split_body(raw: bytes, header_length: str) -> tuple[bytes, bytes]:
    """(JSON header, binary data) of a request whose header length is `header_length`."""
    if not header_length.isdigit() or not 0 < int(header_length) <= len(raw):
        raise ApiError(
            400, f"header {HEADER}: the JSON header's length, 1 to {len(raw)} bytes; got {header_length!r}"
        )
    return raw[: int(header_length)], raw[int(header_length) :]


def split_bytes(data: bytes) -> list[bytes]:
    """A BYTES tensor's elements (each length-prefixed), as bytes: encoded images, say."""
    elements, at = [], 0
    while at < len(data):
        if at + _LENGTH.size > len(data):
            raise ApiError(400, f"binary BYTES tensor: {len(data) - at} bytes left where a length goes")
        (size,) = _LENGTH.unpack_from(data, at)
        at += _LENGTH.size
        if at + size > len(data):
            raise ApiError(400, f"binary BYTES tensor: element of {size} bytes runs past the data's end")
        elements.append(data[at : at + size])
        at += size
    return elements


def decode_bytes(data: bytes) -> list[str]:
    """A BYTES tensor's elements as text (each length-prefixed, UTF-8)."""
    texts = []
    for element in split_bytes(data):
        try:
            texts.append(element.decode("utf-8"))
        except UnicodeDecodeError as bad:
            raise ApiError(400, f"binary BYTES tensor: element {len(texts)} is not valid UTF-8") from bad
    return texts


def with_binary_inputs(header: bytes, data: bytes, raw: bool = False) -> object:
    """The JSON header, parsed, with each binary input's data decoded into its `data` field, so that
    the request is then validated as a JSON one is (shape, limits). Inputs that are not BYTES keep
    no data: validation refuses them for their datatype. With `raw` (an image model's request),
    every input's data is kept as its bytes, for the image decoder (serve/images.py)."""
    try:
        document = json.loads(header)
    except UnicodeDecodeError as bad:
        raise ApiError(400, f"JSON header is not valid UTF-8 (byte {bad.start})") from None
    except ValueError as bad:
        raise ApiError(400, f"JSON header is not valid JSON: {bad}") from None
    at = 0
    inputs = document.get("inputs") if isinstance(document, dict) else None
    for tensor in inputs if isinstance(inputs, list) else []:
        parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is None:
            continue
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= len(data) - at:
            raise ApiError(400, f"binary_data_size {size!r} does not fit the {len(data) - at} bytes left")
        if "data" in tensor:
            raise ApiError(400, f"input {tensor.get('name')!r} has both data and binary_data_size")
        if raw:
            tensor["data"] = data[at : at + size]
        elif tensor.get("datatype") == "BYTES":
            tensor["data"] = decode_bytes(data[at : at + size])
        at += size
    if at != len(data):
        raise ApiError(400, f"{len(data) - at} bytes of binary data follow the JSON header unclaimed")
    return document


def encode_bytes(texts: Sequence[str]) -> bytes:
    return b"".join(_LENGTH.pack(len(b)) + b for b in (t.encode("utf-8") for t in texts))


def encode_fp32(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype="<f4").tobytes()


def binary_response(payload: dict, blobs: Sequence[bytes]) -> Response:
    """`payload` (whose binary outputs carry `binary_data_size`) followed by their data, in order."""
    header = json.dumps(payload, separators=(",", ":")).encode()
    return Response(b"".join([header, *blobs]), media_type=MEDIA_TYPE, headers={HEADER: str(len(header))})
