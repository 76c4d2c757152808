"""Labelling entry points shared by the CLI and the pipeline: load data, run a technique, write files.

The algorithms (autolabel, active, issues, augment) work on arrays; this module turns Datasets
into arrays and results back into tables, checks the inputs, and writes every output atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from frugalml.data import Dataset, load_dataset, load_pool
from frugalml.data.frames import FRAME_SUFFIXES, check_outputs, write_frame
from frugalml.data.io import write_text_atomic
from frugalml.data.split import AUTO, SOURCE_COLUMN
from frugalml.errors import DataError, FrugalError
from frugalml.label import active, augment, labelstudio
from frugalml.label.autolabel import self_train
from frugalml.label.embeddings import Encoder, embed
from frugalml.label.issues import conflicting_duplicates, find_issues, outliers
from frugalml.label.neighbours import neighbours, smooth
from frugalml.label.probe import LinearProbe, usable_folds
from frugalml.names import split_names
from frugalml.progress import Reporter, SilentReporter
from frugalml.settings import Settings, get_settings

Columns = dict[str, str | None]


# ---------------------------------------------------------------- shared helpers
def parse_labels(value: str | Sequence[str] | None) -> list[str] | None:
    """A label set from a list, a file with one label per line, or a comma-separated string."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            is_file = Path(value).is_file()
        except OSError:  # a long inline list is no file name
            is_file = False
        if is_file:
            try:
                value = Path(value).read_text(encoding="utf-8-sig").splitlines()  # -sig: a BOM is no label
            except (OSError, UnicodeDecodeError) as exc:
                raise FrugalError(f"label set {value}: cannot be read ({type(exc).__name__})") from None
        elif "," not in value:
            raise FrugalError(
                f"label set {value[:80]!r}: no such file; give a file with one label per line, "
                "or the labels separated by commas"
            )
    labels = split_names(value)
    if len(set(labels)) < 2:
        raise FrugalError(f"label set {str(value)[:80]!r} needs at least 2 labels, found {labels}")
    return labels


def has_row_number_ids(dataset: Dataset) -> bool:
    """True when the data had no id column (the loader then numbers the rows 0, 1, 2 ...), or
    its ids are just that: a saved index or an `idx` column is no id to match rows by."""
    return dataset.numbered or dataset.ids == [str(i) for i in range(len(dataset))]


def row_ref(dataset: Dataset, row: int) -> str | int:
    """How reports name a row: its id when the data has an id column, else its 0-based index."""
    return row if has_row_number_ids(dataset) else dataset.ids[row]


def text_key(text: str) -> str:
    return " ".join(text.casefold().split())


REPORT_SUFFIXES = (*FRAME_SUFFIXES, ".html")  # what write_issues_report writes


def _class_index(dataset: Dataset, labels: list[str] | None) -> tuple[list[str], np.ndarray]:
    """The label set (sorted) and each row's class index; refuses labels outside `labels`."""
    given = dataset.require_labels()
    if labels is not None:
        unknown = sorted(set(given) - set(labels))
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise DataError(f"{dataset.source}: label(s) {shown} are not in the label set {labels}")
    names = sorted(set(labels or given))
    index = {label: i for i, label in enumerate(names)}
    return names, np.array([index[label] for label in given])


# ---------------------------------------------------------------- auto-label
@dataclass
class AutoLabelConfig:
    target_precision: float = 0.95
    # False: the held-out precision's Wilson lower bound must reach the target (the labels can be
    # trusted as they are). True: its point estimate must (more rows at a little less precision;
    # on BANKING77 a slightly better training set on average, docs/labelling.md).
    point_estimate: bool = False
    rounds: int = 2
    # Smooth each embedding towards its nearest texts among labelled + pool rows before
    # self-training (label.neighbours); 0 turns it off.
    neighbours: int = 5
    folds: int = 5
    seed: int = 0
    c: float = 0.1
    base: str = "minilm"
    bundle: str | None = None
    labels: list[str] | None = None

    def __post_init__(self) -> None:  # refused where it is built: before any file is read
        if not 0.5 <= self.target_precision < 1:
            raise FrugalError(f"target precision must be in [0.5, 1), got {self.target_precision}")
        if self.rounds < 0:
            raise FrugalError(f"rounds must be 0 or more, got {self.rounds}")
        if self.neighbours < 0:
            raise FrugalError(f"neighbours must be 0 or more, got {self.neighbours}")


