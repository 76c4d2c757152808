"""`label issues`: likely label errors, conflicting near-duplicates and outliers in labelled data.

The detection is label.issues' (cleanlab's ranking on out-of-fold probe probabilities, and
nearest neighbours); this module embeds the rows, names each finding by row id and writes the
report as a table (CSV, JSONL, Parquet) or an HTML page.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from frugalml.data.frames import FRAME_SUFFIXES, check_outputs, write_frame
from frugalml.data.io import write_text_atomic
from frugalml.label.config import IssuesConfig
from frugalml.label.issues import conflicting_duplicates, find_issues, outliers
from frugalml.label.neighbours import neighbours
from frugalml.label.vectors import Rows, load_labelling_data, row_text, vectors
from frugalml.label.workflow.rows import Columns, class_index, folds_used, row_ref
from frugalml.progress import Reporter

REPORT_SUFFIXES = (*FRAME_SUFFIXES, ".html")  # what write_issues_report writes


@dataclass
class LabelIssue:
    id: str | int  # the row's id, or its 0-based index where the data has no id column
    text: str | None  # None for an image: its id (path, or split/index in a .npz) names it
    given_label: str
    suggested_label: str
    score: float  # label quality: the lower, the likelier an error
    suggested_confidence: float


@dataclass
class NearDuplicate:
    id: str | int
    other_id: str | int
    label: str
    other_label: str
    similarity: float
    text: str | None
    other_text: str | None


@dataclass
class Outlier:
    id: str | int
    text: str | None
    label: str
    distance: float  # to its nearest neighbours


@dataclass
class IssuesReport:
    rows: int
    issues: list[LabelIssue]  # ranked, likeliest first
    near_duplicates: list[NearDuplicate]
    outliers: list[Outlier]
    probe_c: float
    folds: int
    notes: list[str]
    report: str | None = None  # the report file, where one was written

    def to_json(self) -> dict[str, Any]:
        found = asdict(self)
        if self.report is None:
            del found["report"]
        return found


def label_issues(data: Rows, config: IssuesConfig, *, reporter: Reporter | None = None) -> IssuesReport:
    """Likely label errors (ranked, with a suggested label), conflicting near-duplicates, outliers,
    in texts or images (label.vectors)."""
    data.check_trainable()
    names, y = class_index(data, None)
    folds, notes = folds_used(y, config.folds)
    [x] = vectors(data, config.encoder, reporter)
    found = find_issues(x, y, len(names), folds, config.seed)
    near = neighbours(x)
    flagged, distance = outliers(near)
    given = data.require_labels()
    return IssuesReport(
        rows=len(data),
        issues=[
            LabelIssue(
                id=row_ref(data, i),
                text=row_text(data, i),
                given_label=given[i],
                suggested_label=names[found.suggested[i]],
                score=round(float(found.quality[i]), 6),
                suggested_confidence=round(float(found.pred_probs[i].max()), 6),
            )
            for i in found.rows.tolist()
        ],
        near_duplicates=[
            NearDuplicate(
                id=row_ref(data, i),
                other_id=row_ref(data, j),
                label=given[i],
                other_label=given[j],
                similarity=round(s, 6),
                text=row_text(data, i),
                other_text=row_text(data, j),
            )
            for i, j, s in conflicting_duplicates(near, y, config.dup_threshold)
        ],
        outliers=[
            Outlier(
                id=row_ref(data, i),
                text=row_text(data, i),
                label=given[i],
                distance=round(float(distance[i]), 6),
            )
            for i in flagged.tolist()
        ],
        probe_c=found.c,
        folds=folds,
        notes=notes,
    )


def issues_files(
    data_path: str | Path,
    *,
    config: IssuesConfig,
    report: str | Path | None = None,
    columns: Columns | None = None,
    reporter: Reporter | None = None,
) -> IssuesReport:
    """Find the issues in a data file, and write them to `report` when given."""
    if report:
        check_outputs([data_path], [report], REPORT_SUFFIXES)  # before the encoding, the slow part
    data = load_labelling_data(data_path, **(columns or {}))
    found = label_issues(data, config, reporter=reporter)
    if report:
        write_issues_report(found, report, source=str(data_path))
        found.report = str(report)
    return found


def issues_frame(report: IssuesReport) -> pd.DataFrame:
    """One table of every finding, for the CSV / HTML report."""
    rows = [
        {
            "kind": "label_error",
            "id": r.id,
            "text": r.text,
            "label": r.given_label,
            "suggested_label": r.suggested_label,
            "score": r.score,
        }
        for r in report.issues
    ]
    rows += [
        {
            "kind": "conflicting_duplicate",
            "id": r.id,
            "text": r.text,
            "label": r.label,
            "other_id": r.other_id,
            "other_label": r.other_label,
            "score": r.similarity,
        }
        for r in report.near_duplicates
    ]
    rows += [
        {"kind": "outlier", "id": r.id, "text": r.text, "label": r.label, "score": r.distance}
        for r in report.outliers
    ]
    columns = ["kind", "id", "text", "label", "suggested_label", "other_id", "other_label", "score"]
    return pd.DataFrame(rows, columns=columns)


def write_issues_report(report: IssuesReport, path: str | Path, *, source: str = "") -> Path:
    path = Path(path)
    frame = issues_frame(report)
    if path.suffix.lower() != ".html":
        return write_frame(frame, path)
    counts = frame["kind"].value_counts().to_dict()
    html = (
        "<!doctype html><meta charset='utf-8'><title>frugalml label issues</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}</style>"
        f"<h1>Label issues: {source}</h1><p>{report.rows} rows; "
        + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items())
        + "</p>"
        + frame.to_html(index=False, na_rep="", border=0)
    )
    return write_text_atomic(path, html)
