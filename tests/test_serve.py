"""The serving engine on a real loopback server: APIs, batching, overload, deadlines, auth, bad input."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import httpx
import numpy as np
import pytest
import torch
from test_serve_support import GatedPredictor, metric, running, wait_until

from frugalml import client as fc
from frugalml.bundle import load_bundle
from frugalml.errors import FrugalError
from frugalml.monitor.metrics import ServingMetrics
from frugalml.runtime import load_predictor
from frugalml.runtime.torch_predictor import TorchPredictor
from frugalml.serve import ServeConfig, create_app
from frugalml.serve.batcher import Batcher, ClientGone, DeadlineExceeded, Overloaded

TEXTS = ["refund money back please", "my card was stolen", "forgot password reset", "i need the card"]


LIMITS = ServeConfig(max_items=4, max_text_chars=60, max_body_bytes=2000)


@pytest.fixture(scope="module")
def server(predictor):
    """One shared server (with small limits) for the tests that do not change server state."""
    with running(create_app(predictor, LIMITS)) as (url, _):
        yield url


def test_v1_predict_matches_the_predictor_and_is_counted(server, predictor):
    response = httpx.post(f"{server}/v1/predict", json={"inputs": TEXTS})
    assert response.status_code == 200
    body = response.json()
    expected = predictor.predict_proba(TEXTS)
    assert body["model"] == "train" and body["version"] == predictor.bundle.id
    assert [p["label"] for p in body["predictions"]] == [predictor.labels[i] for i in expected.argmax(1)]
    assert [p["score"] for p in body["predictions"]] == pytest.approx(expected.max(1).tolist(), abs=1e-6)
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok"}
    text = httpx.get(f"{server}/metrics").text
    assert metric(text, "frugalml_requests_total", model="train", route="/v1/predict", status="200") >= 1
    assert metric(text, "frugalml_model_info", bundle_id=predictor.bundle.id, format="torch") == 1
    assert metric(text, "frugalml_request_seconds_count", model="train", route="/v1/predict") >= 1


def test_v2_open_inference_protocol(server, predictor):
    bundle = predictor.bundle
    assert httpx.get(f"{server}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{server}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{server}/v2").json()["name"] == "frugalml"
    meta = httpx.get(f"{server}/v2/models/train").json()
    assert meta["versions"] == [bundle.id] and meta["inputs"][0]["datatype"] == "BYTES"
    assert httpx.get(f"{server}/v2/models/train/ready").json() == {"name": "train", "ready": True}
    assert httpx.get(f"{server}/v2/models/train/versions/{bundle.id}/ready").status_code == 200

    request = {
        "id": "r1",
        "inputs": [{"name": "text", "shape": [2, 1], "datatype": "BYTES", "data": TEXTS[:2]}],
        "outputs": [{"name": "label"}, {"name": "probabilities"}],
    }
    for path in ("/v2/models/train/infer", f"/v2/models/train/versions/{bundle.id}/infer"):
        response = httpx.post(server + path, json=request)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_name"] == "train" and body["model_version"] == bundle.id and body["id"] == "r1"
        outputs = {o["name"]: o for o in body["outputs"]}
        assert list(outputs) == ["label", "probabilities"]
        expected = predictor.predict_proba(TEXTS[:2])
        assert outputs["label"]["data"] == [predictor.labels[i] for i in expected.argmax(1)]
        assert outputs["probabilities"]["shape"] == [2, len(predictor.labels)]
        probabilities = np.array(outputs["probabilities"]["data"]).reshape(2, -1)
        np.testing.assert_allclose(probabilities, expected, atol=1e-6)
    default = httpx.post(f"{server}/v2/models/train/infer", json={"inputs": request["inputs"]}).json()
    assert [o["name"] for o in default["outputs"]] == ["label", "score", "probabilities"]  # all
    assert default["outputs"][1]["datatype"] == "FP32" and "id" not in default  # none was sent


BAD_REQUESTS = [
    ("malformed JSON", "/v1/predict", b"{bad json", 400, "not valid JSON"),
    ("not UTF-8", "/v1/predict", b'{"inputs": ["\xff\xfe"]}', 400, "UTF-8"),
    ("empty body", "/v1/predict", b"", 400, "not valid JSON"),
    ("not an object", "/v1/predict", b"[1, 2]", 422, "object"),
    ("inputs not a list", "/v1/predict", {"inputs": "not a list"}, 422, "inputs"),
    ("empty list", "/v1/predict", {"inputs": []}, 422, "at least 1"),
    ("wrong item type", "/v1/predict", {"inputs": [1]}, 422, "inputs.0"),
    ("unknown field", "/v1/predict", {"inputs": ["a"], "top_k": 3}, 422, "top_k"),
    ("too many items", "/v1/predict", {"inputs": ["a"] * 5}, 422, "at most 4"),
    ("text too long", "/v1/predict", {"inputs": ["a" * 61]}, 422, "at most 60"),
    ("body too large", "/v1/predict", {"inputs": ["a" * 50] * 40}, 413, "limit is 2000"),
    ("unknown model", "/v1/predict", {"inputs": ["a"], "model": "nope"}, 404, "unknown model"),
    ("unknown version", "/v1/predict", {"inputs": ["a"], "version": "nope"}, 404, "no version"),
    ("v2 unknown model", "/v2/models/nope/infer", {"inputs": []}, 404, "unknown model"),
    (
        "v2 wrong datatype",
        "/v2/models/train/infer",
        {"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": ["a"]}]},
        422,
        "datatype",
    ),
    (
        "v2 shape mismatch",
        "/v2/models/train/infer",
        {"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": ["a"]}]},
        422,  # well-formed JSON of the wrong shape, as the docs and /openapi.json say
        "shape",
    ),
    ("v2 no inputs", "/v2/models/train/infer", {"inputs": []}, 422, "at least 1"),
    (
        "v2 wrong input name",
        "/v2/models/train/infer",
        {"inputs": [{"name": "texts", "shape": [1], "datatype": "BYTES", "data": ["a"]}]},
        422,  # the metadata names the one input "text"
        "inputs.0.name",
    ),
]


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(server, case):
    _, path, body, status, says = case
    raw = {"content": body, "headers": {"Content-Type": "application/json"}}
    kwargs = raw if isinstance(body, bytes) else {"json": body}
    response = httpx.post(server + path, **kwargs)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]
    if status == 422:  # a body of the wrong shape: where and what, as validation errors
        assert any(says in ".".join(map(str, d["loc"])) + d["msg"] for d in response.json()["detail"])
    assert httpx.post(f"{server}/v1/predict", json={"inputs": ["a"]}).status_code == 200


def test_routes_and_headers_errors_are_json(server):
    assert httpx.get(f"{server}/nope").json() == {"error": "Not Found"}
    assert httpx.get(f"{server}/v1/predict").status_code == 405
    for deadline in ("soon", "0", "-1", "nan", "3601"):
        bad = httpx.post(
            f"{server}/v1/predict", json={"inputs": ["a"]}, headers={"X-Request-Timeout": deadline}
        )
        assert bad.status_code == 422 and "X-Request-Timeout" in bad.json()["error"], deadline
    fine = httpx.post(f"{server}/v1/predict", json={"inputs": ["a"]}, headers={"X-Request-Timeout": "2.5"})
    assert fine.status_code == 200


def test_openapi_documents_the_schemas_and_limits(server):
    document = httpx.get(f"{server}/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert schemas["PredictRequest"]["properties"]["inputs"]["maxItems"] == 4
    assert schemas["PredictRequest"]["properties"]["inputs"]["items"]["maxLength"] == 60
    assert "InferenceRequest" in schemas and "InferenceResponse" in schemas
    body = document["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/PredictRequest"}
    for path in ("/v1/predict", "/v2/models/{name}/infer"):
        request_body = document["paths"][path]["post"]["requestBody"]
        assert request_body["description"] == f"At most {LIMITS.max_body_bytes} bytes (413 beyond)."
    assert {"413", "422", "503", "504"} <= set(document["paths"]["/v1/predict"]["post"]["responses"])
    (header,) = document["paths"]["/v1/predict"]["post"]["parameters"]
    assert header["name"] == "X-Request-Timeout" and header["in"] == "header"


def test_access_log_is_json_with_request_ids(server, caplog):
    with caplog.at_level(logging.INFO, logger="frugalml.access"):
        given = httpx.post(f"{server}/v1/predict", json={"inputs": ["a"]}, headers={"X-Request-ID": "abc-1"})
        fresh = httpx.post(f"{server}/v1/predict", json={"inputs": ["a"]})
        wait_until(lambda: len(caplog.records) >= 2, what="two access log lines")
    assert given.headers["x-request-id"] == "abc-1"
    assert len(fresh.headers["x-request-id"]) == 32
    lines = [json.loads(r.getMessage()) for r in caplog.records]
    assert {line["request_id"] for line in lines} >= {"abc-1", fresh.headers["x-request-id"]}
    assert all(line["status"] == 200 and line["path"] == "/v1/predict" for line in lines)


def _post_async(url: str, bodies: list[dict], headers: dict | None = None) -> list[httpx.Response]:
    async def go():
        async with httpx.AsyncClient(timeout=30) as http:
            return await asyncio.gather(*(http.post(url, json=b, headers=headers) for b in bodies))

    return asyncio.run(go())


def _in_background(fn, *args) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn(*args)), daemon=True)
    thread.start()
    return thread, out


def _predict(url: str, texts: list[str]) -> httpx.Response:
    return httpx.post(f"{url}/v1/predict", json={"inputs": texts}, timeout=30)


def _metrics(url: str) -> str:
    return httpx.get(f"{url}/metrics").text


def test_concurrent_requests_are_batched(predictor):
    gated = GatedPredictor(predictor)
    with running(create_app(gated)) as (url, _):
        # The first request starts at once (idle server) and holds the model...
        first, _ = _in_background(_predict, url, ["a"])
        wait_until(lambda: gated.calls == [1], what="first model call")
        # ...so eight concurrent ones queue up behind it and run as one batch.
        bodies = [{"inputs": [t]} for t in TEXTS * 2]
        rest, answers = _in_background(_post_async, f"{url}/v1/predict", bodies)
        wait_until(lambda: metric(_metrics(url), "frugalml_queue_depth", model="train") == 8, what="8 queued")
        gated.gate.set()
        rest.join(30)
        first.join(30)
        assert [r.status_code for r in answers[0]] == [200] * 8
        text = _metrics(url)
    assert gated.calls == [1, 8]
    assert metric(text, "frugalml_batch_size_count", model="train") == 2
    assert metric(text, "frugalml_batch_size_sum", model="train") == 9
    assert metric(text, "frugalml_queue_wait_seconds_count", model="train") == 9
    assert metric(text, "frugalml_requests_total", model="train", route="/v1/predict", status="200") == 9


def test_parallel_model_calls_run_side_by_side_with_correct_results(predictor):
    gated = GatedPredictor(predictor)
    with running(create_app(gated, ServeConfig(parallel=2))) as (url, _):
        first, _ = _in_background(_predict, url, ["a"])
        wait_until(lambda: gated.calls == [1], what="first model call")
        # The second call starts while the first still holds its inference thread...
        second, _ = _in_background(_predict, url, ["b", "c"])
        wait_until(lambda: gated.calls == [1, 2], what="second model call beside the first")
        # ...and with both busy, later requests queue up and run in batches once threads free.
        bodies = [{"inputs": [t]} for t in TEXTS]
        rest, answers = _in_background(_post_async, f"{url}/v1/predict", bodies)
        wait_until(
            lambda: metric(_metrics(url), "frugalml_queue_depth", model="train") == len(TEXTS),
            what="requests queued behind two running calls",
        )
        gated.gate.set()
        for thread in (first, second, rest):
            thread.join(30)
    # One batch of four, or two of two when both threads freed at once (see the next test).
    assert gated.calls[:2] == [1, 2] and sorted(gated.calls[2:]) in ([len(TEXTS)], [2, 2])
    expected = [predictor.labels[i] for i in predictor.predict_proba(TEXTS).argmax(1)]
    assert [r.json()["predictions"][0]["label"] for r in answers[0]] == expected


def test_queued_requests_are_spread_over_idle_inference_threads(predictor):
    async def scenario() -> list[int]:
        recorder = GatedPredictor(predictor)
        recorder.gate.set()
        batcher = Batcher(recorder, ServingMetrics(), "m", max_batch_size=32, parallel=2)
        queued = [asyncio.ensure_future(batcher.predict([t], timeout=30)) for t in TEXTS * 2]
        await asyncio.sleep(0)  # all eight are queued before the batcher looks
        with ThreadPoolExecutor(2) as executor:
            batcher.start(executor)
            results = await asyncio.gather(*queued)
            await batcher.close()
        expected = predictor.predict_proba(TEXTS * 2)
        assert np.allclose(np.concatenate(results), expected, atol=1e-5)
        return recorder.calls

    # Two half batches side by side rather than one full batch while the other thread idles.
    assert asyncio.run(scenario()) == [4, 4]


def test_a_slot_freed_beside_a_running_call_waits_for_its_share_of_a_batch_only(predictor):
    held = TEXTS[:2]

    class FirstBatchHeld:
        """The call on the first two texts waits for `release`; every other call runs at once."""

        labels = predictor.labels
        release = threading.Event()
        calls: ClassVar[list[int]] = []

        def predict_proba(self, texts):
            self.calls.append(len(texts))
            if list(texts) == held and not self.release.wait(30):
                raise TimeoutError("never released")
            return predictor.predict_proba(texts)

    async def scenario() -> list[int]:
        model = FirstBatchHeld()
        # max_wait is far beyond the test: only the batch-size rule can start the third batch.
        batcher = Batcher(model, ServingMetrics(), "m", max_batch_size=8, max_wait=60, parallel=2)
        first = [asyncio.ensure_future(batcher.predict([t], timeout=90)) for t in TEXTS]
        await asyncio.sleep(0)
        with ThreadPoolExecutor(2) as executor:
            batcher.start(executor)
            try:
                await asyncio.wait_for(asyncio.gather(*first[2:]), 10)  # the unheld batch of two
                # One slot runs, one is free after a batch of two: four texts are its half of eight.
                later = [asyncio.ensure_future(batcher.predict([t], timeout=90)) for t in TEXTS]
                results = await asyncio.wait_for(asyncio.gather(*later), 10)
            finally:
                model.release.set()
            await asyncio.gather(*first)
            # Both slots idle now, after batches of several: four texts are half of the whole
            # batch they share, so the batcher waits (here until the deadline a request brings).
            late = [asyncio.ensure_future(batcher.predict([t], timeout=1)) for t in TEXTS]
            answers = await asyncio.gather(*late, return_exceptions=True)
            assert all(isinstance(answer, DeadlineExceeded) for answer in answers)
            # Those requests left the queue: the batcher stops waiting for their companions.
            await asyncio.wait_for(batcher.close(), 10)
        assert np.allclose(np.concatenate(results), predictor.predict_proba(TEXTS), atol=1e-5)
        return sorted(model.calls[:2]) + model.calls[2:]

    assert asyncio.run(scenario()) == [2, 2, 4]


def test_a_torch_call_alone_uses_its_lone_threads_and_calls_side_by_side_their_own(bundle_path, predictor):
    class Recording(TorchPredictor):
        """Notes each call's intra-op threads; the call from a background thread holds."""

        seen: ClassVar[dict[str, int]] = {}
        entered = threading.Event()
        release = threading.Event()

        def logits(self, batch):
            main = threading.current_thread() is threading.main_thread()
            self.seen["beside" if main else "first"] = torch.get_num_threads()
            if not main:
                self.entered.set()
                self.release.wait(30)
            return super().logits(batch)

    previous = torch.get_num_threads()
    try:
        recording = Recording.from_bundle(load_bundle(bundle_path), threads=1, lone_threads=2)
        recording.neighbours.busy_cores = lambda: 0.0  # type: ignore[method-assign]  # a quiet machine
        first, out = _in_background(recording.predict_proba, TEXTS[:1])
        assert recording.entered.wait(30)
        beside = recording.predict_proba(TEXTS[1:2])  # while the first call is still running
        recording.release.set()
        first.join(30)
        assert recording.seen == {"first": 2, "beside": 1}
        assert np.allclose(np.vstack([out[0], beside]), predictor.predict_proba(TEXTS[:2]), atol=1e-5)
    finally:
        torch.set_num_threads(previous)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="reads Linux's /proc")
