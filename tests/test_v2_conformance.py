"""Open Inference Protocol v2 conformance: Triton's own HTTP client, in binary and JSON modes, and
the KServe spec's examples, against the app on a real loopback server."""

from __future__ import annotations

import json
import struct

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from test_serve_support import running
from tritonclient.utils import InferenceServerException

from frugalml.serve import create_app

TEXTS = ["refund money back please", "my card was stolen", "forgot password reset"]
MODEL = "train"


@pytest.fixture(scope="module")
def server(predictor):
    with running(create_app(predictor)) as (url, _):
        yield url


@pytest.fixture
def client(server):
    client = triton.InferenceServerClient(url=server.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def expected(predictor):
    probabilities = predictor.predict_proba(TEXTS)
    labels = [predictor.labels[i] for i in probabilities.argmax(1)]
    return labels, probabilities.max(1), probabilities


def _text_input(texts: list[str], binary: bool, shape: tuple[int, ...] | None = None) -> triton.InferInput:
    array = np.array([t.encode() for t in texts], dtype=np.object_).reshape(shape or (len(texts),))
    tensor = triton.InferInput("text", list(array.shape), "BYTES")
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def _check(result: triton.InferResult, expected, names=("label", "score", "probabilities")) -> None:
    labels, scores, probabilities = expected
    assert [o["name"] for o in result.get_response()["outputs"]] == list(names)
    if "label" in names:
        # tritonclient gives bytes from binary data, str from JSON data.
        got = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label").ravel()]
        assert got == labels
    if "score" in names:
        np.testing.assert_allclose(result.as_numpy("score"), scores, atol=1e-6)
    if "probabilities" in names:
        np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, atol=1e-6)


def test_tritonclient_default_call_is_binary_and_gets_every_output(client, expected, predictor):
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    assert client.get_model_metadata(MODEL)["inputs"][0] == {
        "name": "text",
        "datatype": "BYTES",
        "shape": [-1],
    }
    result = client.infer(MODEL, [_text_input(TEXTS, binary=True)])  # as a user would call it
    _check(result, expected)
    response = result.get_response()
    assert "id" not in response  # none was sent
    assert all("binary_data_size" in o["parameters"] and "data" not in o for o in response["outputs"])
    assert response["model_version"] == predictor.bundle.id
    versioned = client.infer(MODEL, [_text_input(TEXTS, True)], model_version=predictor.bundle.id)
    _check(versioned, expected)


def test_tritonclient_json_mode(client, expected):
    outputs = [triton.InferRequestedOutput(name, binary_data=False) for name in ("score", "label")]
    result = client.infer(MODEL, [_text_input(TEXTS, binary=False)], outputs=outputs, request_id="r-7")
    _check(result, expected, names=("score", "label"))
    response = result.get_response()
    assert response["id"] == "r-7"
    assert response["outputs"][1]["data"] == expected[0]  # plain JSON data, no binary part
    assert "parameters" not in response["outputs"][0]


def test_tritonclient_mixed_outputs_and_shape_n_by_1(client, expected):
    outputs = [
        triton.InferRequestedOutput("probabilities", binary_data=True),
        triton.InferRequestedOutput("label", binary_data=False),
    ]
    for binary in (True, False):
        tensor = _text_input(TEXTS, binary=binary, shape=(len(TEXTS), 1))
        result = client.infer(MODEL, [tensor], outputs=outputs)
        _check(result, expected, names=("probabilities", "label"))
        probabilities, label = result.get_response()["outputs"]
        assert "data" not in probabilities and label["data"] == expected[0]


def test_tritonclient_sees_errors_as_errors(client):
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("nope", [_text_input(TEXTS, binary=True)])
    assert unknown.value.status() == "404" and "unknown model" in unknown.value.message()
    wrong = triton.InferInput("text", [1], "FP32")
    wrong.set_data_from_numpy(np.array([1.0], dtype=np.float32))
    with pytest.raises(InferenceServerException) as refused:
        client.infer(MODEL, [wrong])
    assert refused.value.status() == "422" and "datatype" in refused.value.message()


def test_tritonclient_timeout_is_the_request_deadline(client, server, expected):
    with pytest.raises(InferenceServerException) as late:
        client.infer(MODEL, [_text_input(TEXTS, binary=True)], timeout=1)  # microseconds
    assert late.value.status() == "504"
    _check(client.infer(MODEL, [_text_input(TEXTS, binary=True)], timeout=30_000_000), expected)
    request = {
        "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}],
        "parameters": {"timeout": "soon"},
    }
    refused = httpx.post(f"{server}/v2/models/{MODEL}/infer", json=request)
    assert refused.status_code == 422 and "microseconds" in refused.json()["error"]


def _binary_body(document: dict, *blobs: bytes) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(document).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return header + b"".join(blobs), headers


def _bytes_tensor(texts: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)


