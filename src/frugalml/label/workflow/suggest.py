"""`label suggest`: the pool rows most worth a human's time, as Label Studio tasks.

The strategies are label.active's; this module leaves out rows already labelled, trains the
probe that ranks by uncertainty where there are labelled rows, and writes the tasks with the
model's guesses as pre-annotations, plus the Label Studio project's label config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from frugalml.data import Dataset, load_dataset, load_pool
from frugalml.data.frames import check_outputs
from frugalml.data.images import is_image_data, load_images
from frugalml.data.io import write_text_atomic
from frugalml.errors import DataError
from frugalml.label import active, labelstudio
from frugalml.label.config import SuggestConfig
from frugalml.label.probe import LinearProbe
from frugalml.label.vectors import Rows, load_labelling_data, row_text, vectors
from frugalml.label.workflow.rows import (
    Columns,
    class_index,
    has_row_number_ids,
    unseen_rows,
    with_pool_labels,
)
from frugalml.progress import Reporter


@dataclass
class Picks:
    rows: Rows  # the picked pool rows, best first
    predictions: list[tuple[str, float]] | None  # the seed model's guess for each, if any
    labels: list[str] | None
    excluded: int  # pool rows skipped because they are already labelled


@dataclass
class SuggestedRow:
    id: str
    text: str | None  # None for an image: its id (path, or split/index in a .npz) names it
    predicted_label: str | None  # the seed model's guess, where there is a model
    score: float | None  # its probability


@dataclass
class SuggestResult:
    strategy: str
    budget: int
    excluded_already_labelled: int
    labelled_in_pool: int  # labelled rows that came from the pool file
    rows: list[SuggestedRow]
    tasks: str  # the Label Studio tasks file
    label_config: str | None  # the Label Studio label config file, where the label set is known
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "budget": self.budget,
            "suggested": len(self.rows),
            "excluded_already_labelled": self.excluded_already_labelled,
            "labelled_in_pool": self.labelled_in_pool,
            "rows": [asdict(row) for row in self.rows],
            "tasks": self.tasks,
            "label_config": self.label_config,
            "notes": self.notes,
        }


def suggest_rows(
    pool: Rows,
    config: SuggestConfig,
    *,
    labelled: Rows | None = None,
    reporter: Reporter | None = None,
) -> Picks:
    """The `config.budget` pool rows most worth labelling, never one already labelled or a near-copy.
    Texts or images (label.vectors); an image pool's rows are told from labelled ones by id (its
    path) and by the near-duplicate threshold."""
    if pool.is_labelled:
        raise DataError(
            f"{pool.source}: has a label column; suggest picks from unlabelled rows "
            "(pass the labelled ones as the labelled set)"
        )
    # Ids match rows across files only where both files have real ids, not row numbers.
    known_ids: set[str] = set()
    if labelled is not None and not _row_numbered(labelled) and not _row_numbered(pool):
        known_ids = set(labelled.ids)
    if isinstance(pool, Dataset):
        new_rows = unseen_rows(pool, labelled.texts if isinstance(labelled, Dataset) else [])
    else:
        new_rows = list(range(len(pool)))
    eligible = [i for i in new_rows if pool.ids[i] not in known_ids]
    if not eligible:
        raise DataError(f"{pool.source}: all {len(pool)} rows are already in the labelled set")
    candidates = pool.subset(eligible)
    seen = [labelled] if labelled is not None and len(labelled) else []
    x_pool, *rest = vectors(candidates, config.encoder, reporter, *seen)
    x_seen = rest[0] if rest else x_pool[:0]
    names: list[str] | None = None
    proba = None
    # One class trains no model; the strategies that need none can still use the rows (cold start).
    if labelled is not None and (
        active.get_strategy(config.strategy).needs_model or len(labelled.class_counts()) > 1
    ):
        labelled.check_trainable()
        names, y = class_index(labelled, config.label_set)
        proba = LinearProbe(len(names)).fit(x_seen, y).predict_proba(x_pool)
    picked = active.suggest(
        config.strategy, x_pool, config.budget, proba, x_seen, config.dup_threshold, config.seed
    )
    predictions = None
    if proba is not None:
        assert names is not None  # set with proba
        predictions = [(names[int(proba[i].argmax())], float(proba[i].max())) for i in picked]
    return Picks(
        candidates.subset(picked.tolist()), predictions, names or config.label_set, len(pool) - len(eligible)
    )


def _row_numbered(rows: Rows) -> bool:
    return isinstance(rows, Dataset) and has_row_number_ids(rows)


def suggest_files(
    pool_path: str | Path,
    *,
    out: str | Path,
    config: SuggestConfig,
    labelled_path: str | Path | None = None,
    columns: Columns | None = None,
    reporter: Reporter | None = None,
) -> SuggestResult:
    """Pick rows to label and write them as Label Studio tasks (+ the project's label config)."""
    check_outputs([pool_path, labelled_path], [out], suffixes=None)  # tasks JSON, any name
    columns = columns or {}
    given: Rows | None
    labelled: Rows | None
    pool: Rows
    if is_image_data(pool_path):
        given = load_labelling_data(labelled_path, **columns) if labelled_path else None
        labelled, pool = given, load_images(pool_path, require_labels=False)
    else:
        given = load_dataset(labelled_path, **columns) if labelled_path else None
        if given is not None:  # the pool's labels are in the column the labelled file has them in
            columns = {**columns, "label_column": given.label_column}
        text_pool, known = load_pool(pool_path, **columns)
        labelled, pool = with_pool_labels(given, text_pool, known)
    picks = suggest_rows(pool, config, labelled=labelled, reporter=reporter)
    out = Path(out)
    kind = "text" if isinstance(picks.rows, Dataset) else "image"
    tasks = (
        labelstudio.to_tasks(picks.rows, picks.predictions)
        if isinstance(picks.rows, Dataset)
        else labelstudio.to_image_tasks(picks.rows, picks.predictions)
    )
    labelstudio.write_tasks(tasks, out)
    config_path = None
    if picks.labels:
        config_path = out.with_suffix(".label_config.xml")
        write_text_atomic(config_path, labelstudio.label_config(picks.labels, kind))
    rows = []
    for i, row_id in enumerate(picks.rows.ids):
        guess = picks.predictions[i] if picks.predictions else (None, None)
        rows.append(SuggestedRow(row_id, row_text(picks.rows, i), guess[0], guess[1]))
    unlabelled = len(pool) - picks.excluded
    return SuggestResult(
        strategy=config.strategy,
        budget=config.budget,
        excluded_already_labelled=picks.excluded,
        labelled_in_pool=len(labelled or []) - len(given or []),
        rows=rows,
        tasks=str(out),
        label_config=str(config_path) if config_path else None,
        notes=labelstudio.json_min_notes(list(getattr(picks.rows, "extra", {})))
        + _notes(len(rows), config.budget, unlabelled, config.dup_threshold, config_path),
    )


def _notes(
    suggested: int, budget: int, unlabelled: int, dup_threshold: float, config_path: Path | None
) -> list[str]:
    notes = []
    if suggested < budget:
        why = f"the pool has {unlabelled} rows not labelled yet"
        if suggested < unlabelled:
            why += (
                f", and {unlabelled - suggested} of them are near-duplicates (similarity >= "
                f"{dup_threshold}) of a row picked or labelled"
            )
        notes.append(f"suggested {suggested} of the {budget} rows asked: {why}")
    if config_path is None:
        notes.append(
            "no Label Studio label config written: the label set is unknown without labelled rows "
            "(pass --labels, a list or a file of labels)"
        )
    return notes
