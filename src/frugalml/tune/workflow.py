"""`tune` end to end, shared by the CLI and the pipeline: load, tune, evaluate, write, record."""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from frugalml.bundle import TEXT_TASK, Bundle, new_bundle_id, write_bundle
from frugalml.data import load_dataset
from frugalml.errors import FrugalError
from frugalml.evaluate import evaluate
from frugalml.lineage import LineageStore, open_store, run_path
from frugalml.models.base import portable_base_name
from frugalml.monitor.reference import Reference, reference_of, write_reference
from frugalml.progress import Reporter
from frugalml.runtime.torch_predictor import TorchPredictor
from frugalml.settings import Settings, get_settings
from frugalml.tune.checkpoint import job_folder, latest_checkpoint, run_folder
from frugalml.tune.config import TuneCompute, TuneConfig
from frugalml.tune.loop import Checkpointing, EpochHook
from frugalml.tune.trainer import TuneResult, tune
from frugalml.tune.transfer import parent_bundle


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
    device: str  # as asked: auto, cpu, cuda[:N], mps
    workers: int
    resumed_from_step: int | None  # the checkpoint's step this run continued from
    adapter_bytes: int  # the method's trained weights apart from the head (full: the encoder)
    task: str = TEXT_TASK  # what the model classifies: text-classification, image-classification

    @classmethod
    def of_run(
        cls, bundle: Bundle, result: Any, run_id: str, device: str | None, **fields: Any
    ) -> TuneSummary:
        """The summary of a registered bundle and the training result (text or image) it came from;
        `fields` gives the rest (method, base, metrics, ...)."""
        return cls(
            bundle_id=bundle.id,
            bundle_path=str(bundle.path),
            train_seconds=result.train_seconds,
            trainable_params=result.trainable_params,
            total_params=result.total_params,
            peak_rss_mb=result.peak_rss_mb,
            epochs_run=result.epochs_run,
            size_bytes=bundle.size_bytes,
            run_id=run_id,
            device=device or "auto",
            **fields,
        )

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
    compute: TuneCompute | None = None,
    resume: str | None = None,
    on_epoch: EpochHook | None = None,
) -> TuneSummary:
    """Tune on a data file, evaluate, write an immutable bundle and record it in the lineage store.

    `compute`: where to train (device, data-parallel workers, checkpoint interval); `resume`: the
    id of a killed tune run to continue from its newest checkpoint. Inside a job (FRUGALML_JOB_ID
    set) a retried attempt continues from the checkpoint of the attempt before it by itself.
    """
    settings = settings or get_settings()
    compute = compute or TuneCompute()
    options: dict[str, Any] = columns or {}  # load_dataset's column keywords
    train = load_dataset(train_path, **options)
    train.check_trainable()
    test = load_dataset(eval_path, **options) if eval_path else None
    if test is not None:
        test.check_labels_known(train.label_names)
    lineage = open_store(settings)
    if config.parent is not None:  # recorded by id: the same parent, however the user named it
        config = replace(config, parent=parent_bundle(config.parent, lineage, config.base).id)
    lineage.add_dataset(train)
    run_config = {**asdict(config), "train": run_path(train_path), "eval": run_path(eval_path)}
    folder, start = _checkpoint_start(settings.home, lineage, resume, run_config, train.sha256)
    with lineage.run("tune", run_config, train.sha256, resume=start["run_id"] if start else None) as run:
        folder = folder or run_folder(settings.home, run.id)
        checkpointing = Checkpointing(folder, compute.checkpoint_every, run.id, start)
        result = tune(
            train, config, reporter, compute, checkpointing, storage=settings.home / "ray", on_epoch=on_epoch
        )
        metrics = {"val_accuracy": result.val_accuracy, "val_loss": result.val_loss}
        if test is not None:
            report = evaluate(TorchPredictor(result.model, result.tokenizer, result.labels), test)
            metrics.update(accuracy=report.accuracy, macro_f1=report.macro_f1, eval_n=report.n)
        bundle = save_tuned(
            result,
            settings.bundles_dir,
            name or Path(train_path).stem,
            metrics,
            data_sha256=train.sha256,
            parents=[config.parent] if config.parent else None,
            reference=reference_of(
                TorchPredictor(result.model, result.tokenizer, result.labels), train.texts
            ),
        )
        lineage.add_bundle(bundle, run_id=run.id, data_sha256=train.sha256)
        summary = TuneSummary.of_run(
            bundle,
            result,
            run.id,
            compute.device,
            method=config.method,
            base=config.base,
            metrics=metrics,
            workers=compute.workers,
            resumed_from_step=start["global_step"] if start else None,
            adapter_bytes=result.adapter_bytes,
        )
        run.summary = summary.to_json()
    shutil.rmtree(folder, ignore_errors=True)  # the bundle is registered: nothing to resume
    return summary


def _checkpoint_start(
    home: Path, lineage: LineageStore, resume: str | None, run_config: dict[str, Any], data_sha256: str
) -> tuple[Path | None, dict[str, Any] | None]:
    """The checkpoint folder to use (None: the new run's own) and the checkpoint to continue from."""
    if resume is None:
        folder = job_folder(home)
        start = latest_checkpoint(folder) if folder else None
        if start is not None and (lineage.get_run(start["run_id"]) or {}).get("status") == "done":
            start = None  # an attempt that finished its run: this one starts afresh
        return folder, start
    row = lineage.get_run(resume)
    if row is None or row["kind"] != "tune":
        raise FrugalError(f"no tune run {resume!r} in the lineage store at {lineage.path}")
    if row["status"] == "done":
        raise FrugalError(f"run {resume} finished (its bundle is registered): nothing to resume")
    if row["status"] == "running":
        raise FrugalError(f"run {resume} is still running (pid {row['pid']} on {row['host']})")
    changed = sorted(
        k for k, v in run_config.items() if k not in ("train", "eval") and row["config"].get(k) != v
    )
    if row["data_sha256"] != data_sha256 or changed:
        what = ", ".join(changed + (["training data"] if row["data_sha256"] != data_sha256 else []))
        raise FrugalError(
            f"run {resume} was started with other settings ({what}); resume it with the same ones"
        )
    folder = run_folder(home, resume)
    start = latest_checkpoint(folder)
    if start is None:
        raise FrugalError(f"run {resume} left no intact checkpoint in {folder} to resume from")
    return folder, start


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
        # From a parent bundle, the adapter applies to the parent's merged encoder, not to the
        # base its config names: only the merged model is written.
        if adapter is not None and not result.config.get("parent"):
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
