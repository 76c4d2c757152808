"""`eval` end to end: load a bundle and a labelled file, score the bundle on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from frugalml.bundle import Bundle
from frugalml.data import load_dataset
from frugalml.evaluate.config import EvalConfig
from frugalml.evaluate.metrics import EvalReport, evaluate
from frugalml.lineage import open_store, resolve_bundle
from frugalml.runtime import load_predictor
from frugalml.runtime.formats import check_device
from frugalml.settings import Settings


def evaluate_bundle(
    ref: str,
    data_path: str | Path,
    columns: dict[str, str | None] | None = None,
    settings: Settings | None = None,
    *,
    config: EvalConfig | None = None,
) -> tuple[Bundle, EvalReport]:
    config = config or EvalConfig()
    bundle = resolve_bundle(ref, open_store(settings))
    check_device(bundle, config.device)  # before the data loads
    options: dict[str, Any] = columns or {}  # load_dataset's column keywords
    data = load_dataset(data_path, **options)
    predictor = load_predictor(bundle, device=config.device, batch_size=config.batch_size)
    return bundle, evaluate(predictor, data, perturb=config.perturb, perturb_seed=config.perturb_seed)