def test_a_lone_torch_call_leaves_cores_that_other_processes_keep_busy_to_them(bundle_path):
    seen: list[int] = []

    class Recording(TorchPredictor):
        def logits(self, batch):
            seen.append(torch.get_num_threads())
            return super().logits(batch)

    previous = torch.get_num_threads()
    cores = os.cpu_count() or 1
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        recording = Recording.from_bundle(load_bundle(bundle_path), threads=1, lone_threads=cores)
        time.sleep(0.3)
        recording.neighbours.busy_cores()  # the interval starts here
        burned = sum(_cpu_seconds(b.pid) for b in burners)
        started = time.monotonic()
        time.sleep(0.5)
        busy = recording.neighbours.busy_cores()
        burned = (sum(_cpu_seconds(b.pid) for b in burners) - burned) / (time.monotonic() - started)
        recording.predict_proba(TEXTS[:1])  # alone, yet the burners hold every core
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
        torch.set_num_threads(previous)
    assert busy is not None and busy >= 0.8 * burned  # they count as busy (clock ticks are coarse)
    assert busy > 0.5 and seen == [1]  # so the lone call kept to its one thread


def test_full_queue_answers_503_with_retry_after_and_the_client_retries(predictor):
    gated = GatedPredictor(predictor)
    with running(create_app(gated, ServeConfig(max_queue=2, max_items=2))) as (url, _):
        first, _ = _in_background(_predict, url, ["a"])
        wait_until(lambda: gated.calls == [1], what="first model call")
        queued, _ = _in_background(_predict, url, ["a", "b"])
        wait_until(
            lambda: metric(_metrics(url), "frugalml_queue_depth", model="train") == 2, what="queue full"
        )
        refused = httpx.post(f"{url}/v1/predict", json={"inputs": ["c"]})
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        assert "overloaded" in refused.json()["error"]
        with pytest.raises(fc.Overloaded):
            fc.Client(url, retries=0).predict(["c"])
        # A retrying client gets through once the queue moves.
        retrying, result = _in_background(fc.Client(url, retries=5, max_backoff=0.5).predict, ["c"])
        gated.gate.set()
        for thread in (first, queued, retrying):
            thread.join(30)
        assert len(result[0]) == 1
        text = _metrics(url)
    assert metric(text, "frugalml_requests_total", model="train", route="/v1/predict", status="503") >= 2


