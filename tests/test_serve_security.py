"""Serving defences on a real loopback server (docs/security.md): header deadlines, idle caps,
content types, what open routes reveal, and the documented request headers."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import httpx
import pytest
from test_serve_support import running

from frugalml.serve import ServeConfig, create_app
from frugalml.serve.connections import EVICTABLE_AFTER_S, MAX_HEADER_BYTES

V2_BODY = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}


@pytest.fixture(scope="module")
def server(predictor):
    with running(create_app(predictor)) as (url, _):
        yield url


def test_the_request_timeout_header_is_a_number_as_the_openapi_document_says(server):
    document = httpx.get(f"{server}/openapi.json").json()
    for path in ("/v1/predict", "/v2/models/{name}/infer"):
        (header,) = [p for p in document["paths"][path]["post"]["parameters"] if p["in"] == "header"]
        assert header["name"] == "X-Request-Timeout" and not header["required"]
        assert header["schema"]["type"] == "number" and "anyOf" not in header["schema"], path
    # Not nullable, so "null" is refused like any other value that is not a number.
    sent = {"X-Request-Timeout": "null"}
    v1 = httpx.post(f"{server}/v1/predict", json={"inputs": ["a"]}, headers=sent)
    v2 = httpx.post(f"{server}/v2/models/train/infer", json=V2_BODY, headers=sent)
    assert v1.status_code == v2.status_code == 422
    assert "X-Request-Timeout" in v1.json()["error"] and "X-Request-Timeout" in v2.json()["error"]
    # An absent header leaves the deadline to the server.
    assert httpx.post(f"{server}/v2/models/train/infer", json=V2_BODY).status_code == 200


def test_model_readiness_names_no_served_model_to_a_caller_without_the_key(predictor):
    app = create_app([("secret-intent", predictor), ("other", predictor)], ServeConfig(api_key="k3y"))
    with running(app) as (url, _):
        assert httpx.get(f"{url}/v2/models/secret-intent/ready").status_code == 200  # open, as before
        unknown = httpx.get(f"{url}/v2/models/guess/ready")
        version = httpx.get(f"{url}/v2/models/other/versions/guess/ready")
        keyed = httpx.post(
            f"{url}/v1/predict",
            json={"inputs": ["a"], "model": "guess"},
            headers={"Authorization": "Bearer k3y"},
        )
    assert unknown.status_code == version.status_code == 404
    assert unknown.json() == {"error": "unknown model 'guess'"}
    assert version.json() == {"error": "model 'other' has no version 'guess'"}
    assert predictor.bundle.id not in version.text
    # A caller that passed the key check is still told what is served.
    assert keyed.status_code == 404 and "secret-intent, other" in keyed.json()["error"]


FORM_POSTS = {  # what a cross-site page can send without a CORS preflight, and no type at all
    "form": "application/x-www-form-urlencoded",
    "multipart": "multipart/form-data; boundary=x",
    "text": "text/plain;charset=UTF-8",
    "none": None,
}


@pytest.mark.parametrize("content_type", FORM_POSTS.values(), ids=FORM_POSTS.keys())
def test_inference_routes_take_json_bodies_only(server, content_type):
    headers = {"Origin": "https://elsewhere.example"}  # a browser sends it with every POST
    if content_type is not None:
        headers["Content-Type"] = content_type
    for path, body in (("/v1/predict", {"inputs": ["a"]}), ("/v2/models/train/infer", V2_BODY)):
        refused = httpx.post(server + path, content=json.dumps(body), headers=headers)
        assert refused.status_code == 415, (path, refused.text)
        assert list(refused.json()) == ["error"]  # the shape of every error
        assert "application/json" in refused.json()["error"]
        declared = {"Content-Type": "Application/JSON; charset=utf-8"}  # a type, case-insensitive
        assert httpx.post(server + path, content=json.dumps(body), headers=declared).status_code == 200
    responses = httpx.get(f"{server}/openapi.json").json()["paths"]["/v1/predict"]["post"]["responses"]
    assert "415" in responses


def _connect(url: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10)


def _closed_within(connection: socket.socket, seconds: float) -> bool:
    """Whether the server closes `connection` (EOF or reset, after any answer) within `seconds`."""
    connection.settimeout(seconds)
    try:
        while connection.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def _drip(connection: socket.socket, seconds: float) -> None:
    """Send a header one byte at a time, a byte every 0.1 s, until the server closes or time is up."""
    deadline = time.monotonic() + seconds
    with contextlib.suppress(OSError):
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        while time.monotonic() < deadline:
            connection.sendall(b"a")
            time.sleep(0.1)


def test_a_connection_whose_request_headers_do_not_arrive_in_time_is_closed(predictor):
    timeout = 1.0
    with running(create_app(predictor, ServeConfig(header_timeout_s=timeout))) as (url, _):
        started = time.monotonic()
        silent = _connect(url)  # sends nothing
        partial = _connect(url)
        partial.sendall(b"POST /v1/pre")  # part of a request line, then nothing
        kept_alive = _connect(url)  # one request answered, then part of the next one
        kept_alive.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert kept_alive.recv(4096).startswith(b"HTTP/1.1 200")
        kept_alive.sendall(b"GET /hea")
        dripping = _connect(url)  # bytes keep coming, but the headers never end
        drip = threading.Thread(target=_drip, args=(dripping, timeout + 6), daemon=True)
        drip.start()
        for name, connection in [("silent", silent), ("partial", partial), ("kept alive", kept_alive)]:
            assert _closed_within(connection, timeout + 5), name
        drip.join()
        assert time.monotonic() - started < timeout + 6  # the drip ended because the server closed
        assert httpx.get(f"{url}/healthz").status_code == 200  # others are still served
        for connection in (silent, partial, kept_alive, dripping):
            connection.close()


def test_a_client_holds_at_most_its_cap_of_idle_connections(predictor):
    config = ServeConfig(max_idle_per_client=3, header_timeout_s=60)
    with running(create_app(predictor, config)) as (url, _):
        first = [_connect(url) for _ in range(3)]
        time.sleep(EVICTABLE_AFTER_S + 0.5)  # idle long enough to be closed for the cap
        later = [_connect(url) for _ in range(2)]
        # The two idle longest make room for the new ones; the rest stay open.
        assert _closed_within(first[0], 5) and _closed_within(first[1], 5)
        assert not any(_closed_within(connection, 0.2) for connection in [first[2], *later])
        assert httpx.get(f"{url}/healthz").status_code == 200  # the client is still served
        for connection in first + later:
            connection.close()


def test_request_headers_over_the_size_limit_get_431(server):
    with _connect(server) as large:
        large.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEADER_BYTES + 4096))
        large.settimeout(5)
        answer = large.recv(4096)
        assert answer.startswith(b"HTTP/1.1 431") and b"larger than" in answer
        assert _closed_within(large, 5)
    padded = httpx.get(f"{server}/healthz", headers={"X-Pad": "a" * (MAX_HEADER_BYTES // 2)})
    assert padded.status_code == 200  # large, but within the limit
