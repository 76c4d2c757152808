"""`compress` end to end: build candidate bundles, measure each, keep the front, select.

Shared by the CLI command and the pipeline step. Each bundle is registered with its parent and the
compress run as soon as it is written, so a run that dies leaves no bundle the lineage store does
not know; figures measured later (on the selection split, never the training data) are added to
its row, and go into the result and the report files.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from frugalml.bundle import IMAGE_TASK, TEXT_TASK, Bundle
from frugalml.compress.config import DEFAULT_CHANNELS, CompressConfig
from frugalml.compress.context import CompressContext
from frugalml.compress.defaults import chosen_image_settings, chosen_settings
from frugalml.compress.image_distill import STUDENT
from frugalml.compress.measure import measure_in_subprocess
from frugalml.compress.report import write_report
from frugalml.compress.result import MEASURED, CompressResult, rank
from frugalml.compress.search import Recipe, describe, recipes
from frugalml.compress.techniques import apply_technique
from frugalml.data import Dataset, load_dataset
from frugalml.data.images import ImageDataset, load_images
from frugalml.devices import resolve_device
from frugalml.errors import FrugalError
from frugalml.lineage import LineageStore, open_store, resolve_bundle, run_path
from frugalml.models import load_bundle_config
from frugalml.models.vision import load_image_config
from frugalml.progress import Reporter, SilentReporter
from frugalml.settings import Settings, get_settings


@dataclass
class Inputs:
    """What a run reads: the bundle to compress and the data."""

    baseline: Bundle
    train: Dataset | ImageDataset
    dev: Dataset | ImageDataset  # held-out: what candidates are selected on
    unlabelled: list[str]


@dataclass
class Measurements:
    figures: dict[str, dict[str, Any]]  # bundle id -> its figures, for every bundle measured
    failed: list[dict[str, str]]  # candidates that could not be measured, and why
    repeat: dict[str, Any]  # the baseline's figures measured again, last


def compress_and_register(
    bundle_ref: str | Path,
    train_path: str | Path,
    eval_path: str | Path,
    config: CompressConfig | None = None,
    *,
    unlabelled_path: str | Path | None = None,
    columns: dict[str, str | None] | None = None,
    out_dir: str | Path | None = None,
    reporter: Reporter | None = None,
    settings: Settings | None = None,
) -> CompressResult:
    """Compress a bundle under an accuracy budget; `.to_json()` is the document `--json` prints."""
    config = config or CompressConfig()
    # Here, not in distill: a candidate's failure is listed and the run goes on, but a device
    # this machine lacks would fail every distillation.
    resolve_device(config.device)
    settings = settings or get_settings()
    reporter = reporter or SilentReporter()
    if out_dir and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise FrugalError(f"{out_dir}: exists and is not a folder; --out names the report's folder")
    lineage = open_store(settings)
    inputs = _read_inputs(bundle_ref, train_path, eval_path, unlabelled_path, columns or {}, lineage)
    baseline, train = inputs.baseline, inputs.train
    if baseline.task == TEXT_TASK:
        config = chosen_settings(config, len(train), _source_layers(baseline))
    else:
        config = chosen_image_settings(config, len(train))
    lineage.add_dataset(train)
    threads = config.threads or os.cpu_count() or 1
    run_config = {
        **asdict(config),
        "bundle": baseline.id,
        "train": run_path(train_path),
        "eval": run_path(eval_path),
    }
    plan = _plan(baseline, config)  # before the run starts: a plan that fails records no run
    with lineage.run("compress", run_config, train.sha256) as run:
        context = CompressContext(
            settings.bundles_dir, train, baseline, inputs.unlabelled, config.seed, reporter, config.device
        )

        def register(bundle: Bundle) -> None:
            lineage.add_bundle(bundle, run.id, train.sha256)

        built, failed = _build(plan, baseline, context, config, register=register)
        candidates = [(recipe, built[recipe]) for recipe in plan if recipe in built]

        def record(bundle: Bundle, figures: dict[str, Any]) -> None:
            if bundle is not baseline:  # the baseline's row belongs to the run that made it
                lineage.update_bundle_metrics(bundle.id, {k: figures[k] for k in MEASURED})

        measured = _measure(baseline, candidates, inputs.dev, threads, config, reporter, record=record)
        candidates = [(recipe, bundle) for recipe, bundle in candidates if bundle.id in measured.figures]
        result = rank(
            baseline,
            candidates,
            measured.figures,
            max_drop=config.max_drop,
            failed=failed + measured.failed,
            run_id=run.id,
        )
        first = measured.figures[baseline.id]
        result.drift = {  # relative change of the baseline's figures from first to last measurement
            "p50_ms": measured.repeat["p50_ms"] / first["p50_ms"] - 1,
            "batch32_per_s": measured.repeat["batch32_per_s"] / first["batch32_per_s"] - 1,
        }
        if config.keep == "front":
            _remove_unkept(lineage, result, list(built.values()))
        folder = Path(out_dir) if out_dir else settings.home / "reports" / run.id
        result.report = write_report(result.to_json(), folder)
        run.summary = {"selected": (result.selected or {}).get("bundle_id")}
    return result


def _read_inputs(
    bundle_ref: str | Path,
    train_path: str | Path,
    eval_path: str | Path,
    unlabelled_path: str | Path | None,
    columns: dict[str, Any],  # load_dataset's column keywords
    lineage: LineageStore,
) -> Inputs:
    baseline = resolve_bundle(str(bundle_ref), lineage)
    train: Dataset | ImageDataset
    dev: Dataset | ImageDataset
    if baseline.task == IMAGE_TASK:
        if unlabelled_path:
            raise FrugalError("--unlabelled is unlabelled text; image bundles distil on the labelled images")
        train, dev = _read_images(baseline, train_path, eval_path, columns)
    else:
        train = load_dataset(train_path, **columns)
        dev = load_dataset(eval_path, **columns)
    if dev.sha256 == train.sha256:
        raise FrugalError(
            "--eval must be held-out data: selecting on the training data would reward overfitting"
        )
    for data in (train, dev):
        data.check_labels_known(baseline.labels)
    unlabelled = []
    if unlabelled_path:
        text_column = {"text_column": columns["text_column"]} if columns.get("text_column") else {}
        unlabelled = load_dataset(unlabelled_path, require_labels=False, **text_column).texts
    return Inputs(baseline, train, dev, unlabelled)


def _read_images(
    baseline: Bundle, train_path: str | Path, eval_path: str | Path, columns: dict[str, Any]
) -> tuple[ImageDataset, ImageDataset]:
    """Training and selection images, in the model's size and mode. A MedMNIST `.npz` gives its
    train split for training and its val split for selection: the test split stays unseen."""
    config = load_image_config(baseline)
    mode = "L" if config.channels == 1 else "RGB"
    train, dev = (
        load_images(
            path,
            split=split,
            image_size=config.image_size,
            mode=mode,
            label_column=columns.get("label_column"),
        )
        for path, split in ((train_path, "train"), (eval_path, "val"))
    )
    return train, dev


def _source_layers(baseline: Bundle) -> int:
    """The encoder depth of the text bundle to compress (students are chosen from it)."""
    return int(load_bundle_config(baseline).encoder.get("num_hidden_layers", 2))


def _plan(baseline: Bundle, config: CompressConfig) -> list[Recipe]:
    if baseline.task == IMAGE_TASK:
        # A student pruned to half the channels; an architecture other than the small CNN can
        # also be distilled into a new one.
        torch_source = baseline.format == "torch"
        channels = config.channels or DEFAULT_CHANNELS
        plan = recipes(
            config.techniques,
            baseline.format,
            task=IMAGE_TASK,
            channels=channels,
            small_student=torch_source and load_image_config(baseline).architecture != STUDENT,
        )
    else:
        assert config.heads is not None and config.ffn, "chosen_settings fills them in"
        plan = recipes(config.techniques, baseline.format, config.layers, config.heads, config.ffn)
    if not plan:
        raise FrugalError(
            f"techniques {list(config.techniques)} give no candidate for a {baseline.task} "
            f"{baseline.format} bundle"
        )
    return plan


def _build(
    plan: list[Recipe],
    baseline: Bundle,
    context: CompressContext,
    config: CompressConfig,
    *,
    register=lambda bundle: None,
) -> tuple[dict[Recipe, Bundle], list[dict[str, str]]]:
    """Build every recipe, each shared prefix once, calling `register` on each bundle as it is
    written; returns the bundles by recipe (prefixes first), and the recipes that failed, and why."""
    built: dict[Recipe, Bundle] = {}
    failed: list[dict[str, str]] = []
    broken: dict[Recipe, str] = {}
    for recipe in plan:
        for end in range(1, len(recipe) + 1):
            prefix = recipe[:end]
            if prefix in built:
                continue
            if prefix in broken:
                failed.append({"recipe": describe(recipe), "error": broken[prefix]})
                break
            name, options = prefix[-1]
            source = built[prefix[:-1]] if end > 1 else baseline
            try:
                bundle = apply_technique(
                    name, source, context, **dict(options), **_extra(config, name, baseline.task)
                )
            except Exception as exc:  # one candidate failing (say, inside ONNX Runtime) ends no run
                error = str(exc) if isinstance(exc, FrugalError) else f"{type(exc).__name__}: {exc}"
                broken[prefix] = error
                failed.append({"recipe": describe(recipe), "error": error})
                break
            register(bundle)
            built[prefix] = bundle
    return built, failed


def _extra(config: CompressConfig, name: str, task: str) -> dict[str, Any]:
    """Options a technique gets beyond its recipe step: the config's, then per-technique overrides."""
    distill: dict[str, float | None] = {"epochs": config.distill_epochs}
    if task == TEXT_TASK:  # perturbed or spliced copies of texts
        distill["augment_copies"] = config.augment_copies
        distill["splice"] = config.splice
    distill = {key: value for key, value in distill.items() if value is not None}  # None: its default
    return {**({"distill": distill}.get(name, {})), **config.options.get(name, {})}