GUESS_COLUMNS = ("suggested_label", "confidence", SOURCE_COLUMN)  # what label auto writes beside a label
WRITTEN_COLUMNS = ("label", *GUESS_COLUMNS)


@dataclass
class AutoLabelResult:
    dataset: pd.DataFrame  # id, text, label, confidence, source (+ the inputs' other columns)
    review: pd.DataFrame  # id, text, suggested_label, confidence: the rows left for a human
    summary: dict[str, Any]


def auto_label(
    seed: Dataset, pool: Dataset, config: AutoLabelConfig, reporter: Reporter | None = None
) -> AutoLabelResult:
    """Label `pool` from the human-labelled `seed` rows (see label.autolabel for the method)."""
    reporter = reporter or SilentReporter()
    for data in (seed, pool):
        _check_source_column(data)
    seed, pool, guesses = _guesses_to_pool(seed, pool)
    seed.check_trainable()
    if len(seed) < 4:
        raise DataError(f"{seed.source}: needs at least 4 human-labelled rows to cross-validate a threshold")
    fresh = unseen_rows(pool, seed.texts)
    if not fresh:
        raise DataError(f"{pool.source}: every row's text is already in the labelled rows; nothing to label")
    repeats, pool = len(pool) - len(fresh), pool.subset(fresh)
    seed, pool = _disjoint_ids(seed, pool)
    names, y = _class_index(seed, config.labels)
    folds, notes = _folds(y, config.folds)
    vectors = embed(seed.texts + pool.texts, Encoder(config.base, config.bundle), reporter=reporter)
    if config.neighbours:
        with reporter.task(f"smoothing over the {config.neighbours} nearest texts", None):
            vectors = smooth(vectors, config.neighbours)
    result = self_train(
        vectors[: len(seed)],
        y,
        vectors[len(seed) :],
        len(names),
        config.target_precision,
        config.rounds,
        config.folds,
        config.seed,
        config.c,
        z=0.0 if config.point_estimate else 1.0,
    )
    human = _bare(seed).to_frame()
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
    n_accepted = int(result.accepted.sum())
    summary = {
        "labelled": len(seed),
        "pool": len(pool),
        "auto_rows_labelled_again": guesses,
        "pool_rows_already_labelled": repeats,
        "accepted": n_accepted,
        "coverage": n_accepted / len(pool),
        "estimated_precision": result.estimated_precision,
        "target_precision": config.target_precision,
        "precision_rule": "point estimate" if config.point_estimate else "Wilson lower bound",
        "threshold": result.threshold,
        "review": len(review),
        "rounds": result.history,
        "neighbours": config.neighbours,
        "accepted_per_label": {k: int(v) for k, v in accepted["label"].value_counts().sort_index().items()},
        "labels_without_seed_rows": sorted(set(names) - set(seed.labels)),
        "encoder": Encoder(config.base, config.bundle).describe(),
        "folds": folds,
        "notes": notes,
    }
    if result.threshold is None:
        notes.append(
            f"no confidence threshold reaches precision {config.target_precision} on the labelled "
            "rows; nothing was accepted (label more rows or lower --target-precision)"
        )
    return AutoLabelResult(dataset, review, summary)


def _folds(y: np.ndarray, asked: int) -> tuple[int, list[str]]:
    """The cross-validation folds the labelled rows allow, and a note when fewer than asked."""
    used = usable_folds(y, asked)
    if used == asked:
        return used, []
    return used, [f"cross-validation used {used} folds, not {asked}: the labelled rows allow no more"]


def _guesses_to_pool(seed: Dataset, pool: Dataset) -> tuple[Dataset, Dataset, int]:
    """Labelled rows that an earlier run guessed (source "auto"), moved to the pool: they are
    no truth to estimate precision on, so they are labelled again (with their count)."""
    sources = seed.extra.get(SOURCE_COLUMN, [])
    guessed = [i for i, s in enumerate(sources) if s == AUTO]
    if not guessed:
        return seed, pool, 0
    seed, pool = _disjoint_ids(seed, pool)  # ids apart across both files, then rows move
    rows = replace(_bare(seed.subset(guessed)), labels=None)
    rows = rows.subset(unseen_rows(rows, pool.texts))  # the pool's own row stands for a guess of it
    human = [i for i, s in enumerate(sources) if s != AUTO]
    return seed.subset(human), pool.concat(rows), len(guessed)


def _bare(rows: Dataset) -> Dataset:
    """The rows without the columns label auto writes beside a label: guess, confidence, source."""
    return replace(rows, extra={k: v for k, v in rows.extra.items() if k not in GUESS_COLUMNS})


