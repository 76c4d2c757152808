"""Robustness: seeded input noise (evaluate/perturb.py) and `eval --perturb`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_cli import run_cli

from frugalml.errors import FrugalError
from frugalml.evaluate import EvalConfig
from frugalml.evaluate.perturb import NEIGHBOURS, parse_spec, perturb, typos, word_noise
from frugalml.tune import TuneConfig
from frugalml.tune.workflow import tune_and_register

SENTENCE = "please move two hundred dollars from my savings account into checking before friday "


def _distance(a: list | str, b: list | str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


@pytest.mark.parametrize("rate", [0.05, 0.2])
def test_typos_touch_about_the_share_of_letters_asked(rate):
    text = SENTENCE * 6
    letters = sum(c.isalpha() for c in text)
    noisy = typos([text], rate=rate, rng=np.random.default_rng(0))[0]
    # Drop, double, neighbour: 1 edit; a swap: 2 edits for two letters. About rate * letters edits.
    edits = _distance(text, noisy)
    assert 0.6 * rate * letters < edits < 1.5 * rate * letters
    assert noisy.count(" ") == text.count(" ")  # only letters change


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_word_noise_touches_about_the_share_of_words_asked(rate):
    words = (SENTENCE * 20).split()
    noisy = word_noise([" ".join(words)], rate=rate, rng=np.random.default_rng(0))[0].split()
    edits = _distance(words, noisy)  # drop, repeat: 1; a move: 2, or 0 if it lands where it was
    assert 0.5 * rate * len(words) < edits < 2 * rate * len(words)
    assert set(noisy) <= set(words)  # no new words, no letters changed


def test_perturbation_is_seeded_and_never_empties_a_text():
    texts = ["a", "I", "ok", "x y", SENTENCE, "é ß"]
    for spec in ("typos:1", "words:1", "typos", "words:0.5"):
        first = perturb(texts * 20, spec, seed=3)
        assert first == perturb(texts * 20, spec, seed=3)
        assert first != perturb(texts * 20, spec, seed=4)
        assert all(t.strip() for t in first)
        assert first != texts * 20


def test_keyboard_neighbours_are_mutual_and_near():
    assert set(NEIGHBOURS["q"]) == {"w", "a"} and set(NEIGHBOURS["g"]) == {"f", "h", "t", "y", "v", "b"}
    for key, near in NEIGHBOURS.items():
        assert all(key in NEIGHBOURS[other] for other in near)
    noisy = typos(["Hello"] * 50, rate=1.0, rng=np.random.default_rng(1))
    assert any(t[0].isupper() and t[0] not in "HE" for t in noisy)  # a neighbour keeps the case


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("noise", "unknown perturbation 'noise'; choose typos or words"),
        ("typos:0", "must be in (0, 1]; got 0"),
        ("words:1.5", "must be in (0, 1]; got 1.5"),
        ("typos:lots", "'lots' is not a number"),
    ],
)
def test_bad_perturbation_specs_are_clear_errors(spec, message):
    with pytest.raises(FrugalError, match=message.replace("(", r"\(").replace(")", r"\)")):
        EvalConfig(perturb=spec)
    assert parse_spec("typos:1") == ("typos", 1.0) and parse_spec("words") == ("words", 0.1)


def test_eval_perturb_reports_clean_and_noisy_scores(capsys, tiny_base, intent_files, home):
    config = TuneConfig(method="head", base=str(tiny_base), batch_size=8)
    bundle_id = tune_and_register(intent_files["train"], config).bundle_id
    args = ("eval", bundle_id, str(intent_files["test"]), "--json")
    code, out, _ = run_cli(capsys, *args)
    clean = json.loads(out)
    assert code == 0 and "perturbed_accuracy" not in clean
    code, out, _ = run_cli(capsys, *args, "--perturb", "typos:0.5", "--perturb-seed", "7")
    noisy = json.loads(out)
    assert code == 0 and noisy["perturb"] == "typos:0.5"
    assert noisy["accuracy"] == clean["accuracy"] and noisy["macro_f1"] == clean["macro_f1"]
    # The tiny model's vocabulary is whole words: a mistyped keyword is [UNK].
    assert noisy["perturbed_accuracy"] < noisy["accuracy"]
    assert noisy["accuracy_drop"] == pytest.approx(noisy["accuracy"] - noisy["perturbed_accuracy"])
    assert noisy["macro_f1_drop"] == pytest.approx(noisy["macro_f1"] - noisy["perturbed_macro_f1"])
    code, out, _ = run_cli(capsys, *args, "--perturb", "typos:0.5", "--perturb-seed", "7")
    assert json.loads(out)["perturbed_accuracy"] == noisy["perturbed_accuracy"]  # reproducible
    code, out, _ = run_cli(capsys, "eval", bundle_id, str(intent_files["test"]), "--perturb", "words:0.3")
    assert code == 0 and "robustness (words:0.3, seed 0)" in out and "perturbed" in out
    code, out, err = run_cli(capsys, *args, "--perturb", "typos:2")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "(0, 1]" in err
