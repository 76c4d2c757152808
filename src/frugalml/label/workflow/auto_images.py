"""`label auto` on images: label.autolabel's self-training on image embeddings (label.vectors).

The labelled images are written as a table of image paths (relative to the table's folder, so
`frugalml tune` and `frugalml compress` read it back) with label, confidence and source columns,
or, from any input, as a MedMNIST-layout `.npz` (`train_images`, `train_labels`, plus
`train_confidence` and `train_source`). The review queue has the same form, with the model's
guess as `suggested_label`. Images from a `.npz` have no files, so they are written as `.npz`.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from frugalml.data.frames import FRAME_SUFFIXES, check_outputs, write_frame
from frugalml.data.images import ImageDataset, is_image_data, load_images
from frugalml.data.io import atomic_target
from frugalml.data.split import AUTO
from frugalml.errors import DataError
from frugalml.label.config import AutoLabelConfig
from frugalml.label.labelstudio import image_file
from frugalml.label.workflow.auto import AutoLabelReport, auto_label_files, label_pool, summarise
from frugalml.label.workflow.rows import Columns, class_index, folds_used
from frugalml.progress import Reporter, SilentReporter
from frugalml.settings import Settings, get_settings

SUFFIXES = (*FRAME_SUFFIXES, ".npz")


def auto_label_image_files(
    labelled: str | Path,
    unlabelled: str | Path,
    *,
    out: str | Path,
    review_out: str | Path,
    config: AutoLabelConfig,
    label_column: str | None = None,
    reporter: Reporter | None = None,
    settings: Settings | None = None,
) -> AutoLabelReport:
    """Auto-label a pool of images from labelled ones; write both outputs; record the run."""
    from frugalml.lineage import open_store

    reporter = reporter or SilentReporter()
    check_outputs([labelled, unlabelled], [out, review_out], SUFFIXES)
    seed = load_images(labelled, label_column=label_column)
    pool = load_images(unlabelled, require_labels=False, image_size=seed.size[0], mode=_mode(seed))
    if pool.is_labelled and Path(unlabelled).suffix.lower() != ".npz":
        raise DataError(f"{pool.source}: already has labels; give the unlabelled images as the pool")
    seed.check_trainable()
    if len(seed) < 4:
        raise DataError(f"{seed.source}: needs at least 4 labelled images to cross-validate a threshold")
    for path, data in ((out, seed), (review_out, pool)):
        if Path(path).suffix.lower() != ".npz" and not _has_files(data):
            raise DataError(f"{data.source}: images from a .npz have no files to name; write {path} as .npz")
    names, y = class_index(seed, config.label_set)
    folds, notes = folds_used(y, config.folds)
    lineage = open_store(settings or get_settings())
    for data in (seed, pool):
        lineage.add_dataset(data)
    run_config = {**asdict(config), "labelled": str(labelled), "unlabelled": str(unlabelled)}
    with lineage.run("label", run_config, seed.sha256) as run:
        result = label_pool(seed, y, pool, len(names), config, reporter)
        summary = summarise(seed, names, len(pool), result, config, folds, notes)
        guesses = [names[i] for i in result.labels]
        confidence = result.confidence.round(6)
        accepted = result.accepted
        images = np.concatenate([seed.images, pool.images[accepted]])
        rows = pd.DataFrame(
            {
                "id": seed.ids + [pool.ids[i] for i in np.flatnonzero(accepted)],
                "label": seed.require_labels() + [guesses[i] for i in np.flatnonzero(accepted)],
                "confidence": np.concatenate([np.ones(len(seed)), confidence[accepted]]),
                "source": ["human"] * len(seed) + [AUTO] * int(accepted.sum()),
            }
        )
        write_images(out, rows, images, [seed] * len(seed) + [pool] * int(accepted.sum()))
        left = np.flatnonzero(~accepted)
        left = left[np.argsort(-confidence[left], kind="stable")]  # most confident first
        review = pd.DataFrame(
            {
                "id": [pool.ids[i] for i in left],
                "suggested_label": [guesses[i] for i in left],
                "confidence": confidence[left],
            }
        )
        write_images(review_out, review, pool.images[left], [pool] * len(left))
        report = AutoLabelReport(summary, 0, str(out), str(review_out), run.id)
        run.summary = report.to_json()
    return report


def write_images(
    path: str | Path, rows: pd.DataFrame, images: np.ndarray, sources: list[ImageDataset]
) -> Path:
    """`rows` (id, label or suggested_label, ...) with their images: a `.npz` holding the pixels,
    or a table whose `image` column names each file relative to the table's folder."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        label = "label" if "label" in rows else "suggested_label"
        arrays = {"train_images": images, "train_labels": rows[label].to_numpy(dtype=str)}
        for name in rows.columns.drop(label):
            column = rows[name].to_numpy()
            arrays[f"train_{name}"] = column.astype(str) if column.dtype == object else column
        with atomic_target(path) as temp, open(temp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
        return path
    files = [image_file(source, row_id) for source, row_id in zip(sources, rows["id"], strict=True)]
    table = rows.copy()
    table.insert(1, "image", [os.path.relpath(Path(f).resolve(), path.resolve().parent) for f in files])
    return write_frame(table, path)


def _has_files(data: ImageDataset) -> bool:
    return not len(data) or Path(image_file(data, data.ids[0])).is_file()


def _mode(data: ImageDataset) -> str:
    return "L" if data.channels == 1 else "RGB"


def output_suffix(data: str | Path) -> str:
    """The suffix `label auto` writes by default for this input: `.npz` for a `.npz`, else `.csv`."""
    return ".npz" if Path(data).suffix.lower() == ".npz" else ".csv"


def auto_label_paths(
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
    """`label auto` on files of either task: images where `labelled` holds images, else texts."""
    columns = columns or {}
    if is_image_data(labelled):
        return auto_label_image_files(
            labelled,
            unlabelled,
            out=out,
            review_out=review_out,
            config=config,
            label_column=columns.get("label_column"),
            reporter=reporter,
            settings=settings,
        )
    return auto_label_files(
        labelled,
        unlabelled,
        out=out,
        review_out=review_out,
        config=config,
        columns=columns,
        reporter=reporter,
        settings=settings,
    )
