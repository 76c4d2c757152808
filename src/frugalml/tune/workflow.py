"""`tune` end to end, shared by the CLI and the pipeline: load, tune, evaluate, write, record."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from frugalml.bundle import Bundle, new_bundle_id, write_bundle
from frugalml.data import load_dataset
from frugalml.evaluate import evaluate
from frugalml.lineage import open_store, run_path
from frugalml.models.base import portable_base_name
from frugalml.monitor.reference import Reference, reference_of, write_reference
from frugalml.progress import Reporter
from frugalml.runtime.torch_predictor import TorchPredictor
from frugalml.settings import Settings, get_settings
from frugalml.tune.config import TuneConfig
from frugalml.tune.trainer import TuneResult, tune


@dataclass(frozen=True)
class TuneSummary:
    """What a tune run made: `frugalml tune --json` prints it, the pipeline's tune step outputs it."""

    bundle_id: str
    bundle_path: str
    method: str
    base: str
    metrics: dict[str, float | int]  # val_accuracy; with an eval file accuracy, macro_f1, eval_n
    train_seconds: float
    trainable_params: int
    total_params: int
    peak_rss_mb: float
    epochs_run: int
    size_bytes: int
    run_id: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def tune_and_register(
    train_path: str | Path,
    config: TuneConfig,
    eval_path: str | Path | None = None,
    name: str | None = None,
    columns: dict[str, str | None] | None = None,
    reporter: Reporter | None = None,
    settings: Settings | None = None,
) -> TuneSummary:
    """Tune on a data file, evaluate, write an immutable bundle and record it in the lineage store."""
    settings = settings or get_settings()
    options: dict[str, Any] = columns or {}  # load_dataset's column keywords
    train = load_dataset(train_path, **options)
    train.check_trainable()
    test = load_dataset(eval_path, **options) if eval_path else None
    if test is not None:
        test.check_labels_known(train.label_names)
    lineage = open_store(settings)
    lineage.add_dataset(train)
    run_config = {**asdict(config), "train": run_path(train_path), "eval": run_path(eval_path)}
    with lineage.run("tune", run_config, train.sha256) as run:
        result = tune(train, config, reporter)
        metrics = {"val_accuracy": result.val_accuracy}
        if test is not None:
            report = evaluate(TorchPredictor(result.model, result.tokenizer, result.labels), test)
            metrics.update(accuracy=report.accuracy, macro_f1=report.macro_f1, eval_n=report.n)
        bundle = save_tuned(
            result,
            settings.bundles_dir,
            name or Path(train_path).stem,
            metrics,
            data_sha256=train.sha256,
            reference=reference_of(
                TorchPredictor(result.model, result.tokenizer, result.labels), train.texts
            ),
        )
        lineage.add_bundle(bundle, run_id=run.id, data_sha256=train.sha256)
        summary = TuneSummary(
            bundle_id=bundle.id,
            bundle_path=str(bundle.path),
            method=config.method,
            base=config.base,
            metrics=metrics,
            train_seconds=result.train_seconds,
            trainable_params=result.trainable_params,
            total_params=result.total_params,
            peak_rss_mb=result.peak_rss_mb,
            epochs_run=result.epochs_run,
            size_bytes=bundle.size_bytes,
            run_id=run.id,
        )
        run.summary = summary.to_json()
    return summary


def save_tuned(
    result: TuneResult,
    store: Path,
    name: str,
    metrics: dict[str, Any],
    data_sha256: str = "",
    parents: list[str] | None = None,
    reference: Reference | None = None,
) -> Bundle:
    """Write a tuning result as a bundle: a Hugging Face model folder, plus the PEFT adapter and
    the reference distributions for drift checks (monitor/reference.py)."""

    def populate(folder: Path) -> None:
        result.model.save_pretrained(folder)
        result.tokenizer.save_pretrained(folder)
        adapter: Any = result.peft_model  # a peft PeftModel, typed as nn.Module
        if adapter is not None:
            # The methods never touch the embeddings: saying so also skips PEFT's hub lookup of the base.
            adapter.save_pretrained(folder / "adapter", save_embedding_layers=False)
        if reference is not None:
            write_reference(folder, reference)

    base = portable_base_name(result.config["base"])  # no build-machine path in the bundle
    bundle = Bundle(
        id=new_bundle_id(),
        name=name,
        labels=result.labels,
        base_model=base,
        method=result.config["method"],
        metrics={
            **metrics,
            "trainable_params": result.trainable_params,
            "train_seconds": round(result.train_seconds, 2),
        },
        parents=parents or [],
        config={**result.config, "base": base, "data_sha256": data_sha256, "history": result.history},
    )
    return write_bundle(store, bundle, populate)
