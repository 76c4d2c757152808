"""The `eval` pipeline step.

- id: eval
  eval: {bundle: "${tune.bundle_id}", data: data/test.csv}
"""

from __future__ import annotations

from typing import Any

from frugalml.evaluate.workflow import evaluate_bundle
from frugalml.step_kind import COLUMN_KEYS, StepContext, column_settings, step_kind


def run_eval(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    bundle, report = evaluate_bundle(args["bundle"], args["data"], column_settings(args), context.settings)
    # bundle_path: a cached result stands only while its bundle still loads (pipeline._still_valid).
    return {"bundle_id": bundle.id, "bundle_path": str(bundle.path), **report.summary()}


EVAL = step_kind(
    run_eval,
    required={"bundle", "data"},
    optional=COLUMN_KEYS,
    outputs={"bundle_id", "bundle_path", "n", "accuracy", "macro_f1", "texts_per_second"},
)
