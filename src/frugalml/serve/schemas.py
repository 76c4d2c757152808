"""Request and response bodies of the v1 API and the Open Inference Protocol v2 REST API.

Request models are built per app so that the configured limits (texts per request, characters
per text) are both enforced by validation and published in /openapi.json.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model, model_validator

from frugalml.serve.config import ServeConfig

INPUT_NAME = "text"  # a v2 text classifier's one input
IMAGE_INPUT = "image"  # a v2 image classifier's one input

V2_OUTPUTS = ("label", "score", "probabilities")


class ErrorResponse(BaseModel):
    error: str = Field(description="What was wrong, in one line.")
    detail: list[dict[str, Any]] | None = Field(None, description="Validation errors, when there are any.")


class LabelScore(BaseModel):
    label: str
    score: float = Field(description="Probability of the label.")


class PredictResponse(BaseModel):
    model: str
    version: str
    predictions: list[LabelScore] = Field(description="Top label per input, in input order.")


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["label", "score", "probabilities"]
    parameters: dict[str, Any] | None = None


class InferOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Literal["BYTES", "FP32"]
    data: list[str] | list[float] | None = Field(None, description="Absent when sent as binary data.")
    parameters: dict[str, Any] | None = Field(None, description="`binary_data_size` of binary data.")


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = Field(None, description="The request's id; absent when it had none.")
    outputs: list[InferOutput]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class Base64Image(BaseModel):
    model_config = ConfigDict(extra="forbid")
    b64: str = Field(description="An encoded image (PNG, JPEG ...) in base64; a data: URL prefix is allowed.")


@dataclass(frozen=True)
class RequestModels:
    predict: type[BaseModel]
    infer: type[BaseModel]
    image_infer: type[BaseModel]  # the v2 request of an image model
    images: bool = False  # an image model is served: v1 also takes images (b64 items, uploads)


def request_models(config: ServeConfig, images: bool = False) -> RequestModels:
    """The request bodies; with `images` (an image model is served), v1 inputs may also be
    `{"b64": ...}` images."""
    text = Annotated[str, StringConstraints(max_length=config.max_text_chars)]
    texts = Annotated[
        list[text],
        Field(min_length=1, max_length=config.max_items, description="Texts to classify."),
    ]
    v1_inputs: Any = texts
    if images:
        v1_inputs = Annotated[
            list[text | Base64Image],
            Field(
                min_length=1,
                max_length=config.max_items,
                description='Texts, or images as {"b64": ...}, for the model\'s task.',
            ),
        ]
    forbid = ConfigDict(extra="forbid")
    predict = create_model(
        "PredictRequest",
        __config__=forbid,
        inputs=(v1_inputs, ...),
        model=(str | None, Field(None, description="Served model name; needed when several are served.")),
        version=(str | None, Field(None, description="Model version (bundle id); default: the first.")),
    )
    # Typed as Any: pydantic reads these at runtime, but Literal[INPUT_NAME] is no static type, and
    # its stubs take __validators__ as plain callables, not the decorated ones its docs pass.
    input_fields: dict[str, Any] = {
        "name": (Literal[INPUT_NAME], Field(description="The model's one input, as its metadata names it.")),
        "shape": (list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=2)),
        "datatype": (Literal["BYTES"], ...),
        "data": (texts, Field(description="Flat, or nested as rows of one text for shape [n, 1].")),
        "parameters": (dict[str, Any] | None, None),
    }
    validators: dict[str, Any] = {
        "flat_data": model_validator(mode="before")(_flat_data),
        "shape_fits_data": model_validator(mode="after")(_shape_fits_data),
    }
    # Any: a model built at runtime, used below as a type that mypy cannot see.
    infer_input: Any = create_model(
        "InferInput", __config__=forbid, __validators__=validators, **input_fields
    )
    infer = create_model(
        "InferenceRequest",
        __config__=forbid,
        id=(str | None, Field(None, max_length=256)),
        model_name=(str | None, Field(None, description="When given, the model named in the path.")),
        parameters=(dict[str, Any] | None, None),
        inputs=(
            list[infer_input],
            Field(min_length=1, max_length=1, description="One BYTES tensor of texts."),
        ),
        outputs=(list[RequestedOutput] | None, Field(None, description=f"Any of {', '.join(V2_OUTPUTS)}.")),
    )
    image_fields: dict[str, Any] = {
        "name": (str, Field(description=f"The model's one input, {IMAGE_INPUT!r}.")),
        "shape": (list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=4)),
        "datatype": (Literal["UINT8", "FP32", "BYTES"], ...),
        "data": (
            Any,
            Field(
                None,
                description="UINT8/FP32 pixels (0-255) of shape [n, H, W(, C)], flat or nested; "
                "BYTES: base64 encoded images, shape [n].",
            ),
        ),
        "parameters": (dict[str, Any] | None, None),
    }
    image_input: Any = create_model("ImageInferInput", __config__=forbid, **image_fields)
    image_infer = create_model(
        "ImageInferenceRequest",
        __config__=forbid,
        id=(str | None, Field(None, max_length=256)),
        model_name=(str | None, Field(None, description="When given, the model named in the path.")),
        parameters=(dict[str, Any] | None, None),
        inputs=(list[image_input], Field(min_length=1, max_length=1, description="One tensor of images.")),
        outputs=(list[RequestedOutput] | None, Field(None, description=f"Any of {', '.join(V2_OUTPUTS)}.")),
    )
    return RequestModels(predict=predict, infer=infer, image_infer=image_infer, images=images)


def _flat_data(tensor: Any) -> Any:
    """Nested data (`[["a"], ["b"]]` for shape [2, 1]) as the flat list the protocol also allows."""
    if not isinstance(tensor, dict):
        return tensor
    data, shape = tensor.get("data"), tensor.get("shape")
    if isinstance(data, list) and data and all(isinstance(row, list) for row in data):
        if not (isinstance(shape, list) and len(shape) == 2 and all(len(row) == shape[1] for row in data)):
            raise ValueError(f"nested data must be rows of shape {shape}'s second size; use shape [n, 1]")
        return {**tensor, "data": [item for row in data for item in row]}
    return tensor


def _shape_fits_data(tensor: Any) -> BaseModel:  # tensor: an InferInput, a model built at runtime
    """A 422 like any other wrong shape of body, with the validation error's `detail`."""
    n = len(tensor.data)
    if math.prod(tensor.shape) != n or tensor.shape[0] != n:
        raise ValueError(f"shape {tensor.shape} does not match its {n} texts; use [n] or [n, 1]")
    return tensor
