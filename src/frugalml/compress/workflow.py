"""`compress` end to end: build candidate bundles, measure each, keep the front, select, register.

Shared by the CLI command and the pipeline step. Every bundle built is registered with its parent
and the compress run; measured figures (on the selection split, never the training data) go into
the lineage row, the returned document and the report files.
"""

from __future__ import annotations

import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from frugalml.bundle import Bundle
from frugalml.compress.config import CompressConfig
from frugalml.compress.context import CompressContext
from frugalml.compress.measure import measure_in_subprocess
from frugalml.compress.report import write_report
from frugalml.compress.search import (
    Recipe,
    describe,
    pareto_mask,
    recipes,
    select_candidate,
)
from frugalml.compress.techniques import apply_technique
from frugalml.data import load_dataset
from frugalml.errors import FrugalError
from frugalml.lineage import LineageStore, open_store, resolve_bundle, run_path
from frugalml.models import FrugalTextClassifierConfig
from frugalml.progress import Reporter, SilentReporter
from frugalml.settings import Settings, get_settings

MEASURED = ("accuracy", "macro_f1", "p50_ms", "p90_ms", "batch32_per_s", "peak_rss_mb")


def compress_and_register(
    bundle_ref: str | Path,
    train_path: str | Path,
    eval_path: str | Path,
    config: CompressConfig | None = None,
    unlabelled_path: str | Path | None = None,
    columns: dict[str, str | None] | None = None,
    out_dir: str | Path | None = None,
    reporter: Reporter | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Compress a bundle under an accuracy budget; returns the document `--json` prints."""
    config = config or CompressConfig()
    settings = settings or get_settings()
    reporter = reporter or SilentReporter()
    if out_dir and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise FrugalError(f"{out_dir}: exists and is not a folder; --out names the report's folder")
    lineage = open_store(settings)
    baseline = resolve_bundle(str(bundle_ref), lineage)
    columns = columns or {}
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
    lineage.add_dataset(train)
    threads = config.threads or os.cpu_count() or 1
    run_config = {
        **asdict(config),
        "bundle": baseline.id,
        "train": run_path(train_path),
        "eval": run_path(eval_path),
    }
    plan = _plan(baseline, config)  # before the run starts: a plan that fails records no run
    run_id = lineage.start_run("compress", run_config, train.sha256)
    context = CompressContext(settings.bundles_dir, train, baseline, unlabelled, config.seed, reporter)
    built: dict[Recipe, Bundle] = {}
    measured: dict[str, dict[str, Any]] = {}
    registered: set[str] = set()  # bundle ids recorded in the lineage store
    try:
        failed = _build(plan, baseline, context, config, built)
        candidates = [(recipe, built[recipe]) for recipe in plan if recipe in built]
        repeat = _measure(baseline, candidates, dev, threads, config, reporter, measured, failed)
        candidates = [(recipe, bundle) for recipe, bundle in candidates if bundle.id in measured]
        _register(lineage, built.values(), measured, run_id, train.sha256, registered)
        result = _result(baseline, candidates, measured, config, failed, run_id)
        first = measured[baseline.id]
        result["drift"] = {  # relative change of the baseline's figures from first to last measurement
            "p50_ms": repeat["p50_ms"] / first["p50_ms"] - 1,
            "batch32_per_s": repeat["batch32_per_s"] / first["batch32_per_s"] - 1,
        }
        if config.keep == "front":
            _remove_dominated(lineage, result, built.values())
        folder = Path(out_dir) if out_dir else settings.home / "reports" / run_id
        result["report"] = write_report(result, folder)
    except BaseException:
        try:  # what was built stays findable, with the run that failed
            _register(lineage, built.values(), measured, run_id, train.sha256, registered)
        finally:
            lineage.finish_run(run_id, "failed")
        raise
    lineage.finish_run(run_id, "done", {"selected": (result["selected"] or {}).get("bundle_id")})
    return result


def _measure(
    baseline: Bundle,
    candidates: list[tuple[Recipe, Bundle]],
    dev,
    threads: int,
    config: CompressConfig,
    reporter: Reporter,
    measured: dict[str, dict[str, Any]],
    failed: list[dict[str, str]],
) -> dict[str, Any]:
    """Measure the baseline, then each candidate, then the baseline again (returned).

    A candidate that cannot be measured is listed in `failed`; the baseline must be measurable.
    """
    options = {
        "latency_runs": config.latency_runs,
        "min_seconds": config.measure_seconds,
        "seed": config.seed,
    }
    with reporter.task("measuring candidates", len(candidates) + 2) as progress:
        for recipe, bundle in [((), baseline), *candidates]:
            try:
                measured[bundle.id] = measure_in_subprocess(bundle.path, dev, threads, **options)
            except FrugalError as exc:
                if bundle is baseline:
                    raise
                failed.append({"recipe": describe(recipe), "error": str(exc)})
            progress.advance(1)
        # The baseline again, last: if the machine got busier or quieter meanwhile, it shows.
        repeat = measure_in_subprocess(baseline.path, dev, threads, **options)
        progress.advance(1)
    return repeat


def _plan(baseline: Bundle, config: CompressConfig) -> list[Recipe]:
    layers = config.layers
    if not layers and baseline.format == "torch" and "prune" in config.techniques:
        assert baseline.path is not None
        encoder = FrugalTextClassifierConfig.from_pretrained(baseline.path).encoder
        layers = (max(1, encoder.get("num_hidden_layers", 2) // 2),)
    plan = recipes(config.techniques, baseline.format, layers, config.heads, config.ffn)
    if not plan:
        raise FrugalError(
            f"techniques {list(config.techniques)} give no candidate for a {baseline.format} bundle"
        )
    return plan


def _build(
    plan: list[Recipe], baseline: Bundle, context: CompressContext, config: CompressConfig, built: dict
) -> list[dict[str, str]]:
    """Build every recipe, each shared prefix once; returns the recipes that failed, and why."""
    failed, broken = [], {}
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
                built[prefix] = apply_technique(
                    name, source, context, **dict(options), **_extra(config, name)
                )
            except Exception as exc:  # one candidate failing (say, inside ONNX Runtime) ends no run
                error = str(exc) if isinstance(exc, FrugalError) else f"{type(exc).__name__}: {exc}"
                broken[prefix] = error
                failed.append({"recipe": describe(recipe), "error": error})
                break
    return failed


def _extra(config: CompressConfig, name: str) -> dict[str, Any]:
    """Options a technique gets beyond its recipe step: the config's, then per-technique overrides."""
    extra = {"distill": {"epochs": config.distill_epochs, "augment_copies": config.augment_copies}}
    return {**extra.get(name, {}), **config.options.get(name, {})}


def _register(
    lineage: LineageStore, bundles, measured: dict, run_id: str, data_sha256: str, registered: set[str]
) -> None:
    """Record each built bundle not yet in `registered` (parents first), with its measured figures
    where there are any."""
    for bundle in bundles:
        if bundle.id in registered:
            continue
        figures = {k: measured[bundle.id][k] for k in MEASURED if bundle.id in measured}
        lineage.add_bundle(replace(bundle, metrics={**bundle.metrics, **figures}), run_id, data_sha256)
        registered.add(bundle.id)


def _result(
    baseline: Bundle,
    candidates: list[tuple[Recipe, Bundle]],
    measured: dict[str, dict[str, Any]],
    config: CompressConfig,
    failed: list[dict[str, str]],
    run_id: str,
) -> dict[str, Any]:
    base = measured[baseline.id]
    entries = [_entry(baseline, (), base, base)] + [
        _entry(bundle, recipe, measured[bundle.id], base) for recipe, bundle in candidates
    ]
    accuracy = [e["accuracy"] for e in entries]
    size = [e["size_bytes"] for e in entries]
    latency = [e["p50_ms"] for e in entries]
    front = pareto_mask(accuracy, size, latency)
    for entry, on_front in zip(entries, front, strict=True):
        entry["pareto"] = bool(on_front)
        entry["within_budget"] = entry["accuracy_drop"] <= config.max_drop + 1e-9
    chosen = select_candidate(accuracy, size, latency, base["accuracy"], config.max_drop)
    return {
        "run_id": run_id,
        "max_drop": config.max_drop,
        "threads": base["threads"],
        "inference_env": base["inference_env"],
        "selected": entries[chosen] if chosen is not None else None,
        "baseline": entries[0],
        "candidates": entries[1:],
        "pareto": [e["bundle_id"] for e in entries if e["pareto"]],
        "failed": failed,
    }


def speed_ratios(figures: dict[str, Any], base: dict[str, Any]) -> dict[str, float]:
    """How much faster than `base`: batch-1 p50 latency and batch-32 throughput."""
    return {
        "latency_ratio": base["p50_ms"] / figures["p50_ms"],
        "throughput_ratio": figures["batch32_per_s"] / base["batch32_per_s"],
    }


def _entry(bundle: Bundle, recipe: Recipe, figures: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    predictions = np.asarray(figures["predictions"])
    return {
        "bundle_id": bundle.id,
        "bundle_path": str(bundle.path),
        "name": bundle.name,
        "recipe": describe(recipe),
        "format": bundle.format,
        "precision": bundle.precision,
        **{k: figures[k] for k in (*MEASURED, "size_bytes", "load_seconds")},
        "accuracy_drop": (base["accuracy"] - figures["accuracy"]) * 100,
        "size_ratio": base["size_bytes"] / figures["size_bytes"],
        **speed_ratios(figures, base),
        "agreement": float((predictions == np.asarray(base["predictions"])).mean()),
        "build": bundle.metrics,
        "removed": False,
    }


def _remove_dominated(lineage: LineageStore, result: dict[str, Any], built) -> None:
    """Delete candidates off the Pareto front, unless a kept bundle descends from them."""
    kept = {result["baseline"]["bundle_id"], *result["pareto"]}
    if result["selected"]:
        kept.add(result["selected"]["bundle_id"])
    parent_of = {b.id: (b.parents[0] if b.parents else None) for b in built}
    for entry in reversed(result["candidates"]):  # children before their parents
        bundle_id = entry["bundle_id"]
        if bundle_id in kept or bundle_id in parent_of.values():
            continue
        lineage.remove_bundle(bundle_id)
        del parent_of[bundle_id]
        entry["removed"] = True
