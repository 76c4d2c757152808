"""The settings of each labelling workflow, one dataclass per command and step kind.

Each config holds the only copy of its defaults and refuses an out-of-range value where it is
built, before any file is read; the CLI passes only the options a user gave, and a pipeline step
builds its config from its settings, so the step's cache key covers every setting, defaults
included. The workflows (label/workflow/) take these; the algorithms (label/*.py) take arrays
and plain values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from frugalml.errors import FrugalError
from frugalml.label.active import DEFAULT_STRATEGY, get_strategy
from frugalml.label.augment import MAX_PER_ROW, OPERATIONS
from frugalml.label.embeddings import Encoder
from frugalml.names import split_names


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


def _check_folds(folds: int) -> None:
    if folds < 2:
        raise FrugalError(f"folds must be 2 or more, got {folds}")


def _check_dup_threshold(threshold: float) -> None:
    if not 0 < threshold <= 1:
        raise FrugalError(f"dup_threshold must be in (0, 1], got {threshold}")


@dataclass(kw_only=True)
class EncoderConfig:
    """Where the embeddings come from: a base encoder (name or local folder) or a tuned torch
    bundle's encoder (id, id prefix or folder), which wins over `base`."""

    base: str = "minilm"
    bundle: str | None = None

    @property
    def encoder(self) -> Encoder:
        return Encoder(self.base, self.bundle)


@dataclass(kw_only=True)
class LabelSetConfig:
    """`labels`: the label set, given as a list, a comma-separated string or a file with one label
    per line (read when the config is built, after the other settings are checked); None: the
    labels the data has."""

    labels: list[str] | str | None = None

    def _read_labels(self) -> None:
        self.labels = parse_labels(self.labels)

    @property
    def label_set(self) -> list[str] | None:
        """`labels` as read when the config was built: a list, or None."""
        assert not isinstance(self.labels, str)  # _read_labels ran in __post_init__
        return self.labels


@dataclass(kw_only=True)
class AutoLabelConfig(EncoderConfig, LabelSetConfig):
    target_precision: float = 0.95
    # False: the held-out precision's Wilson lower bound must reach the target (the labels can be
    # trusted as they are). True: its point estimate must (more rows at a little less precision;
    # on BANKING77 a slightly better training set on average, docs/labelling.md).
    point_estimate: bool = False
    rounds: int = 2  # self-training rounds after the first pass
    # Smooth each embedding towards its nearest texts among labelled + pool rows before
    # self-training (label.neighbours); 0 turns it off.
    neighbours: int = 5
    folds: int = 5  # cross-validation folds on the labelled rows (fewer where they allow no more)
    seed: int = 0
    c: float = 0.1  # the linear probe's inverse regularization

    def __post_init__(self) -> None:
        if not 0.5 <= self.target_precision < 1:
            raise FrugalError(f"target precision must be in [0.5, 1), got {self.target_precision}")
        if self.rounds < 0:
            raise FrugalError(f"rounds must be 0 or more, got {self.rounds}")
        if self.neighbours < 0:
            raise FrugalError(f"neighbours must be 0 or more, got {self.neighbours}")
        _check_folds(self.folds)
        if self.c <= 0:
            raise FrugalError(f"c must be above 0, got {self.c}")
        self._read_labels()


@dataclass(kw_only=True)
class SuggestConfig(EncoderConfig, LabelSetConfig):
    budget: int  # how many rows to suggest
    strategy: str = DEFAULT_STRATEGY
    dup_threshold: float = 0.95  # cosine similarity at which two texts count as near-duplicates
    seed: int = 0

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise FrugalError(f"budget must be at least 1, got {self.budget}")
        get_strategy(self.strategy)
        _check_dup_threshold(self.dup_threshold)
        self._read_labels()


@dataclass(kw_only=True)
class ImportConfig(LabelSetConfig):
    def __post_init__(self) -> None:
        self._read_labels()


@dataclass(kw_only=True)
class IssuesConfig(EncoderConfig):
    folds: int = 5  # folds for out-of-fold probabilities (fewer where the rows allow no more)
    seed: int = 0
    dup_threshold: float = 0.95  # cosine similarity at which two texts count as near-duplicates

    def __post_init__(self) -> None:
        _check_folds(self.folds)
        _check_dup_threshold(self.dup_threshold)


@dataclass(kw_only=True)
class AugmentConfig:
    per_row: int = 2  # most synthetic rows per original
    # A list of names or a comma-separated string; kept as a tuple.
    operations: Sequence[str] = ("swap", "delete", "typo")
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.per_row <= MAX_PER_ROW:
            raise FrugalError(f"per_row must be between 1 and {MAX_PER_ROW}, got {self.per_row}")
        self.operations = tuple(split_names(self.operations))
        unknown = sorted(set(self.operations) - set(OPERATIONS))
        if unknown or not self.operations:
            raise FrugalError(f"unknown operation(s) {unknown}; choose from {', '.join(OPERATIONS)}")