def test_clients_told_to_retry_after_one_second_come_back_spread_out():
    with fc.Client("http://127.0.0.1:1", max_backoff=5.0) as client:
        waits = [client.retry.delay(0, "1") for _ in range(200)]
        long_waits = [client.retry.delay(0, "60") for _ in range(20)]
    assert all(1 <= w <= 1.5 for w in waits)  # never sooner than the server asked
    assert np.std(waits) > 0.1  # not all at once: 20 clients in lock-step overloaded a queue again
    assert all(5.0 / 1.5 <= w <= 5.0 for w in long_waits)  # within max_backoff, still spread


def test_deadline_gives_504_and_expired_requests_cost_no_model_time(predictor):
    gated = GatedPredictor(predictor)
    with running(create_app(gated)) as (url, _):
        first, out = _in_background(_predict, url, ["a"])
        wait_until(lambda: gated.calls == [1], what="first model call")
        late = httpx.post(f"{url}/v1/predict", json={"inputs": ["b"]}, headers={"X-Request-Timeout": "0.2"})
        assert late.status_code == 504 and "deadline" in late.json()["error"]
        with pytest.raises(fc.DeadlineExceeded):
            fc.Client(url, timeout=0.2).predict(["c"])  # the client sends its deadline along
        assert metric(_metrics(url), "frugalml_queue_depth", model="train") == 0
        gated.gate.set()
        first.join(30)
        assert out[0].status_code == 200
        text = _metrics(url)
    assert gated.calls == [1]  # the expired requests never reached the model
    assert metric(text, "frugalml_requests_total", model="train", route="/v1/predict", status="504") >= 1


