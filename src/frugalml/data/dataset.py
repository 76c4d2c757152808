"""The one dataset type every stage exchanges."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Self

import pandas as pd

from frugalml.errors import DataError


class LabelledRows:
    """What every dataset kind (texts, images) offers about its labels: subclasses have `labels`
    (None when unlabelled), `source`, `sha256`, a length and `subset`."""

    labels: list[str] | None
    source: str
    sha256: str

    def __len__(self) -> int:
        raise NotImplementedError

    def subset(self, indices: Sequence[int]) -> Self:
        raise NotImplementedError

    @property
    def is_labelled(self) -> bool:
        return self.labels is not None

    @property
    def label_names(self) -> list[str]:
        """Sorted distinct labels; the class order every model uses."""
        return sorted(set(self.require_labels()))

    def require_labels(self) -> list[str]:
        if self.labels is None:
            raise DataError(f"{self.source or 'dataset'}: has no label column")
        return self.labels

    def class_counts(self) -> dict[str, int]:
        return dict(Counter(self.require_labels()))

    def check_trainable(self) -> None:
        """Refuse data a classifier cannot learn from, with a message that says why."""
        counts = self.class_counts()
        if len(counts) < 2:
            only = next(iter(counts), "")
            raise DataError(f"{self.source}: needs at least 2 classes to train, found only {only!r}")

    def check_labels_known(self, known: Sequence[str]) -> None:
        """Refuse evaluation data whose labels the model never saw in training."""
        unseen = sorted(set(self.require_labels()) - set(known))
        if unseen:
            shown = ", ".join(repr(u) for u in unseen[:5]) + (" ..." if len(unseen) > 5 else "")
            raise DataError(f"{self.source}: {len(unseen)} label(s) not seen in training: {shown}")


@dataclass(frozen=True)
class Dataset(LabelledRows):
    """Texts with optional labels and stable row ids.

    `sha256` identifies the content the rows came from (the file's bytes); the lineage store and the
    pipeline cache use it for lineage.
    """

    texts: list[str]
    labels: list[str] | None
    ids: list[str]
    source: str = ""
    sha256: str = ""
    extra: dict[str, list] = field(default_factory=dict)  # other columns, kept for round trips
    numbered: bool = False  # the file had no id column: ids are its 0-based row numbers
    label_column: str | None = None  # the file's column the labels came from

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.labels) != len(self.texts):
            raise ValueError("texts and labels differ in length")
        if len(self.ids) != len(self.texts):
            raise ValueError("texts and ids differ in length")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> Dataset:
        return Dataset(
            texts=[self.texts[i] for i in indices],
            labels=None if self.labels is None else [self.labels[i] for i in indices],
            ids=[self.ids[i] for i in indices],
            source=self.source,
            sha256=self.sha256,
            extra={k: [v[i] for i in indices] for k, v in self.extra.items()},
            numbered=self.numbered,
            label_column=self.label_column,
        )

    def concat(self, other: Dataset) -> Dataset:
        """These rows, then `other`'s; labelled when both are. A column that only one of them has
        is empty in the other's rows. Ids must already differ; they are not checked here."""

        def column(data: Dataset, name: str) -> list:
            return data.extra.get(name, [None] * len(data))

        names = dict.fromkeys([*self.extra, *other.extra])
        return Dataset(
            texts=self.texts + other.texts,
            labels=None if self.labels is None or other.labels is None else self.labels + other.labels,
            ids=self.ids + other.ids,
            source=self.source,
            sha256=self.sha256,
            extra={name: column(self, name) + column(other, name) for name in names},
            label_column=self.label_column,
        )

    def to_frame(self) -> pd.DataFrame:
        """id, text, (label,) then the other columns; another column named like one of the first
        three (say `text`, when the texts came from `subject`) is kept as `original_text`."""
        columns: dict[str, list] = {"id": self.ids, "text": self.texts}
        if self.labels is not None:
            columns["label"] = self.labels
        for name, values in self.extra.items():
            while name in columns:
                name = f"original_{name}"
            columns[name] = values
        return pd.DataFrame(columns)
