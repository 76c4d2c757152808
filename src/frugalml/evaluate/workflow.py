"""`eval` end to end: load a bundle and a labelled file, score the bundle on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from frugalml.bundle import IMAGE_TASK, Bundle
from frugalml.data import Dataset, load_dataset
from frugalml.data.images import ImageDataset, load_eval_images
from frugalml.errors import FrugalError
from frugalml.evaluate.config import EvalConfig
from frugalml.evaluate.images import plot_wrong
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
    wrong: Path | None = None,
) -> tuple[Bundle, EvalReport]:
    """Score a bundle on labelled data of its task. `wrong`: for an image model, write a PNG grid
    of its most confidently wrong images there."""
    config = config or EvalConfig()
    bundle = resolve_bundle(ref, open_store(settings))
    check_device(bundle, config.device)  # before the data loads
    data: Dataset | ImageDataset
    if bundle.task == IMAGE_TASK:
        from frugalml.models.vision import load_image_config

        model = load_image_config(bundle)
        data = load_eval_images(data_path, model.image_size, model.channels)
    else:
        if wrong is not None:
            raise FrugalError("--wrong draws images; this bundle classifies texts")
        options: dict[str, Any] = columns or {}  # load_dataset's column keywords
        data = load_dataset(data_path, **options)
    predictor = load_predictor(bundle, device=config.device, batch_size=config.batch_size)
    report = evaluate(predictor, data, perturb=config.perturb, perturb_seed=config.perturb_seed)
    if wrong is not None and isinstance(data, ImageDataset) and report.probabilities is not None:
        plot_wrong(data.images, data.require_labels(), predictor.labels, report.probabilities, wrong)
    return bundle, report
