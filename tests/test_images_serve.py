"""Serving an image model on a real loopback server: base64 JSON, multipart uploads, Open Inference
Protocol tensors (JSON and binary), limits, and a text model beside it."""

from __future__ import annotations

import base64
import io
import json
import struct

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from test_serve_support import running, tune_tiny_bundle

from frugalml.bundle import IMAGE_TASK, Bundle, load_bundle, new_bundle_id, write_bundle
from frugalml.models.vision import ImageModelConfig, build_image_model, save_image_model
from frugalml.runtime import load_predictor
from frugalml.serve import create_app
from frugalml.serve.config import ServeConfig

SIZE = 16


@pytest.fixture(scope="module")
def image_predictor(tmp_path_factory):
    torch.manual_seed(0)
    config = ImageModelConfig("cnn", 3, 1, SIZE, [0.3], [0.2])
    model = build_image_model("cnn", 3, 1, SIZE).eval()
    with torch.no_grad():  # sharper than an untrained model: wrong pixels then change the answer
        [*_, last] = (m for m in model.modules() if isinstance(m, torch.nn.Linear))
        last.weight.mul_(50)
    bundle = Bundle(
        id=new_bundle_id(),
        name="xray",
        labels=["a", "b", "c"],
        base_model="cnn",
        method="scratch",
        task=IMAGE_TASK,
    )
    folder = tmp_path_factory.mktemp("image-serve")
    written = write_bundle(folder, bundle, lambda f: save_image_model(f, model, config))
    return load_predictor(load_bundle(written.path))


