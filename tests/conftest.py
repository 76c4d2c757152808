"""Shared fixtures: a tiny BERT built from a config, small synthetic intent data, a fresh home."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The shared data beside the repository (BANKING77, PneumoniaMNIST); FRUGALML_SHARED names another
# shared folder, as for bench/. Tests that need it skip when it is absent.
SHARED_DATA = (
    Path(os.environ.get("FRUGALML_SHARED") or Path(__file__).resolve().parents[2] / "shared") / "data"
)

# Prepended to scripts that run without frugalml in a fresh interpreter (as a user loading an
# exported model would): PyPI's torchvision cannot load its C++ ops beside the CPU build of torch
# that constraints.txt pins, which breaks `import transformers` in this environment, frugalml or
# not. The fix frugalml applies on import (frugalml/_torchvision.py), run from its source here
# without importing frugalml, stands for a torchvision build that matches torch.
MATCHING_TORCHVISION = (
    Path(__file__).resolve().parents[1] / "src" / "frugalml" / "_torchvision.py"
).read_text() + "\nprepare()\n"

INTENTS = {
    "refund": ["refund", "money", "back", "return", "reimburse"],
    "lost_card": ["card", "lost", "stolen", "block", "missing"],
    "password": ["password", "reset", "login", "locked", "forgot"],
}
FILLER = ["please", "help", "i", "my", "need", "the", "a", "now", "today", "want", "can", "you"]


def make_rows(n_per_class: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for label, words in INTENTS.items():
        for _ in range(n_per_class):
            tokens = rng.sample(words, 3) + rng.sample(FILLER, rng.randint(1, 4))
            rng.shuffle(tokens)
            rows.append((" ".join(tokens), label))
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows: list[tuple], header: tuple = ("text", "label")) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def build_tiny_base(folder: Path) -> Path:
    """A 2-layer, 32-wide BERT with a word-level vocabulary, saved as a Hugging Face folder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = sorted({w for ws in INTENTS.values() for w in ws} | set(FILLER))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    return build_tiny_base(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def bundle_path(tiny_base, tmp_path_factory) -> str:
    """A tiny intent bundle per test module (test_serve_support.tiny_intent_bundle)."""
    from test_serve_support import tiny_intent_bundle

    return tiny_intent_bundle(tiny_base, tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def predictor(bundle_path):
    """The module's tiny bundle, loaded."""
    from frugalml.bundle import load_bundle
    from frugalml.runtime import load_predictor

    return load_predictor(load_bundle(bundle_path))


@pytest.fixture(autouse=True)
def _private_cwd(tmp_path_factory, monkeypatch) -> None:
    """Run each test in an empty folder: outputs that default to the working directory land there."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A private FRUGALML_HOME for the test."""
    path = tmp_path / "home"
    monkeypatch.setenv("FRUGALML_HOME", str(path))
    return path


@pytest.fixture
def intent_files(tmp_path) -> dict[str, Path]:
    return {
        "train": write_csv(tmp_path / "train.csv", make_rows(20, seed=1)),
        "test": write_csv(tmp_path / "test.csv", make_rows(8, seed=2)),
    }