def unseen_rows(rows: Dataset, texts: Sequence[str]) -> list[int]:
    """Indices of the rows whose text is not among `texts` (compared as `text_key` does)."""
    seen = {text_key(t) for t in texts}
    return [i for i, text in enumerate(rows.texts) if text_key(text) not in seen]


def _check_source_column(data: Dataset) -> None:
    # Empty cells are human rows, as tune's validation split reads them.
    values = {v for v in data.extra.get(SOURCE_COLUMN, []) if not pd.isna(v)} - {"human", AUTO, ""}
    if values:
        raise DataError(
            f"{data.source}: column {SOURCE_COLUMN!r} holds {sorted(map(str, values))[:3]}, but label auto "
            f"uses it to mark rows 'human' or '{AUTO}'; rename that column"
        )


def _disjoint_ids(seed: Dataset, pool: Dataset) -> tuple[Dataset, Dataset]:
    overlap = set(seed.ids) & set(pool.ids)
    if not overlap:
        return seed, pool
    # Row numbers are not ids: files without an id column are told apart by a prefix.
    if has_row_number_ids(pool):
        return seed, _prefixed(pool, _free_prefix("pool", pool.ids, set(seed.ids)))
    if has_row_number_ids(seed):
        return _prefixed(seed, _free_prefix("seed", seed.ids, set(pool.ids))), pool
    shown = sorted(overlap)[:5]
    raise DataError(
        f"{pool.source}: {len(overlap)} id(s) also appear in the labelled set {seed.source}, e.g. "
        f"{shown}; an id must name one row (remove labelled rows from the pool)"
    )


def _prefixed(dataset: Dataset, prefix: str) -> Dataset:
    return replace(dataset, ids=[prefix + i for i in dataset.ids])


def _free_prefix(name: str, ids: Sequence[str], avoid: set[str]) -> str:
    """`name-`, or `name2-` and so on where that would give an id in `avoid`."""
    for prefix in (f"{name}-", *(f"{name}{n}-" for n in range(2, 100))):
        if avoid.isdisjoint(prefix + i for i in ids):
            return prefix
    raise DataError(f"cannot give the rows of two files distinct ids with a prefix {name!r}")


def with_pool_labels(
    labelled: Dataset | None, pool: Dataset, known: Dataset | None
) -> tuple[Dataset | None, Dataset]:
    """`labelled` plus the rows a pool file already has labels for (`load_pool`), and the pool's
    rows to label. A pool row whose text is in `labelled` is left out: the labelled file's label
    stands."""
    if known is None:
        return labelled, pool
    _check_source_column(known)
    # A review queue's guess, its confidence and the source are not part of a human's label.
    known = _bare(known)
    if labelled is None:
        return known, pool
    # Two files' row numbers side by side would collide: each gets its own prefix.
    if pool.numbered:
        prefix = _free_prefix("pool", pool.ids + known.ids, set(labelled.ids))
        pool, known = _prefixed(pool, prefix), _prefixed(known, prefix)
    if has_row_number_ids(labelled):
        taken = set(pool.ids) | set(known.ids)
        labelled = _prefixed(labelled, _free_prefix("seed", labelled.ids, taken))
    known = known.subset(unseen_rows(known, labelled.texts))
    labelled, known = _disjoint_ids(labelled, known)
    source = f"{labelled.source} with the labelled rows of {known.source}"
    return replace(labelled.concat(known), source=source), pool


