"""The vectors every labelling technique works on, for data of either task.

Texts: sentence embeddings (label.embeddings). Images: the penultimate-layer embedding of a
trained image bundle (`--bundle`; models.vision's `features`), L2-normalised as sentence vectors
are, so the linear probe, the nearest-neighbour smoothing and the near-duplicate threshold
(cosine similarity) read them alike. There is no pretrained image encoder to fall back on
offline: image data needs the bundle.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from frugalml.data import Dataset
from frugalml.data.images import ImageDataset, is_image_data, load_images
from frugalml.errors import FrugalError
from frugalml.label.embeddings import Encoder, embed
from frugalml.progress import Reporter, SilentReporter

Rows = Dataset | ImageDataset


def load_labelling_data(path: str | Path, *, require_labels: bool = True, **columns) -> Rows:
    """Images (a folder of class folders, a table of image paths, a MedMNIST .npz: its train
    split) or texts (`load_dataset`), whichever `path` holds; `columns` are load_dataset's."""
    from frugalml.data import load_dataset

    if is_image_data(path):
        return load_images(path, label_column=columns.get("label_column"), require_labels=require_labels)
    return load_dataset(path, require_labels=require_labels, **columns)


def vectors(data: Rows, encoder: Encoder, reporter: Reporter | None = None, *more: Rows) -> list[np.ndarray]:
    """One L2-normalised vector per row, float32, rows in order: an array for `data` and one for
    each of `more`, all from one load of the encoder."""
    parts = [data, *more]
    texts = [part for part in parts if isinstance(part, Dataset)]
    if len(texts) == len(parts):
        x = embed([text for part in texts for text in part.texts], encoder, reporter=reporter)
    else:
        images = [image for part in parts if isinstance(part, ImageDataset) for image in part.images]
        x = image_vectors(images, encoder, reporter)
    return np.split(x, np.cumsum([len(part) for part in parts])[:-1])


def image_vectors(
    images: Sequence[np.ndarray], encoder: Encoder, reporter: Reporter | None = None
) -> np.ndarray:
    from frugalml.bundle import IMAGE_TASK
    from frugalml.lineage import open_store, resolve_bundle
    from frugalml.runtime.image_predictor import ImagePredictor

    if not encoder.bundle:
        raise FrugalError(
            "image data needs --bundle: a trained image bundle (torch) whose penultimate layer "
            "embeds the images"
        )
    bundle = resolve_bundle(encoder.bundle, open_store())
    if bundle.task != IMAGE_TASK or bundle.format != "torch":
        raise FrugalError(
            f"bundle {bundle.id} is a {bundle.task} {bundle.format} model; image embeddings need a "
            "torch image-classification bundle"
        )
    with (reporter or SilentReporter()).task(f"embedding {len(images):,} images", None):
        x = ImagePredictor.from_bundle(bundle).embed(images)
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def row_text(data: Rows, row: int) -> str | None:
    """A row's text, as reports show it; None for an image (its id names it)."""
    return data.texts[row] if isinstance(data, Dataset) else None