def test_disconnected_client_costs_no_model_time(predictor):
    gated = GatedPredictor(predictor)
    with running(create_app(gated)) as (url, _):
        first, _ = _in_background(_predict, url, ["a"])
        wait_until(lambda: gated.calls == [1], what="first model call")
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/predict", json={"inputs": ["b", "c"]}, timeout=0.3)
        # The client hung up: its texts leave the queue before any model call.
        wait_until(lambda: metric(_metrics(url), "frugalml_queue_depth", model="train") == 0, what="dropped")
        gated.gate.set()
        first.join(30)
        text = _metrics(url)
    assert gated.calls == [1]
    assert metric(text, "frugalml_requests_total", model="train", route="/v1/predict", status="499") == 1


class _QuickModel:
    """Model calls of 0 to 2 ms, so that deadlines of a few ms land in every phase of a batch."""

    labels: ClassVar[list[str]] = ["a", "b"]

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def predict_proba(self, texts):
        time.sleep(self.rng.uniform(0, 0.002))
        return np.full((len(texts), 2), 0.5, dtype=np.float32)


def test_requests_dropped_while_their_batch_forms_leave_the_queue_count_exact():
    """Deadlines and hang-ups that land at any moment, also between a request joining a batch and
    that batch starting, count its texts out of the queue once: a count gone negative lets the
    queue past its bound, and close() (the SIGTERM drain) would wait for it forever."""

    async def burst(seed: int, parallel: int) -> list[float]:
        rng = random.Random(seed)
        loop = asyncio.get_running_loop()
        metrics = ServingMetrics()
        batcher = Batcher(
            _QuickModel(seed), metrics, "m", max_batch_size=8, max_wait=0.002, max_queue=64, parallel=parallel
        )
        depths = []

        async def client() -> None:
            await asyncio.sleep(rng.uniform(0, 0.05))
            gone = loop.create_future()
            loop.call_later(rng.uniform(0, 0.006), lambda: gone.done() or gone.set_result(None))
            with contextlib.suppress(ClientGone, DeadlineExceeded, Overloaded):
                await batcher.predict(["card"] * rng.randint(1, 4), rng.uniform(0.0005, 0.006), gone)
            depths.append(metrics.registry.get_sample_value("frugalml_queue_depth", {"model": "m"}))

        with ThreadPoolExecutor(parallel) as executor:
            batcher.start(executor)
            await asyncio.gather(*(client() for _ in range(300)))
            await asyncio.wait_for(batcher.close(), 10)
        return [*depths, metrics.registry.get_sample_value("frugalml_queue_depth", {"model": "m"})]

    for seed in range(6):
        depths = asyncio.run(burst(seed, parallel=1 + seed % 2))
        assert min(depths) >= 0, f"seed {seed}: queue depth went negative ({min(depths)})"
        assert depths[-1] == 0  # drained


