"""`label auto`: label a pool from human-labelled rows where the labels reach a target precision.

The method is label.autolabel's (self-training with a cross-validated confidence threshold); this
module loads and matches the files, runs it, writes the labelled rows and the review queue, and
records the run in the lineage store.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from frugalml.data import Dataset, load_dataset, load_pool
from frugalml.data.frames import check_outputs, write_frame
from frugalml.data.split import AUTO, SOURCE_COLUMN
from frugalml.errors import DataError
from frugalml.label.autolabel import SelfTrainResult, self_train
from frugalml.label.config import AutoLabelConfig
from frugalml.label.neighbours import smooth
from frugalml.label.vectors import Rows, vectors
from frugalml.label.workflow.rows import (
    WRITTEN_COLUMNS,
    Columns,
    bare,
    check_source_column,
    class_index,
    disjoint_ids,
    folds_used,
    unseen_rows,
    with_pool_labels,
)
from frugalml.progress import Reporter, SilentReporter
from frugalml.settings import Settings, get_settings


@dataclass
class AutoLabelSummary:
    """What an auto-labelling did, in the words of its JSON document."""

    labelled: int  # human-labelled rows it learned from
    pool: int  # rows it labelled
    auto_rows_labelled_again: int  # labelled rows an earlier run guessed, moved to the pool
    pool_rows_already_labelled: int  # pool rows left out: their text is among the labelled rows
    accepted: int
    coverage: float
    estimated_precision: float | None
    target_precision: float
    precision_rule: str
    threshold: float | None
    review: int  # rows left for a human
    rounds: list[dict[str, Any]]
    neighbours: int
    accepted_per_label: dict[str, int]
    labels_without_seed_rows: list[str]
    encoder: str
    folds: int
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AutoLabelResult:
    dataset: pd.DataFrame  # id, text, label, confidence, source (+ the inputs' other columns)
    review: pd.DataFrame  # id, text, suggested_label, confidence: the rows left for a human
    summary: AutoLabelSummary


@dataclass
class AutoLabelReport:
    """An auto-labelling of files: its summary, the files it wrote and its run in the lineage store."""

    summary: AutoLabelSummary
    labelled_in_pool: int  # labelled rows that came from the pool file
    out: str
    review_out: str
    run_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            **self.summary.to_json(),
            "labelled_in_pool": self.labelled_in_pool,
            "out": self.out,
            "review_out": self.review_out,
            "run_id": self.run_id,
        }


def auto_label(
    seed: Dataset, pool: Dataset, config: AutoLabelConfig, reporter: Reporter | None = None
) -> AutoLabelResult:
    """Label `pool` from the human-labelled `seed` rows (see label.autolabel for the method)."""
    reporter = reporter or SilentReporter()
    for data in (seed, pool):
        check_source_column(data)
    seed, pool, guesses = _guesses_to_pool(seed, pool)
    seed.check_trainable()
    if len(seed) < 4:
        raise DataError(f"{seed.source}: needs at least 4 human-labelled rows to cross-validate a threshold")
    fresh = unseen_rows(pool, seed.texts)
    if not fresh:
        raise DataError(f"{pool.source}: every row's text is already in the labelled rows; nothing to label")
    repeats, pool = len(pool) - len(fresh), pool.subset(fresh)
    seed, pool = disjoint_ids(seed, pool)
    names, y = class_index(seed, config.label_set)
    folds, notes = folds_used(y, config.folds)
    result = label_pool(seed, y, pool, len(names), config, reporter)
    human = bare(seed).to_frame()
    human["confidence"] = 1.0
    human[SOURCE_COLUMN] = "human"
    # A pool that is an earlier run's review queue (or output) brings that run's columns along.
    guessed = pool.to_frame().drop(columns=list(WRITTEN_COLUMNS), errors="ignore")
    guessed.insert(2, "label", [names[i] for i in result.labels])
    guessed.insert(3, "confidence", result.confidence.round(6))
    guessed.insert(4, SOURCE_COLUMN, AUTO)
    accepted = guessed[result.accepted]
    review = guessed[~result.accepted].drop(columns=SOURCE_COLUMN)
    review = review.rename(columns={"label": "suggested_label"})
    review = review.sort_values("confidence", ascending=False, kind="stable")
    dataset = pd.concat([human, accepted], ignore_index=True)
    summary = summarise(seed, names, len(pool), result, config, folds, notes)
    summary.auto_rows_labelled_again, summary.pool_rows_already_labelled = guesses, repeats
    return AutoLabelResult(dataset, review, summary)


def label_pool(
    seed: Rows, y: np.ndarray, pool: Rows, n_classes: int, config: AutoLabelConfig, reporter: Reporter
) -> SelfTrainResult:
    """Self-training (label.autolabel) on the rows' vectors (texts or images, label.vectors),
    smoothed over each row's nearest rows first where `config.neighbours` says so."""
    x = np.concatenate(vectors(seed, config.encoder, reporter, pool))
    if config.neighbours:
        with reporter.task(f"smoothing over the {config.neighbours} nearest rows", None):
            x = smooth(x, config.neighbours)
    return self_train(
        x[: len(seed)],
        y,
        x[len(seed) :],
        n_classes,
        config.target_precision,
        config.rounds,
        config.folds,
        config.seed,
        config.c,
        z=0.0 if config.point_estimate else 1.0,
    )