def _measure(
    baseline: Bundle,
    candidates: list[tuple[Recipe, Bundle]],
    dev: Dataset | ImageDataset,
    threads: int,
    config: CompressConfig,
    reporter: Reporter,
    *,
    record=lambda bundle, figures: None,
) -> Measurements:
    """Measure the baseline, then each candidate (`record`ing each one's figures as they come),
    then the baseline again. A candidate that cannot be measured is listed as failed; the baseline
    must be measurable."""
    options = {
        "latency_runs": config.latency_runs,
        "min_seconds": config.measure_seconds,
        "seed": config.seed,
    }
    figures, failed = {}, []
    with reporter.task("measuring candidates", len(candidates) + 2) as progress:
        for recipe, bundle in [((), baseline), *candidates]:
            assert bundle.path is not None  # written and registered bundles have folders
            try:
                figures[bundle.id] = measure_in_subprocess(bundle.path, dev, threads, **options)
            except FrugalError as exc:
                if bundle is baseline:
                    raise
                failed.append({"recipe": describe(recipe), "error": str(exc)})
            else:
                record(bundle, figures[bundle.id])
            progress.advance(1)
        # The baseline again, last: if the machine got busier or quieter meanwhile, it shows.
        assert baseline.path is not None
        repeat = measure_in_subprocess(baseline.path, dev, threads, **options)
        progress.advance(1)
    return Measurements(figures, failed, repeat)


def _remove_unkept(lineage: LineageStore, result: CompressResult, built: list[Bundle]) -> None:
    """Delete every bundle the run built that is off the front, not selected and not the parent of
    a bundle that stays: dominated candidates, candidates not measured and unused intermediates."""
    kept = result.kept
    entries = {entry["bundle_id"]: entry for entry in result.candidates}
    staying = {bundle.id for bundle in built}
    parent_of = {bundle.id: bundle.parents[0] if bundle.parents else None for bundle in built}
    for bundle in reversed(built):  # built parents first, so children come before their parents
        if bundle.id in kept or any(parent_of[other] == bundle.id for other in staying):
            continue
        lineage.remove_bundle(bundle.id)
        staying.discard(bundle.id)
        if bundle.id in entries:
            entries[bundle.id]["removed"] = True