def test_api_key_guards_inference_routes_only(predictor):
    key = "s3cret-key"
    with running(create_app(predictor, ServeConfig(api_key=key))) as (url, _):
        body = {"inputs": ["a"]}
        missing = httpx.post(f"{url}/v1/predict", json=body)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert "API key" in missing.json()["error"]
        wrong = {"Authorization": "Bearer nope"}
        assert httpx.post(f"{url}/v1/predict", json=body, headers=wrong).status_code == 401
        assert httpx.post(f"{url}/v1/predict", json=body, headers={"Authorization": key}).status_code == 401
        good = {"Authorization": f"Bearer {key}"}
        assert httpx.post(f"{url}/v1/predict", json=body, headers=good).status_code == 200
        lower = {"Authorization": f"bearer {key}"}  # the scheme is case-insensitive (RFC 9110)
        assert httpx.post(f"{url}/v1/predict", json=body, headers=lower).status_code == 200
        v1_security = httpx.get(f"{url}/openapi.json").json()["paths"]["/v1/predict"]["post"]["security"]
        assert v1_security == [{"HTTPBearer": []}]
        v2 = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}
        assert httpx.post(f"{url}/v2/models/train/infer", json=v2).status_code == 401
        assert httpx.post(f"{url}/v2/models/train/infer", json=v2, headers=good).status_code == 200
        assert httpx.get(f"{url}/v2/models/train").status_code == 401
        for open_path in ("/healthz", "/readyz", "/metrics", "/v2/health/ready", "/v2/models/train/ready"):
            assert httpx.get(url + open_path).status_code == 200, open_path
        with pytest.raises(fc.AuthError):
            fc.Client(url).predict(["a"])
        with fc.Client(url, api_key=key) as client:
            assert client.predict(["a"])[0].label in predictor.labels
    accented = "s3cr3t-kéy"  # a key need not be ASCII; the clients send it as UTF-8
    with running(create_app(predictor, ServeConfig(api_key=accented))) as (url, _):
        with fc.Client(url, api_key=accented) as client:
            assert client.predict(["a"])[0].label in predictor.labels
        with pytest.raises(fc.AuthError):
            fc.Client(url, api_key="s3cr3t-key").predict(["a"])
        # Refused requests never reached a model: not counted as its traffic, on v1 as on v2.
        text = httpx.get(f"{url}/metrics").text
        assert metric(text, "frugalml_requests_total", status="401") == 0
        assert metric(text, "frugalml_requests_total", model="train", route="/v1/predict", status="200") >= 1
    # A key read from a secret file ends in a newline that no header can carry: it is trimmed.
    with running(create_app(predictor, ServeConfig(api_key="s3cret\n"))) as (url, _):
        with fc.Client(url, api_key="s3cret") as client:
            assert client.predict(["a"])[0].label in predictor.labels
        with fc.Client(url, api_key=" s3cret\n") as client:  # the client trims its copy too
            assert client.predict(["a"])[0].label in predictor.labels
    with pytest.raises(ValueError, match="line break"):
        fc.Client("http://127.0.0.1:1", api_key="s3c\nret")  # was reported as Unreachable
    for empty in ("", " \n"):  # an empty secret fails closed instead of opening the routes
        with pytest.raises(ValueError, match="api_key is empty"):
            ServeConfig(api_key=empty)