def auto_label_files(
    labelled: str | Path,
    unlabelled: str | Path,
    out: str | Path,
    review_out: str | Path,
    config: AutoLabelConfig,
    columns: Columns | None = None,
    reporter: Reporter | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
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
        run.summary = {
            **result.summary,
            "labelled_in_pool": len(seed) - len(given),
            "out": str(out),
            "review_out": str(review_out),
            "run_id": run.id,
        }
    return run.summary


# ---------------------------------------------------------------- suggest (active learning)
@dataclass
class SuggestResult:
    rows: Dataset  # the picked pool rows, best first
    predictions: list[tuple[str, float]] | None  # the seed model's guess for each, if any
    labels: list[str] | None
    excluded: int  # pool rows skipped because they are already labelled


def suggest_rows(
    pool: Dataset,
    budget: int,
    strategy: str = active.DEFAULT_STRATEGY,
    labelled: Dataset | None = None,
    encoder: Encoder | None = None,
    labels: list[str] | None = None,
    dup_threshold: float = 0.95,
    seed: int = 0,
    reporter: Reporter | None = None,
) -> SuggestResult:
    """The `budget` pool rows most worth labelling, never one already labelled or a near-copy."""
    if pool.is_labelled:
        raise DataError(
            f"{pool.source}: has a label column; suggest picks from unlabelled rows "
            "(pass the labelled ones as the labelled set)"
        )
    active.get_strategy(strategy)  # fail fast, before any encoding
    # Ids match rows across files only where both files have real ids, not row numbers.
    by_id = labelled is not None and not has_row_number_ids(labelled) and not has_row_number_ids(pool)
    known_ids = set(labelled.ids) if by_id else set()
    new_texts = unseen_rows(pool, labelled.texts if labelled is not None else [])
    eligible = [i for i in new_texts if pool.ids[i] not in known_ids]
    if not eligible:
        raise DataError(f"{pool.source}: all {len(pool)} rows are already in the labelled set")
    candidates = pool.subset(eligible)
    texts = candidates.texts + (labelled.texts if labelled is not None else [])
    vectors = embed(texts, encoder or Encoder(), reporter=reporter)
    x_pool, x_seen = vectors[: len(candidates)], vectors[len(candidates) :]
    names, proba = None, None
    # One class trains no model; the strategies that need none can still use the rows (cold start).
    if labelled is not None and (
        active.get_strategy(strategy).needs_model or len(labelled.class_counts()) > 1
    ):
        labelled.check_trainable()
        names, y = _class_index(labelled, labels)
        proba = LinearProbe(len(names)).fit(x_seen, y).predict_proba(x_pool)
    picked = active.suggest(strategy, x_pool, budget, proba, x_seen, dup_threshold, seed)
    predictions = None
    if proba is not None:
        predictions = [(names[int(proba[i].argmax())], float(proba[i].max())) for i in picked]
    return SuggestResult(
        candidates.subset(picked.tolist()), predictions, names or labels, len(pool) - len(eligible)
    )


def suggest_files(
    pool_path: str | Path,
    budget: int,
    out: str | Path,
    strategy: str = active.DEFAULT_STRATEGY,
    labelled_path: str | Path | None = None,
    encoder: Encoder | None = None,
    labels: list[str] | None = None,
    dup_threshold: float = 0.95,
    seed: int = 0,
    columns: Columns | None = None,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Pick rows to label and write them as Label Studio tasks (+ the project's label config)."""
    check_outputs([pool_path, labelled_path], [out], suffixes=None)  # tasks JSON, any name
    columns = columns or {}
    given = load_dataset(labelled_path, **columns) if labelled_path else None
    if given is not None:  # the pool's labels are in the column the labelled file has them in
        columns = {**columns, "label_column": given.label_column}
    pool, known = load_pool(pool_path, **columns)
    labelled, pool = with_pool_labels(given, pool, known)
    result = suggest_rows(pool, budget, strategy, labelled, encoder, labels, dup_threshold, seed, reporter)
    out = Path(out)
    labelstudio.write_tasks(labelstudio.to_tasks(result.rows, result.predictions), out)
    config_path = None
    if result.labels:
        config_path = out.with_suffix(".label_config.xml")
        write_text_atomic(config_path, labelstudio.label_config(result.labels))
    rows = []
    for i, (row_id, text) in enumerate(zip(result.rows.ids, result.rows.texts, strict=True)):
        guess = result.predictions[i] if result.predictions else (None, None)
        rows.append({"id": row_id, "text": text, "predicted_label": guess[0], "score": guess[1]})
    return {
        "strategy": strategy,
        "budget": budget,
        "suggested": len(rows),
        "excluded_already_labelled": result.excluded,
        "labelled_in_pool": len(labelled or []) - len(given or []),
        "rows": rows,
        "tasks": str(out),
        "label_config": str(config_path) if config_path else None,
        "notes": labelstudio.json_min_notes(list(result.rows.extra))
        + _suggest_notes(len(rows), budget, len(pool) - result.excluded, dup_threshold, config_path),
    }


def _suggest_notes(
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


def import_export(export: str | Path, out: str | Path, labels: list[str] | None = None) -> dict[str, Any]:
    """Read a Label Studio export and write it as a labelled dataset file."""
    check_outputs([export], [out])
    dataset, skipped = labelstudio.read_export(export, labels)
    write_frame(dataset.to_frame(), out)
    return {
        "rows": len(dataset),
        "skipped_unannotated": skipped,
        "labels": dataset.class_counts(),
        "out": str(out),
    }


# ---------------------------------------------------------------- label issues
def label_issues(
    data: Dataset,
    encoder: Encoder | None = None,
    folds: int = 5,
    seed: int = 0,
    dup_threshold: float = 0.95,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Likely label errors (ranked, with a suggested label), conflicting near-duplicates, outliers."""
    data.check_trainable()
    names, y = _class_index(data, None)
    folds, notes = _folds(y, folds)
    x = embed(data.texts, encoder or Encoder(), reporter=reporter)
    found = find_issues(x, y, len(names), folds, seed)
    near = neighbours(x)
    flagged, distance = outliers(near)
    given = data.require_labels()
    return {
        "rows": len(data),
        "issues": [
            {
                "id": row_ref(data, i),
                "text": data.texts[i],
                "given_label": given[i],
                "suggested_label": names[found.suggested[i]],
                "score": round(float(found.quality[i]), 6),
                "suggested_confidence": round(float(found.pred_probs[i].max()), 6),
            }
            for i in found.rows.tolist()
        ],
        "near_duplicates": [
            {
                "id": row_ref(data, i),
                "other_id": row_ref(data, j),
                "label": given[i],
                "other_label": given[j],
                "similarity": round(s, 6),
                "text": data.texts[i],
                "other_text": data.texts[j],
            }
            for i, j, s in conflicting_duplicates(near, y, dup_threshold)
        ],
        "outliers": [
            {
                "id": row_ref(data, i),
                "text": data.texts[i],
                "label": given[i],
                "distance": round(float(distance[i]), 6),
            }
            for i in flagged.tolist()
        ],
        "probe_c": found.c,
        "folds": folds,
        "notes": notes,
    }


def issues_frame(report: dict[str, Any]) -> pd.DataFrame:
    """One table of every finding, for the CSV / HTML report."""
    rows = [
        {
            "kind": "label_error",
            "id": r["id"],
            "text": r["text"],
            "label": r["given_label"],
            "suggested_label": r["suggested_label"],
            "score": r["score"],
        }
        for r in report["issues"]
    ]
    rows += [
        {
            "kind": "conflicting_duplicate",
            "id": r["id"],
            "text": r["text"],
            "label": r["label"],
            "other_id": r["other_id"],
            "other_label": r["other_label"],
            "score": r["similarity"],
        }
        for r in report["near_duplicates"]
    ]
    rows += [
        {"kind": "outlier", "id": r["id"], "text": r["text"], "label": r["label"], "score": r["distance"]}
        for r in report["outliers"]
    ]
    columns = ["kind", "id", "text", "label", "suggested_label", "other_id", "other_label", "score"]
    return pd.DataFrame(rows, columns=columns)


def write_issues_report(report: dict[str, Any], path: str | Path, source: str = "") -> Path:
    path = Path(path)
    frame = issues_frame(report)
    if path.suffix.lower() != ".html":
        return write_frame(frame, path)
    counts = frame["kind"].value_counts().to_dict()
    html = (
        "<!doctype html><meta charset='utf-8'><title>frugalml label issues</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}</style>"
        f"<h1>Label issues: {source}</h1><p>{report['rows']} rows; "
        + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items())
        + "</p>"
        + frame.to_html(index=False, na_rep="", border=0)
    )
    return write_text_atomic(path, html)


# ---------------------------------------------------------------- augmentation
def augment_dataset(
    data: Dataset, per_row: int = 2, operations: Sequence[str] = ("swap", "delete", "typo"), seed: int = 0
) -> pd.DataFrame:
    """The original rows plus at most `per_row` synthetic variants of each, marked `synthetic`."""
    variants = augment.augment_texts(data.texts, per_row, operations, seed)
    original = data.to_frame()
    original["synthetic"] = False
    original["origin_id"] = data.ids
    taken = set(data.ids)
    made = []
    for row, texts in enumerate(variants):
        for k, text in enumerate(texts, 1):
            new_id = f"{data.ids[row]}-aug{k}"
            if new_id in taken:
                raise DataError(f"{data.source}: id {new_id!r} already exists; cannot name synthetic rows")
            entry = {"id": new_id, "text": text, "synthetic": True, "origin_id": data.ids[row]}
            if data.labels is not None:
                entry["label"] = data.labels[row]
            made.append(entry)
    return pd.concat([original, pd.DataFrame(made, columns=list(original.columns))], ignore_index=True)
