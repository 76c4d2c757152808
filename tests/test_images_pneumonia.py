"""The default image path on real data: PneumoniaMNIST (28x28 chest X-rays, MedMNIST splits)."""

from __future__ import annotations

import json

import pytest
from conftest import SHARED_DATA
from test_cli import run_cli

DATA = SHARED_DATA / "pneumoniamnist" / "pneumoniamnist.npz"


@pytest.mark.slow  # a few epochs of the CNN on 4,708 images: minutes on 2 shared cores
@pytest.mark.skipif(not DATA.is_file(), reason=f"PneumoniaMNIST not found at {DATA}")
def test_a_few_epochs_of_the_default_model_beat_chance_by_far(capsys, home):
    code, out, err = run_cli(capsys, "tune", str(DATA), "--eval", str(DATA), "--epochs", "4", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["base"] == "cnn"  # the default for 28-pixel images
    metrics = summary["metrics"]
    assert metrics["eval_n"] == 624  # the test split
    # Chance: 0.625 accuracy (the majority class of the test split), 0.5 AUC.
    assert metrics["accuracy"] >= 0.75 and metrics["roc_auc"] >= 0.9