def test_sigterm_handling_drains_in_flight_requests_and_turns_readiness_off(predictor):
    gated = GatedPredictor(predictor)
    app = create_app(gated)
    with running(app) as (url, server):
        first, out = _in_background(_predict, url, ["a"])
        wait_until(lambda: gated.calls == [1], what="first model call")
        server.handle_exit(signal.SIGTERM, None)  # what uvicorn calls on SIGTERM

        async def readiness():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
                return await http.get("/readyz"), await http.post("/v1/predict", json={"inputs": ["b"]})

        ready, refused = asyncio.run(readiness())
        assert ready.status_code == 503 and ready.json() == {"error": "shutting down"}
        assert refused.status_code == 503
        gated.gate.set()
        first.join(30)
        assert out[0].status_code == 200  # the in-flight request was finished, not dropped


def test_requests_for_no_known_model_are_counted_alike_on_v1_and_v2(predictor):
    v2 = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}
    with running(create_app(predictor)) as (url, _):
        assert httpx.post(f"{url}/v1/predict", json={"inputs": ["a"], "model": "nope"}).status_code == 404
        assert httpx.post(f"{url}/v2/models/nope/infer", json=v2).status_code == 404
        assert httpx.post(f"{url}/v2/models/train/versions/nope/infer", json=v2).status_code == 404
        bad_header = {"X-Request-Timeout": "0"}
        assert httpx.post(f"{url}/v2/models/train/infer", json=v2, headers=bad_header).status_code == 422
        assert httpx.post(f"{url}/v1/predict", json={"inputs": ["a"]}, headers=bad_header).status_code == 422
        assert httpx.post(f"{url}/v2/models/train/infer", json=v2).status_code == 200
        text = _metrics(url)
    # Under model "", not under the default model, and v2 like v1.
    assert metric(text, "frugalml_requests_total", model="", route="/v1/predict", status="404") == 1
    assert (
        metric(text, "frugalml_requests_total", model="", route="/v2/models/{name}/infer", status="404") == 2
    )
    assert (
        metric(text, "frugalml_requests_total", model="", route="/v2/models/{name}/infer", status="422") == 1
    )
    assert metric(text, "frugalml_requests_total", model="", route="/v1/predict", status="422") == 1
    assert (
        metric(text, "frugalml_requests_total", model="train", route="/v2/models/{name}/infer", status="200")
        == 1
    )
    assert metric(text, "frugalml_requests_total", model="train", status="404") == 0


