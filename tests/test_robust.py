"""Robustness: seeded input noise (evaluate/perturb.py), `eval --perturb`, and adversarial
training on the word embeddings (tune/adversarial.py) on the tiny config-built BERT."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_rows, write_csv
from test_cli import run_cli

from frugalml.bundle import load_bundle
from frugalml.data import load_dataset
from frugalml.errors import FrugalError
from frugalml.evaluate import EvalConfig
from frugalml.evaluate.perturb import NEIGHBOURS, parse_spec, perturb, typos, word_noise
from frugalml.models import load_tokenizer, new_classifier
from frugalml.models.batching import collate, tokenize
from frugalml.runtime import load_predictor
from frugalml.tune import TuneCompute, TuneConfig, tune
from frugalml.tune.adversarial import ATTACKS, train_batch
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


def _tiny_batch(tiny_base):
    labels = ["a", "b", "c"]
    model = new_classifier(str(tiny_base), labels).eval()  # no dropout: losses comparable
    tokenizer = load_tokenizer(str(tiny_base))
    rows = make_rows(4, seed=1)
    batch = collate(tokenize(tokenizer, [t for t, _ in rows], 32), tokenizer.pad_token_id)
    index = {label: i for i, label in enumerate(sorted({y for _, y in rows}))}
    return model, batch, torch.tensor([index[y] for _, y in rows])


@pytest.mark.parametrize("attack", ATTACKS)
def test_each_attack_raises_the_loss_and_leaves_gradients(tiny_base, attack):
    model, batch, labels = _tiny_batch(tiny_base)
    losses: list[float] = []

    def loss(module):
        value = torch.nn.functional.cross_entropy(module(**batch).logits, labels)
        losses.append(value.item())
        return value

    clean = train_batch(
        attack,
        net=model,
        model=model,
        mask=batch["attention_mask"],
        loss=loss,
        backward=lambda value: value.backward(),
        epsilon=0.5,
        steps=3,
    )
    assert clean.item() == losses[0]
    assert len(losses) == {"fgm": 2, "pgd": 3 + 1, "freelb": 3}[attack]
    assert all(later > losses[0] for later in losses[1:])  # each step climbs the loss
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    embeddings = model.get_input_embeddings()
    assert not embeddings._forward_hooks  # the hook is gone after the batch


def _tune(tiny_base, train, **overrides):
    options = {"method": "lora", "base": str(tiny_base), "epochs": 1, "batch_size": 8, "lr": 5e-3}
    return TuneConfig(**(options | overrides))


@pytest.mark.parametrize("attack", ATTACKS)
def test_adversarial_tuning_saves_a_bundle_that_predicts_the_same(tiny_base, intent_files, home, attack):
    config = _tune(tiny_base, intent_files["train"], adversarial=attack, adv_epsilon=0.5, adv_steps=2)
    summary = tune_and_register(intent_files["train"], config, eval_path=intent_files["test"])
    assert summary.metrics["accuracy"] >= 0.9  # 3 separable intents
    bundle = load_bundle(summary.bundle_path)
    assert bundle.config["adversarial"] == attack and bundle.config["adv_steps"] == 2
    texts = load_dataset(intent_files["test"]).texts
    first = load_predictor(bundle).predict_proba(texts)
    again = load_predictor(load_bundle(summary.bundle_path)).predict_proba(texts)
    np.testing.assert_allclose(first, again, atol=1e-6)


def test_adversarial_training_changes_the_model_and_the_run_identity(tiny_base, intent_files):
    train = load_dataset(intent_files["train"])
    plain = tune(train, _tune(tiny_base, train, method="full"))
    fgm = tune(train, _tune(tiny_base, train, method="full", adversarial="fgm"))
    assert plain.config["adversarial"] is None and fgm.config["adversarial"] == "fgm"
    word = "word_embeddings.weight"
    a, b = plain.model.state_dict(), fgm.model.state_dict()
    assert not torch.equal(
        a[next(k for k in a if k.endswith(word))], b[next(k for k in b if k.endswith(word))]
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--adversarial", "noise"], "unknown adversarial training 'noise'; choose one of fgm, pgd, freelb"),
        (["--adversarial", "fgm", "--epsilon", "0"], "adv_epsilon > 0"),
        (["--adversarial", "pgd", "--steps", "0"], "adv_steps >= 1"),
        (["--adversarial", "fgm", "--method", "head"], "trains only the head"),
    ],
)
def test_bad_adversarial_settings_are_one_line(capsys, tiny_base, intent_files, home, options, message):
    args = ["tune", str(intent_files["train"]), "--base", str(tiny_base), "--method", "lora", *options]
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and message in err


@pytest.mark.slow  # starts worker processes: 30-80 s on 2 shared cores
def test_two_workers_take_one_workers_adversarial_steps(tiny_base, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    still = tmp_path / "still-bert"  # no dropout: runs that should take the same steps do
    AutoModel.from_pretrained(
        tiny_base, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    ).save_pretrained(still)
    AutoTokenizer.from_pretrained(tiny_base).save_pretrained(still)
    train = load_dataset(write_csv(tmp_path / "train.csv", make_rows(30, seed=1)))
    config = _tune(
        still, train, method="full", epochs=2, lr=1e-5, head_lr=1e-5, warmup=0.0, adversarial="freelb"
    )
    one = tune(train, config, compute=TuneCompute(device="cpu"))
    two = tune(train, config, compute=TuneCompute(workers=2, device="cpu"))
    start = one.history[0]["val_loss"]
    for a, b in zip(one.history[1:], two.history[1:], strict=True):
        gain_one, gain_two = start - a["val_loss"], start - b["val_loss"]
        assert gain_one > 0 and abs(gain_two - gain_one) < 0.1 * gain_one, (a, b)


def test_an_adversarial_run_resumes_bit_for_bit_and_only_with_its_settings(tiny_base, intent_files, tmp_path):
    from frugalml.tune.checkpoint import checkpoints, read_checkpoint
    from frugalml.tune.loop import Checkpointing

    train = load_dataset(intent_files["train"])
    config = _tune(tiny_base, train, epochs=2, patience=5, adversarial="pgd", adv_steps=2)
    whole = tune(train, config, checkpointing=Checkpointing(tmp_path / "a", every=4, run_id="r1"))
    first = read_checkpoint(checkpoints(tmp_path / "a")[0])
    assert first is not None and first["config"]["adversarial"] == "pgd"
    resumed = tune(
        train, config, checkpointing=Checkpointing(tmp_path / "b", every=0, run_id="r1", start=first)
    )
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    plain = _tune(tiny_base, train, epochs=2, patience=5)
    with pytest.raises(FrugalError, match=r"other settings \(adv_steps, adversarial\)"):
        tune(train, plain, checkpointing=Checkpointing(tmp_path / "c", every=0, run_id="r1", start=first))