def test_spec_json_example(server, expected):
    # The spec's inference request, for this model's one BYTES input: an id, one named output.
    request = {
        "id": "42",
        "inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": TEXTS}],
        "outputs": [{"name": "score"}],
    }
    response = httpx.post(f"{server}/v2/models/{MODEL}/infer", json=request)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"model_name", "model_version", "id", "outputs"} and body["id"] == "42"
    (score,) = body["outputs"]
    assert (score["name"], score["shape"], score["datatype"]) == ("score", [3], "FP32")
    np.testing.assert_allclose(score["data"], expected[1], atol=1e-6)
    # Tensor data may be nested, row-major, as the spec allows: shape [3, 1] as three rows.
    nested = {
        "inputs": [{"name": "text", "shape": [3, 1], "datatype": "BYTES", "data": [[t] for t in TEXTS]}]
    }
    body = httpx.post(f"{server}/v2/models/{MODEL}/infer", json=nested).json()
    assert "id" not in body and [o["name"] for o in body["outputs"]] == ["label", "score", "probabilities"]
    assert body["outputs"][0]["data"] == expected[0]
    assert body["outputs"][2]["shape"] == [3, len(expected[2][0])]
    # The spec's error shape.
    error = httpx.post(f"{server}/v2/models/nope/infer", json=request)
    assert error.status_code == 404 and list(error.json()) == ["error"]


def test_spec_binary_example(server, expected):
    # The binary extension's example: model_name in the header, one binary input, one output
    # asked for as binary and one as JSON.
    document = {
        "model_name": MODEL,
        "inputs": [
            {
                "name": "text",
                "shape": [3],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(_bytes_tensor(TEXTS))},
            }
        ],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}, {"name": "label"}],
    }
    content, headers = _binary_body(document, _bytes_tensor(TEXTS))
    response = httpx.post(f"{server}/v2/models/{MODEL}/infer", content=content, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    size = int(response.headers["inference-header-content-length"])
    header, data = json.loads(response.content[:size]), response.content[size:]
    probabilities, label = header["outputs"]
    assert probabilities["parameters"]["binary_data_size"] == len(data) == expected[2].size * 4
    np.testing.assert_allclose(
        np.frombuffer(data, "<f4").reshape(probabilities["shape"]), expected[2], atol=1e-6
    )
    assert label["data"] == expected[0]


BAD_BINARY = {
    "header length past the body": (
        lambda c, h: (c, {**h, "Inference-Header-Content-Length": "99999"}),
        "length",
    ),
    "header length not a number": (lambda c, h: (c, {**h, "Inference-Header-Content-Length": "x"}), "length"),
    "header not JSON": (lambda c, h: (b"[" + c[1:], h), "not valid JSON"),
    "header not UTF-8": (lambda c, h: (b"\xff" + c[1:], h), "not valid UTF-8"),
    "data cut short": (lambda c, h: (c[:-3], h), "fit"),
    "bytes left over": (lambda c, h: (c + b"zz", h), "unclaimed"),
    "length prefix cut": (lambda c, h: (c[:-6] + b"\x01\x00\x00\x00a\x00", h), "where a length goes"),
    "element past the end": (lambda c, h: (c[:-6] + b"\x09\x00\x00\x00ab", h), "runs past"),
}


@pytest.mark.parametrize("case", BAD_BINARY.values(), ids=BAD_BINARY.keys())
def test_malformed_binary_bodies_get_a_clear_400(server, case):
    change, says = case
    document = {
        "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}]
    }
    content, headers = change(*_binary_body(document, _bytes_tensor(["ab"])))
    response = httpx.post(f"{server}/v2/models/{MODEL}/infer", content=content, headers=headers)
    assert response.status_code == 400, response.text
    assert says in response.json()["error"]


def test_binary_texts_meet_the_same_checks_as_json_ones(server):
    def post(texts: list[bytes], shape: list[int]) -> httpx.Response:
        blob = b"".join(struct.pack("<I", len(t)) + t for t in texts)
        document = {
            "inputs": [
                {
                    "name": "text",
                    "shape": shape,
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(blob)},
                }
            ]
        }
        content, headers = _binary_body(document, blob)
        return httpx.post(f"{server}/v2/models/{MODEL}/infer", content=content, headers=headers)

    assert post([b"\xff\xfe"], [1]).status_code == 400  # not UTF-8
    mismatch = post([b"a", b"b"], [3])
    assert mismatch.status_code == 422 and "shape" in mismatch.json()["error"]
    assert post([], [0]).status_code == 422  # no texts
    assert post(["é".encode()], [1]).status_code == 200


def test_a_bodys_missing_type_is_json_unless_a_browser_sent_it(server):
    request = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}]})
    assert httpx.post(f"{server}/v2/models/{MODEL}/infer", content=request).status_code == 200
    browser = {"Origin": "https://example.com"}
    refused = httpx.post(f"{server}/v2/models/{MODEL}/infer", content=request, headers=browser)
    assert refused.status_code == 415