def _stalled_request(url: str) -> socket.socket:
    """A connection that has sent 12 of the 100 body bytes it announced, and then nothing."""
    stalled = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10)
    stalled.sendall(
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"inputs": ['
    )
    return stalled


def test_a_body_that_stalls_gets_408_within_the_timeout(predictor):
    with running(create_app(predictor, ServeConfig(timeout_s=0.5))) as (url, _):
        with _stalled_request(url) as stalled:
            answer = stalled.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 408") and "not received within 0.5 s" in answer
        assert httpx.post(f"{url}/v1/predict", json={"inputs": ["a"]}).status_code == 200  # still serving


def test_a_body_still_arriving_when_the_drain_runs_out_gets_a_json_503(predictor):
    with (
        running(create_app(predictor, ServeConfig(timeout_s=30)), drain_s=0.3) as (url, server),
        _stalled_request(url) as stalled,
    ):
        time.sleep(0.2)  # the handler is waiting for the rest of the body
        server.handle_exit(signal.SIGTERM, None)
        answer = stalled.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 503") and "shut down before" in answer


def test_a_request_sent_on_an_idle_connection_as_shutdown_begins_is_answered(predictor):
    with (
        running(create_app(predictor)) as (url, server),
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as idle,
    ):
        request = b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
        idle.sendall(request)
        assert idle.recv(4096).startswith(b"HTTP/1.1 200")  # kept alive, now idle
        server.handle_exit(signal.SIGTERM, None)
        # uvicorn stops listening, then shuts every connection down: an idle one is not closed
        # at once, which would reset a request already on its way, such as this one.
        wait_until(lambda: not any(s.is_serving() for s in server.servers), what="listener closed")
        idle.sendall(request)
        answer = idle.recv(4096)
    assert answer.startswith(b"HTTP/1.1 503") and b"connection: close" in answer.lower()


def test_a_request_still_running_when_the_drain_runs_out_gets_a_json_503(predictor):
    gated = GatedPredictor(predictor)
    with running(create_app(gated), drain_s=0.3) as (url, server):
        first, out = _in_background(_predict, url, ["a"])
        wait_until(lambda: gated.calls == [1], what="first model call")
        server.handle_exit(signal.SIGTERM, None)
        first.join(30)
        gated.gate.set()
    # Not uvicorn's plain-text 500: an answer the clients retry (it is a 503) and can read.
    answer = out[0]
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert "shut down before" in answer.json()["error"]


def test_several_models_and_versions(predictor, bundle_path, tmp_path):
    from frugalml.compress import export_onnx

    onnx_bundle = export_onnx(load_bundle(bundle_path), tmp_path)
    onnx = load_predictor(onnx_bundle)
    app = create_app([("intent", predictor), ("intent", onnx), ("other", predictor)])
    with running(app) as (url, _):
        assert "several models" in httpx.post(f"{url}/v1/predict", json={"inputs": ["a"]}).json()["error"]
        for model, version, bundle in [
            ("intent", None, predictor.bundle),
            ("intent", onnx_bundle.id, onnx_bundle),
            ("other", None, predictor.bundle),
        ]:
            body = {"inputs": TEXTS, "model": model, "version": version}
            answer = httpx.post(f"{url}/v1/predict", json=body).json()
            assert (answer["model"], answer["version"]) == (model, bundle.id)
            expected = predictor.predict_proba(TEXTS)
            assert [p["score"] for p in answer["predictions"]] == pytest.approx(expected.max(1), abs=1e-4)
        meta = httpx.get(f"{url}/v2/models/intent").json()
        assert meta["versions"] == [predictor.bundle.id, onnx_bundle.id]
        assert httpx.get(f"{url}/v2/models/intent/versions/{onnx_bundle.id}").json()["platform"] == (
            "onnxruntime_onnx"
        )
        assert httpx.get(f"{url}/v2/models/intent/versions/nope/ready").status_code == 404
        text = _metrics(url)
    assert metric(text, "frugalml_model_info", model="intent", format="onnx") == 1
    assert metric(text, "frugalml_requests_total", model="other", route="/v1/predict", status="200") == 1


def test_clients_reach_a_model_whose_name_needs_escaping_and_a_slash_is_refused(predictor):
    name = "intent v2?#%"  # a space, ? and # would end the path unescaped
    request = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}
    with running(create_app([(name, predictor)])) as (url, _):
        with fc.Client(url) as client:
            assert client.infer(name, request)["model_name"] == name
            version = predictor.bundle.id
            assert client.infer(name, request, version=version)["model_version"] == version

        async def infer_async() -> dict:
            async with fc.AsyncClient(url) as client:
                return await client.infer(name, request)

        assert asyncio.run(infer_async())["model_name"] == name
    for unreachable in ("team/intent", "..", "."):  # "." and ".." vanish from a URL path
        with pytest.raises(FrugalError, match="cannot be served"):
            create_app([(unreachable, predictor)])


def test_queue_depth_of_a_model_adds_up_its_versions(predictor):
    async def scenario() -> float:
        metrics = ServingMetrics()
        gated = GatedPredictor(predictor)
        busy = Batcher(gated, metrics, "intent", max_wait=0)
        other = Batcher(predictor, metrics, "intent", max_wait=0)
        with ThreadPoolExecutor(2) as executor:
            busy.start(executor)
            other.start(executor)
            first = asyncio.ensure_future(busy.predict(TEXTS[:1], timeout=30))
            while gated.calls != [1]:
                await asyncio.sleep(0.01)
            waiting = [asyncio.ensure_future(busy.predict(TEXTS[:2], timeout=30)) for _ in range(3)]
            await asyncio.sleep(0)
            await other.predict(TEXTS, timeout=30)  # the other version comes and goes meanwhile
            depth = metrics.registry.get_sample_value("frugalml_queue_depth", {"model": "intent"})
            gated.gate.set()
            await asyncio.gather(first, *waiting)
            await busy.close()
            await other.close()
        return depth

    assert asyncio.run(scenario()) == 6  # three requests of two texts still wait on the first version


def test_async_client_predicts_and_raises_clear_errors(server, predictor):
    async def go():
        async with fc.AsyncClient(server) as client:
            predictions = await client.predict(TEXTS)
            with pytest.raises(fc.BadRequest) as bad:
                await client.predict(["a" * 61])
            return predictions, bad.value

    predictions, error = asyncio.run(go())
    expected = predictor.predict_proba(TEXTS)
    assert [p.label for p in predictions] == [predictor.labels[i] for i in expected.argmax(1)]
    assert error.status == 422 and "at most 60" in str(error)
    with pytest.raises(fc.Unreachable):
        fc.Client("http://127.0.0.1:9", retries=1, backoff=0.01).predict(["a"])
    with pytest.raises(TypeError):
        fc.Client(server).predict("one string")
    # A long client timeout is capped at the server's longest deadline; none leaves it to the server.
    for timeout in (7200, None):
        with fc.Client(server, timeout=timeout) as client:
            assert [p.label for p in client.predict(TEXTS)] == [p.label for p in predictions]


