"""Pictures of an image classifier's mistakes: a grid of its most confidently wrong images."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def most_confidently_wrong(
    truth: Sequence[str], labels: Sequence[str], probabilities: np.ndarray, limit: int
) -> list[int]:
    """Rows whose top label is wrong, surest first, at most `limit`."""
    best = probabilities.argmax(axis=1)
    wrong = [row for row, i in enumerate(best) if labels[i] != truth[row]]
    return sorted(wrong, key=lambda row: -probabilities[row, best[row]])[:limit]


def plot_wrong(
    images: np.ndarray,
    truth: Sequence[str],
    labels: Sequence[str],
    probabilities: np.ndarray,
    path: Path,
    limit: int = 25,
) -> Path:
    """Write a PNG grid of the most confidently wrong images (uint8 NHWC), each titled
    `true -> predicted (probability)`; a note when none is wrong."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = most_confidently_wrong(truth, labels, probabilities, limit)
    side = max(1, math.ceil(math.sqrt(len(rows))))
    fig, axes = plt.subplots(side, side, figsize=(2.2 * side, 2.4 * side), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, row in zip(axes.ravel(), rows, strict=False):
        image = images[row]
        grey = image.shape[2] == 1
        ax.imshow(image[:, :, 0] if grey else image, cmap="gray" if grey else None, vmin=0, vmax=255)
        chosen = int(probabilities[row].argmax())
        ax.set_title(f"{truth[row]} → {labels[chosen]}\n({probabilities[row, chosen]:.2f})", fontsize=8)
    if not rows:
        axes[0, 0].text(0.5, 0.5, "no wrong predictions", ha="center", va="center")
    fig.suptitle(f"most confidently wrong: {len(rows)} of the {len(truth)} images", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
