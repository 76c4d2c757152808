"""`tune` on images end to end: load, train, evaluate, write the bundle, record its lineage."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from frugalml.bundle import IMAGE_TASK, Bundle, new_bundle_id, write_bundle
from frugalml.data.images import ImageDataset, load_eval_images, load_images
from frugalml.data.split import stratified_split
from frugalml.devices import resolve_device
from frugalml.errors import DataError, FrugalError
from frugalml.evaluate import evaluate
from frugalml.lineage import open_store, run_path
from frugalml.models.vision import save_image_model
from frugalml.progress import Reporter
from frugalml.runtime.image_predictor import ImagePredictor
from frugalml.settings import Settings, get_settings
from frugalml.tune.config import ImageTuneConfig, TuneCompute
from frugalml.tune.images import ImageTuneResult, tune_images
from frugalml.tune.workflow import TuneSummary


def load_image_splits(path: str | Path, config: ImageTuneConfig) -> tuple[ImageDataset, ImageDataset]:
    """Training and validation images: a MedMNIST file's train and val splits, else a stratified
    `val_fraction` of the data held out."""
    train = load_images(path, image_size=config.image_size, mode=config.mode)
    height, width = train.size
    if height != width:
        raise DataError(f"{train.source}: images are {width}x{height}; give --image-size to make them square")
    train.check_trainable()
    if Path(path).suffix.lower() == ".npz":
        try:
            val = load_images(
                path, split="val", image_size=height, mode="L" if train.channels == 1 else "RGB"
            )
        except DataError:
            val = None
        if val is not None:
            val.check_labels_known(train.label_names)
            return train, val
    return stratified_split(train, config.val_fraction, config.seed)


def tune_images_and_register(
    train_path: str | Path,
    config: ImageTuneConfig,
    eval_path: str | Path | None = None,
    name: str | None = None,
    reporter: Reporter | None = None,
    settings: Settings | None = None,
    compute: TuneCompute | None = None,
) -> TuneSummary:
    """Train an image classifier, evaluate it, write an immutable bundle and record it."""
    settings = settings or get_settings()
    compute = compute or TuneCompute()
    if compute.workers != 1 or compute.backend != "local":
        raise FrugalError("image tuning runs in one process: leave out --workers and --backend")
    device = resolve_device(compute.device)
    train, val = load_image_splits(train_path, config)
    test = None
    if eval_path is not None:
        test = load_eval_images(eval_path, train.size[0], train.channels)
        test.check_labels_known(train.label_names)
    lineage = open_store(settings)
    lineage.add_dataset(train)
    run_config = {
        **asdict(config),
        "task": IMAGE_TASK,
        "train": run_path(train_path),
        "eval": run_path(eval_path),
    }
    with lineage.run("tune", run_config, train.sha256) as run:
        result = tune_images(train, val, config, reporter, device)
        metrics: dict[str, Any] = {"val_accuracy": result.val_accuracy}
        if result.val_auc is not None:
            metrics["val_auc"] = result.val_auc
        if test is not None:
            report = evaluate(ImagePredictor(result.model, result.config, result.labels), test)
            metrics.update(accuracy=report.accuracy, macro_f1=report.macro_f1, eval_n=report.n)
            if report.roc_auc is not None:
                metrics["roc_auc"] = report.roc_auc
        bundle = save_image_bundle(
            result, settings.bundles_dir, name or Path(train_path).stem, metrics, config, train.sha256
        )
        lineage.add_bundle(bundle, run_id=run.id, data_sha256=train.sha256)
        summary = TuneSummary.of_run(
            bundle,
            result,
            run.id,
            compute.device,
            method=bundle.method,
            base=result.config.architecture,
            metrics=metrics,
            workers=1,
            resumed_from_step=None,
            adapter_bytes=0,
            task=IMAGE_TASK,
        )
        run.summary = summary.to_json()
    return summary


def save_image_bundle(
    result: ImageTuneResult,
    store: Path,
    name: str,
    metrics: dict[str, Any],
    config: ImageTuneConfig,
    data_sha256: str = "",
    parents: list[str] | None = None,
) -> Bundle:
    """Write a trained image model as a bundle: model.safetensors and image_config.json."""
    bundle = Bundle(
        id=new_bundle_id(),
        name=name,
        labels=result.labels,
        base_model=result.config.architecture,
        method="weights" if config.weights else "scratch",
        task=IMAGE_TASK,
        metrics={
            **metrics,
            "trainable_params": result.trainable_params,
            "train_seconds": round(result.train_seconds, 2),
        },
        parents=parents or [],
        config={
            **asdict(config),
            "weights": Path(config.weights).name if config.weights else None,  # no build-machine path
            "model": result.config.architecture,
            "data_sha256": data_sha256,
            "history": result.history,
        },
    )
    return write_bundle(store, bundle, lambda folder: save_image_model(folder, result.model, result.config))
