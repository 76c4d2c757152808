"""Label Studio I/O: tasks with pre-annotations out, annotated exports back in, losslessly.

A task keeps the row's id in `data.frugalml_id` and every other column in `data`, so an export
comes back as the same rows. Existing labels travel as annotations and model guesses as
predictions (Label Studio shows those as pre-annotations). `read_export` accepts Label Studio's
JSON export (tasks with annotations) and its JSON-MIN export (one flat object per task).
Set the project up with the XML from `label_config`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from frugalml.data import Dataset
from frugalml.data.frames import json_cell
from frugalml.data.images import ImageDataset
from frugalml.data.io import write_text_atomic
from frugalml.errors import DataError

FROM_NAME = "label"  # the Choices control
TO_NAME = "text"  # the Text object, and the data key that holds the text
IMAGE_NAME = "image"  # the Image object, and the data key that holds the image's path
ID_KEY = "frugalml_id"


def label_config(labels: Sequence[str], kind: str = "text") -> str:
    """Label Studio labelling config: one text (or image, `kind`), one single-choice question
    over `labels`."""
    choices = "\n".join(f"    <Choice value={quoteattr(label)}/>" for label in labels)
    name = TO_NAME if kind == "text" else IMAGE_NAME
    return (
        "<View>\n"
        f'  <{kind.capitalize()} name="{name}" value="${name}"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{name}" choice="single" showInLine="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def _choice(label: str, to_name: str = TO_NAME) -> dict[str, Any]:
    return {"from_name": FROM_NAME, "to_name": to_name, "type": "choices", "value": {"choices": [label]}}


def _predicted(label: str, score: float, model_version: str, to_name: str = TO_NAME) -> list[dict[str, Any]]:
    return [{"model_version": model_version, "score": float(score), "result": [_choice(label, to_name)]}]


def to_image_tasks(
    images: ImageDataset,
    predictions: Sequence[tuple[str, float]] | None = None,
    model_version: str = "frugalml",
) -> list[dict[str, Any]]:
    """Label Studio tasks for images: `data.image` is the image file's path (for a folder or a
    table of paths; serve it to Label Studio through its local-files storage), or the image's id
    where it has no file (a row of a .npz); `predictions` become pre-annotations."""
    tasks = []
    for row, row_id in enumerate(images.ids):
        task: dict[str, Any] = {"data": {IMAGE_NAME: image_file(images, row_id), ID_KEY: row_id}}
        if predictions is not None:
            task["predictions"] = _predicted(*predictions[row], model_version, IMAGE_NAME)
        tasks.append(task)
    return tasks


def image_file(images: ImageDataset, row_id: str) -> str:
    """The path of the file an image was read from, else its id."""
    source = Path(images.source)
    for folder in (source, source.parent):
        if (folder / row_id).is_file():
            return str(folder / row_id)
    return row_id


def to_tasks(
    dataset: Dataset,
    predictions: Sequence[tuple[str, float]] | None = None,
    model_version: str = "frugalml",
) -> list[dict[str, Any]]:
    """Label Studio tasks for `dataset`; labels become annotations, `predictions` pre-annotations."""
    tasks = []
    for row, (row_id, text) in enumerate(zip(dataset.ids, dataset.texts, strict=True)):
        extra = {k: json_cell(v[row]) for k, v in dataset.extra.items() if k not in (TO_NAME, ID_KEY)}
        task: dict[str, Any] = {"data": {TO_NAME: text, ID_KEY: row_id, **extra}}
        if dataset.labels is not None:
            task["annotations"] = [{"result": [_choice(dataset.labels[row])]}]
        if predictions is not None:
            task["predictions"] = _predicted(*predictions[row], model_version)
        tasks.append(task)
    return tasks


def json_min_notes(columns: Sequence[str]) -> list[str]:
    """A note when some data columns cannot come back from a JSON-MIN export: it puts the data
    beside Label Studio's own keys, which overwrite data keys of the same names."""
    lost = sorted(set(columns) & (_MIN_META | {FROM_NAME}))
    if not lost:
        return []
    return [
        f"column(s) {lost} share names with Label Studio's JSON-MIN keys and come back only "
        "from its JSON export (export as JSON, not JSON-MIN)"
    ]


def write_tasks(tasks: list[dict[str, Any]], path: Path) -> Path:
    return write_text_atomic(path, json.dumps(tasks, ensure_ascii=False, indent=1) + "\n")


def read_export(path: str | Path, labels: Sequence[str] | None = None) -> tuple[Dataset, int]:
    """(the annotated rows as a labelled Dataset, number of tasks skipped as unannotated).

    The latest annotation that was not cancelled wins. With `labels`, a label outside that set
    is an error, as are duplicate ids, empty texts and multi-choice answers.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a Label Studio JSON export ({exc})") from None
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise DataError(f"{path}: a Label Studio export is a JSON list of task objects")
    if not tasks:
        raise DataError(f"{path}: contains no tasks")
    ids, texts, answers, extras, skipped = [], [], [], [], 0
    for number, task in enumerate(tasks):
        try:
            data, label = _json_task(task) if "data" in task else _min_task(task)
            text = data.get(TO_NAME)
        except (AttributeError, TypeError):  # a value of the wrong JSON type somewhere in the task
            raise DataError(
                f"{path}: task {number} is not shaped like a Label Studio task (data, annotations, "
                "result and value must be objects or lists of them)"
            ) from None
        if label is None:
            skipped += 1
            continue
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path}: task {number} has no '{TO_NAME}' in its data")
        ids.append(str(data.get(ID_KEY, task.get("id", number))))
        texts.append(text)
        answers.append(label)
        extras.append({k: v for k, v in data.items() if k not in (TO_NAME, ID_KEY)})
    if not ids:
        raise DataError(f"{path}: none of its {len(tasks)} tasks has an annotation")
    duplicated = sorted(i for i, n in Counter(ids).items() if n > 1)
    if duplicated:
        raise DataError(f"{path}: duplicate task id(s) {duplicated[:5]}")
    if labels is not None:
        unknown = sorted(set(answers) - set(labels))
        if unknown:
            raise DataError(f"{path}: label(s) {unknown[:5]} are not in the label set {list(labels)}")
    columns = list(dict.fromkeys(k for e in extras for k in e))  # in the order the tasks give them
    dataset = Dataset(
        texts=texts,
        labels=answers,
        ids=ids,
        source=str(path),
        extra={k: [e.get(k) for e in extras] for k in columns},
    )
    return dataset, skipped


def _json_task(task: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    annotations.sort(key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""))
    for annotation in reversed(annotations):
        for result in annotation.get("result") or []:
            if result.get("type") == "choices" and result.get("from_name", FROM_NAME) == FROM_NAME:
                return task["data"], _single(result.get("value", {}).get("choices"), task)
    return task["data"], None


def _min_task(task: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    data = {k: v for k, v in task.items() if k not in _MIN_META and k != FROM_NAME}
    value = task.get(FROM_NAME)
    if isinstance(value, dict):
        value = value.get("choices")
    return data, None if value is None else _single(value, task)


# Keys JSON-MIN adds to each task besides its data and answers.
_MIN_META = {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time"}


def _single(choices: Any, task: dict[str, Any]) -> str:
    if isinstance(choices, str):
        return choices
    if not isinstance(choices, list) or len(choices) != 1:
        raise DataError(f"task {task.get('id', '?')}: expected exactly one choice, got {choices!r}")
    return str(choices[0])