def test_settings_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="max_items"):
        ServeConfig(max_items=10, max_queue=5)
    with pytest.raises(ValueError, match="at least 1"):
        ServeConfig(max_batch_size=0)
    with pytest.raises(ValueError, match="parallel must be at least 1"):
        ServeConfig(parallel=0)


def test_traced_torch_predictor_matches_eager(bundle_path, predictor):
    traced = load_predictor(load_bundle(bundle_path), jit=True, batch_size=3)
    assert traced.padded_trace is not None and traced.packed_trace is not None  # a BERT: packed too
    texts = [*TEXTS, "refund", "please help me my card was stolen today and i need a new one", "card"]
    packed_rows = []  # rows per packed call (its fourth input holds each text's length)
    trace = traced.packed_trace
    traced.packed_trace = lambda *inputs: packed_rows.append(len(inputs[3])) or trace(*inputs)
    # 7 texts of 3 to 16 tokens: packed calls of 3, 3 and 1 rows; one text alone goes padded.
    np.testing.assert_allclose(traced.predict_proba(texts), predictor.predict_proba(texts), atol=1e-6)
    assert packed_rows == [3, 3, 1]
    np.testing.assert_allclose(
        traced.predict_proba(texts[5:6]), predictor.predict_proba(texts[5:6]), atol=1e-6
    )
    assert packed_rows == [3, 3, 1]
    # Two texts: fewer than the packed call's grids, one of which stays empty.
    np.testing.assert_allclose(
        traced.predict_proba(texts[4:6]), predictor.predict_proba(texts[4:6]), atol=1e-6
    )
    assert packed_rows == [3, 3, 1, 2]


@pytest.mark.parametrize("normalize", [True, False])
def test_packed_forward_is_the_padded_forward(tiny_base, normalize):
    from frugalml.models import FrugalTextClassifier, FrugalTextClassifierConfig
    from frugalml.models.batching import collate
    from frugalml.runtime.packed import PackedClassifier, pack, packable

    # Weights far from the usual 0.02 spread: sharp attention, so a wrong mask or scale shows.
    encoder = {**json.loads((tiny_base / "config.json").read_text()), "initializer_range": 0.5}
    model = FrugalTextClassifier(FrugalTextClassifierConfig(encoder, normalize=normalize, num_labels=5))
    model.eval()
    assert packable(model)
    decoder = FrugalTextClassifier(FrugalTextClassifierConfig({**encoder, "is_decoder": True}, num_labels=5))
    assert not packable(decoder)  # a causal mask the packed forward does not apply
    rng = np.random.default_rng(0)
    vocab = model.encoder.config.vocab_size
    ids = [rng.integers(5, vocab, size=n).tolist() for n in (1, 9, 4, 9, 2, 6)]
    with torch.inference_mode():
        padded = model(**collate(ids, pad_id=0)).logits
        # One grid, grids of several texts, a text per grid, and grids left empty; out of order.
        for groups in (1, 2, 3, 6, 8):
            packed = PackedClassifier(model)(*pack(ids, groups).values())
            torch.testing.assert_close(packed, padded, atol=1e-4, rtol=1e-4)


def test_encoders_other_than_bert_are_served_padded(tiny_base):
    from transformers import AutoTokenizer

    from frugalml.models import FrugalTextClassifier, FrugalTextClassifierConfig
    from frugalml.runtime.packed import packable
    from frugalml.runtime.torch_predictor import TorchPredictor

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    encoder = {
        "model_type": "distilbert",
        "vocab_size": len(tokenizer),
        "dim": 16,
        "hidden_dim": 32,
        "n_layers": 1,
        "n_heads": 2,
    }
    model = FrugalTextClassifier(FrugalTextClassifierConfig(encoder, num_labels=2))
    traced = TorchPredictor(model, tokenizer, ["a", "b"], max_length=32, jit=True)
    assert not packable(model)
    assert traced.packed_trace is None and traced.padded_trace is not None
    eager = TorchPredictor(model, tokenizer, ["a", "b"], max_length=32)
    np.testing.assert_allclose(traced.predict_proba(TEXTS), eager.predict_proba(TEXTS), atol=1e-6)


def test_cores_outside_the_process_cpuset_are_not_neighbours(tmp_path, monkeypatch):
    from frugalml.runtime import cpu

    ticks = os.sysconf("SC_CLK_TCK")
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal: cpu1 busy 100 ticks, cpu0 and cpu2 far more
    stat.write_text(
        "cpu  9000 0 0 0 0 0 0 0\n"
        "cpu0 4000 0 0 50 0 0 0 0\n"
        "cpu1 60 10 20 900 7 4 3 3\n"
        "cpu2 4940 0 0 0 0 0 0 0\n"
        "intr 1 2 3\n"
    )
    monkeypatch.setattr(cpu, "STAT", stat)
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: {1})
    assert cpu._machine_busy_s() == pytest.approx(100 / ticks)  # iowait and idle are not busy
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: {0, 1})
    assert cpu._machine_busy_s() == pytest.approx(4100 / ticks)
