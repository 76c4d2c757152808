"""The real offline MiniLM encoder on the bundled example data (slow: about a minute)."""

from __future__ import annotations

from pathlib import Path

import pytest

from frugalml.evaluate.workflow import evaluate_bundle
from frugalml.tune import TuneConfig
from frugalml.tune.workflow import tune_and_register

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "data"


@pytest.mark.slow
def test_minilm_head_routes_support_intents(home):
    summary = tune_and_register(
        EXAMPLES / "support_train.csv", TuneConfig(method="head"), eval_path=EXAMPLES / "support_test.csv"
    )
    # 12 intents, 180 test queries: a frozen MiniLM with a trained head gets most of them right.
    assert summary.metrics["accuracy"] >= 0.85
    bundle, report = evaluate_bundle(summary.bundle_id, EXAMPLES / "support_test.csv")
    assert bundle.base_model == "minilm" and report.accuracy == summary.metrics["accuracy"]