def summarise(
    seed: Rows,
    names: list[str],
    pool: int,
    result: SelfTrainResult,
    config: AutoLabelConfig,
    folds: int,
    notes: list[str],
) -> AutoLabelSummary:
    """The summary of labelling `pool` rows from `seed` (`names`: the label set)."""
    if result.threshold is None:
        notes.append(
            f"no confidence threshold reaches precision {config.target_precision} on the labelled "
            "rows; nothing was accepted (label more rows or lower --target-precision)"
        )
    accepted = Counter(names[i] for i in result.labels[result.accepted])
    n_accepted = int(result.accepted.sum())
    return AutoLabelSummary(
        labelled=len(seed),
        pool=pool,
        auto_rows_labelled_again=0,
        pool_rows_already_labelled=0,
        accepted=n_accepted,
        coverage=n_accepted / pool,
        estimated_precision=result.estimated_precision,
        target_precision=config.target_precision,
        precision_rule="point estimate" if config.point_estimate else "Wilson lower bound",
        threshold=result.threshold,
        review=pool - n_accepted,
        rounds=result.history,
        neighbours=config.neighbours,
        accepted_per_label=dict(sorted(accepted.items())),
        labels_without_seed_rows=sorted(set(names) - set(seed.require_labels())),
        encoder=config.encoder.describe(),
        folds=folds,
        notes=notes,
    )


def _guesses_to_pool(seed: Dataset, pool: Dataset) -> tuple[Dataset, Dataset, int]:
    """Labelled rows that an earlier run guessed (source "auto"), moved to the pool: they are
    no truth to estimate precision on, so they are labelled again (with their count)."""
    sources = seed.extra.get(SOURCE_COLUMN, [])
    guessed = [i for i, s in enumerate(sources) if s == AUTO]
    if not guessed:
        return seed, pool, 0
    seed, pool = disjoint_ids(seed, pool)  # ids apart across both files, then rows move
    rows = replace(bare(seed.subset(guessed)), labels=None)
    rows = rows.subset(unseen_rows(rows, pool.texts))  # the pool's own row stands for a guess of it
    human = [i for i, s in enumerate(sources) if s != AUTO]
    return seed.subset(human), pool.concat(rows), len(guessed)


def auto_label_files(
    labelled: str | Path,
    unlabelled: str | Path,
    *,
    out: str | Path,
    review_out: str | Path,
    config: AutoLabelConfig,
    columns: Columns | None = None,
    reporter: Reporter | None = None,
    settings: Settings | None = None,
) -> AutoLabelReport:
    """Auto-label files, write the labelled dataset and the review queue, record the run."""
    from frugalml.lineage import open_store

    check_outputs([labelled, unlabelled], [out, review_out])
    columns = columns or {}
    given = load_dataset(labelled, **columns)
    pool, known = load_pool(unlabelled, **{**columns, "label_column": given.label_column})
    seed, pool = with_pool_labels(given, pool, known)
    lineage = open_store(settings or get_settings())
    lineage.add_dataset(given)
    lineage.add_dataset(pool if known is None else pool.concat(known))  # the whole file
    run_config = {**asdict(config), "labelled": str(labelled), "unlabelled": str(unlabelled)}
    with lineage.run("label", run_config, seed.sha256) as run:
        result = auto_label(seed, pool, config, reporter)
        write_frame(result.dataset, out)
        write_frame(result.review, review_out)
        lineage.add_dataset(load_dataset(out))
        report = AutoLabelReport(result.summary, len(seed) - len(given), str(out), str(review_out), run.id)
        run.summary = report.to_json()
    return report
