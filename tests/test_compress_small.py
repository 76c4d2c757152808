"""Compression on little data: vocabulary trimming that holds outside the corpus (real MiniLM
tokenizer, BANKING77), and the settings chosen from the data's size."""

from __future__ import annotations

import json

import pytest
from conftest import SHARED_DATA

from frugalml.errors import FrugalError

BANKING77 = SHARED_DATA / "banking77"


@pytest.mark.slow
def test_trim_keeps_text_outside_a_small_corpus_tokenized_as_before():
    """20 texts per intent as the corpus; the share of the 3,080 test texts that tokenize exactly
    as with the full vocabulary (then the trimmed model's predictions on them are the same)."""
    if not (BANKING77 / "train.csv").exists():
        pytest.skip(f"BANKING77 not found at {BANKING77}")
    import pandas as pd
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    from frugalml.compress.vocab_trim import kept_token_ids, trimmed_tokenizer_spec
    from frugalml.models.base import resolve_base

    tokenizer = AutoTokenizer.from_pretrained(resolve_base("minilm"))
    train = pd.read_csv(BANKING77 / "train.csv")
    corpus = train.groupby("category").head(20)["text"].tolist()
    outside = pd.read_csv(BANKING77 / "test.csv")["text"].tolist()
    reference = tokenizer(outside, truncation=False)["input_ids"]

    def identical(words: int) -> float:
        keep = kept_token_ids(tokenizer, corpus, words)
        new_id = {old: new for new, old in enumerate(keep)}
        spec = trimmed_tokenizer_spec(json.loads(tokenizer.backend_tokenizer.to_str()), keep)
        trimmed = Tokenizer.from_str(json.dumps(spec))
        same = [
            [new_id.get(i, -1) for i in ids] == trimmed.encode(text).ids
            for text, ids in zip(outside, reference, strict=True)
        ]
        return sum(same) / len(same)

    corpus_only, default = identical(-1), identical(10000)
    assert corpus_only < 0.85 and default > 0.95


def test_settings_left_open_are_chosen_from_the_data_size_and_budget():
    from frugalml.compress.config import CompressConfig
    from frugalml.compress.defaults import MAX_COPIES, chosen_settings

    small = chosen_settings(CompressConfig(), rows=20 * 77, source_layers=6)
    assert small.layers == (3, 2) and small.heads == 1.0 and small.ffn == (1.0, 0.5)
    assert small.augment_copies == MAX_COPIES and small.distill_epochs == 5
    full = chosen_settings(CompressConfig(), rows=9000, source_layers=6)
    assert (
        full.layers == (3, 2) and full.ffn == (0.5,) and full.augment_copies == 1 and full.distill_epochs == 4
    )
    # Less data: more copies or more epochs, never less distillation text.
    sizes = [770, 1540, 3000, 9000]
    transfer = [
        (1 + s.augment_copies) * n * s.distill_epochs
        for n in sizes
        if (s := chosen_settings(CompressConfig(), n, 6))
    ]
    assert min(transfer) >= 2000 * 32 * 0.9
    # A tight budget: only the half-depth student.
    assert chosen_settings(CompressConfig(max_drop=0.5), rows=1540, source_layers=6).layers == (3,)
    # What the user gives is kept.
    given = CompressConfig(layers=(4,), ffn=(0.75,), heads=0.5, distill_epochs=1, augment_copies=0)
    assert chosen_settings(given, rows=100, source_layers=6) == given


def test_image_distillation_epochs_follow_the_training_set_size_unless_given():
    from frugalml.compress.config import CompressConfig
    from frugalml.compress.defaults import chosen_image_settings

    # PneumoniaMNIST's 4,708 training images: 10 epochs.
    assert chosen_image_settings(CompressConfig(), rows=4708).distill_epochs == 10
    assert chosen_image_settings(CompressConfig(), rows=60_000).distill_epochs == 2
    chosen = chosen_image_settings(CompressConfig(), rows=30_000)
    assert chosen.layers == () and chosen.ffn == CompressConfig().ffn  # text students stay unset
    assert chosen_image_settings(CompressConfig(distill_epochs=1), rows=4708).distill_epochs == 1


def test_a_pipeline_step_takes_student_settings_as_lists_or_single_numbers():
    from frugalml.compress.steps import step_config

    config = step_config({"layers": 3, "ffn": [1.0, 0.5], "channels": 0.5, "techniques": "prune,distill"})
    assert config.layers == (3,) and config.ffn == (1.0, 0.5) and config.channels == (0.5,)
    with pytest.raises(FrugalError, match="ffn is a list of fractions"):
        step_config({"ffn": 2})