def images(n: int, seed: int = 0) -> list[np.ndarray]:
    """Noise images from dark to bright, and a gradient: images the model tells apart."""
    rng = np.random.default_rng(seed)
    noise = [rng.integers(0, 256 * (i + 1) // n, (SIZE, SIZE), dtype=np.uint8) for i in range(n - 1)]
    return [*noise, np.tile(np.linspace(0, 255, SIZE, dtype=np.uint8), (SIZE, 1))]


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def labels_of(predictor, arrays) -> list[str]:
    return [predictor.labels[i] for i in predictor.predict_proba([a[..., None] for a in arrays]).argmax(1)]


def probabilities_of(predictor, arrays) -> np.ndarray:
    return predictor.predict_proba([a[..., None] for a in arrays])


def v2_probabilities(answer: httpx.Response) -> np.ndarray:
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    return np.asarray(outputs["probabilities"]["data"], dtype=np.float32).reshape(
        outputs["probabilities"]["shape"]
    )


CONFIG = ServeConfig(max_items=8, max_queue=64, max_image_pixels=64 * 64, max_image_bytes=20_000)


def test_base64_multipart_and_v2_give_the_predictors_answers(image_predictor):
    arrays = images(5)
    expected = labels_of(image_predictor, arrays)
    probabilities = probabilities_of(image_predictor, arrays)
    assert len(set(expected)) > 1  # answers that depend on the pixels, so decoding is checked
    with running(create_app(image_predictor, CONFIG)) as (url, _):
        items = [{"b64": base64.b64encode(png(a)).decode()} for a in arrays]
        answer = httpx.post(f"{url}/v1/predict", json={"inputs": items})
        assert answer.status_code == 200, answer.text
        assert [p["label"] for p in answer.json()["predictions"]] == expected
        scores = [p["score"] for p in answer.json()["predictions"]]
        assert np.allclose(scores, probabilities.max(1), atol=1e-5)

        files = [("image", (f"{i}.png", png(a), "image/png")) for i, a in enumerate(arrays)]
        answer = httpx.post(f"{url}/v1/predict", files=files, data={"model": "xray"})
        assert answer.status_code == 200, answer.text
        assert [p["label"] for p in answer.json()["predictions"]] == expected
        # The same form from a web page (a cross-site post needs no preflight): refused.
        page = httpx.post(
            f"{url}/v1/predict", files=files, data={"model": "xray"}, headers={"Origin": "https://a.example"}
        )
        assert page.status_code == 403 and "web pages" in page.json()["error"]

        meta = httpx.get(f"{url}/v2/models/xray").json()
        assert meta["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, SIZE, SIZE, 1]}]
        tensor = {
            "name": "image",
            "datatype": "UINT8",
            "shape": [5, SIZE, SIZE],
            "data": np.stack(arrays).tolist(),
        }
        answer = httpx.post(f"{url}/v2/models/xray/infer", json={"inputs": [tensor]})
        assert answer.status_code == 200, answer.text
        outputs = {o["name"]: o for o in answer.json()["outputs"]}
        assert outputs["label"]["data"] == expected
        assert np.allclose(v2_probabilities(answer), probabilities, atol=1e-5)

        fp32 = {**tensor, "datatype": "FP32", "shape": [5, SIZE, SIZE, 1]}
        fp32["data"] = np.stack(arrays).astype(np.float32).ravel().tolist()
        answer = httpx.post(f"{url}/v2/models/xray/infer", json={"inputs": [fp32]})
        assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == expected
        assert np.allclose(v2_probabilities(answer), probabilities, atol=1e-5)

        encoded = [base64.b64encode(png(a)).decode() for a in arrays]
        as_bytes = {"name": "image", "datatype": "BYTES", "shape": [5], "data": encoded}
        answer = httpx.post(f"{url}/v2/models/xray/infer", json={"inputs": [as_bytes]})
        assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == expected
        assert np.allclose(v2_probabilities(answer), probabilities, atol=1e-5)


def test_v2_binary_tensor_data_of_pixels_and_of_encoded_images(image_predictor):
    arrays = images(3, seed=1)
    expected = labels_of(image_predictor, arrays)
    probabilities = probabilities_of(image_predictor, arrays)
    with running(create_app(image_predictor, CONFIG)) as (url, _):
        bodies = {
            "UINT8": ([3, SIZE, SIZE, 1], np.stack(arrays).tobytes()),
            "BYTES": ([3], b"".join(struct.pack("<I", len(p)) + p for p in map(png, arrays))),
        }
        for datatype, (shape, blob) in bodies.items():
            tensor = {"name": "image", "datatype": datatype, "shape": shape}
            header = json.dumps(
                {
                    "inputs": [{**tensor, "parameters": {"binary_data_size": len(blob)}}],
                    "outputs": [{"name": "label"}, {"name": "probabilities"}],
                }
            ).encode()
            answer = httpx.post(
                f"{url}/v2/models/xray/infer",
                content=header + blob,
                headers={"Inference-Header-Content-Length": str(len(header))},
            )
            assert answer.status_code == 200, (datatype, answer.text)
            assert answer.json()["outputs"][0]["data"] == expected
            assert np.allclose(v2_probabilities(answer), probabilities, atol=1e-5)


def test_limits_give_413_and_422_with_a_json_error(image_predictor):
    with running(create_app(image_predictor, CONFIG)) as (url, _):
        big = base64.b64encode(png(np.zeros((65, 65), np.uint8))).decode()  # 4,225 pixels > 4,096
        cases = [
            ({"inputs": [{"b64": big}]}, 413, "more pixels than the limit"),
            ({"inputs": [{"b64": "A" * 30_000}]}, 413, "over 20000 bytes"),
            ({"inputs": [{"b64": base64.b64encode(b"junk").decode()}]}, 422, "not an image"),
            ({"inputs": [{"b64": "@@"}]}, 422, "not valid base64"),
            ({"inputs": ["a text"]}, 422, "classifies images"),
            ({"inputs": [{"b64": big}] * 9}, 422, "at most 8"),
        ]
        for body, status, message in cases:
            answer = httpx.post(f"{url}/v1/predict", json=body)
            assert answer.status_code == status, (message, answer.text)
            assert message in answer.text and "error" in answer.json()
        files = [("image", (f"{i}.png", png(np.zeros((8, 8), np.uint8)), "image/png")) for i in range(9)]
        answer = httpx.post(f"{url}/v1/predict", files=files)
        assert answer.status_code == 422 and "error" in answer.json()
        tensor = {"name": "image", "datatype": "UINT8", "shape": [1, 65, 65], "data": [0] * 65 * 65}
        answer = httpx.post(f"{url}/v2/models/xray/infer", json={"inputs": [tensor]})
        assert answer.status_code == 413 and "limit" in answer.json()["error"]
        tensor = {"name": "image", "datatype": "UINT8", "shape": [1, 2, 2], "data": [0, 1, 2, 300]}
        answer = httpx.post(f"{url}/v2/models/xray/infer", json={"inputs": [tensor]})
        assert answer.status_code == 422 and "0-255" in answer.json()["error"]
        one = base64.b64encode(png(np.zeros((8, 8), np.uint8))).decode()
        tensor = {"name": "image", "datatype": "BYTES", "shape": [2], "data": [one]}
        answer = httpx.post(f"{url}/v2/models/xray/infer", json={"inputs": [tensor]})
        assert answer.status_code == 422 and "says 2 images" in answer.json()["error"]


def test_the_default_body_limit_leaves_room_for_an_image_of_the_image_limit(image_predictor, predictor):
    body = {"inputs": [{"b64": base64.b64encode(b"junk" * 400_000).decode()}]}  # 2.1 MB: over 1 MiB
    with running(create_app(image_predictor, ServeConfig())) as (url, _):
        answer = httpx.post(f"{url}/v1/predict", json=body)
        assert answer.status_code == 422 and "not an image" in answer.json()["error"]  # read, then judged
    with running(create_app(predictor, ServeConfig())) as (url, _):
        answer = httpx.post(f"{url}/v1/predict", json=body)
        assert answer.status_code == 413 and "body" in answer.json()["error"]  # texts: 1 MiB
    assert ServeConfig(max_body_bytes=500).body_limit(images=True) == 500  # a limit given is kept


def test_a_text_and_an_image_model_served_together(image_predictor, tiny_base, intent_files, home):
    text = load_predictor(load_bundle(tune_tiny_bundle(tiny_base, intent_files, home)))
    with running(create_app([("words", text), ("xray", image_predictor)], CONFIG)) as (url, _):
        answer = httpx.post(f"{url}/v1/predict", json={"model": "words", "inputs": ["hello there"]})
        assert answer.status_code == 200 and answer.json()["predictions"][0]["label"]
        item = {"b64": base64.b64encode(png(images(1)[0])).decode()}
        answer = httpx.post(f"{url}/v1/predict", json={"model": "words", "inputs": [item]})
        assert answer.status_code == 422 and "classifies texts" in answer.json()["error"]
        answer = httpx.post(f"{url}/v1/predict", json={"model": "xray", "inputs": [item]})
        assert answer.status_code == 200
