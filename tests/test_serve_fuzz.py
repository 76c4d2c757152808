"""API fuzzing: schemathesis generates requests from /openapi.json; no answer may be a 5xx.

The server runs with an API key and small limits, so generated bodies reach the model as well as
every validation path; the key is sent with each case.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from test_serve_support import running, tiny_intent_bundle

from frugalml.bundle import load_bundle
from frugalml.runtime import load_predictor
from frugalml.serve import ServeConfig, create_app

KEY = "fuzz-key"


@pytest.fixture(scope="module")
def served(tiny_base, tmp_path_factory):
    predictor = load_predictor(load_bundle(tiny_intent_bundle(tiny_base, tmp_path_factory.mktemp("fuzz"))))
    config = ServeConfig(api_key=KEY, max_items=8, max_text_chars=200, max_body_bytes=16_384)
    with running(create_app(predictor, config)) as (url, _):
        yield url


def _operations(url: str) -> list:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_no_request_gets_a_server_error(served):
    # Operation by operation through Hypothesis (schemathesis's pytest plugin predates pytest 9).
    operations = _operations(served)
    assert {op.path for op in operations} >= {"/v1/predict", "/v2/models/{name}/infer"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def call(case):
            response = case.call(headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
            parameters = case.body.get("parameters") if isinstance(case.body, dict) else None
            asked = isinstance(parameters, dict) and "timeout" in parameters
            deadline = "X-Request-Timeout" in (case.headers or {}) or asked
            if response.status_code == 504 and deadline:
                return  # the generated deadline (down to 5e-324 s) passed: 504 is the right answer
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

        call()
