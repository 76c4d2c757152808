"""Training on noise (`--noise`, `--robust`) and transfer (`--from BUNDLE`) on the tiny BERT."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_rows, write_csv
from test_cli import run_cli

from frugalml.bundle import load_bundle
from frugalml.data import Dataset, load_dataset
from frugalml.errors import FrugalError
from frugalml.evaluate.perturb import epoch_noise, noisy_copies, perturb
from frugalml.lineage import open_store
from frugalml.models import load_bundle_torch
from frugalml.settings import get_settings
from frugalml.tune import TuneConfig
from frugalml.tune.config import ROBUST
from frugalml.tune.trainer import _with_noisy_copies
from frugalml.tune.workflow import tune_and_register


def _config(tiny_base, **overrides):
    return TuneConfig(**({"base": str(tiny_base), "epochs": 1, "batch_size": 8, "lr": 5e-3} | overrides))


def test_noisy_copies_are_seeded_and_not_the_eval_noise():
    texts = [f"please reset my password number {i}" for i in range(30)]
    copies = noisy_copies(texts, "typos:0.2", copies=2, seed=0)
    assert len(copies) == 60 and copies == noisy_copies(texts, "typos:0.2", copies=2, seed=0)
    assert copies[:30] != copies[30:]  # each copy its own draw
    assert copies[:30] != perturb(texts, "typos:0.2", seed=0)  # `eval --perturb`'s seed 0 differs
    assert noisy_copies(texts, "words:0.5", copies=1, seed=1) != noisy_copies(
        texts, "words:0.5", copies=1, seed=2
    )


def test_epoch_noise_swaps_a_seeded_share_of_the_rows_each_epoch():
    texts = [f"please reset my password number {i}" for i in range(400)]
    first = epoch_noise(texts, "typos:0.3", share=0.5, seed=0, epoch=1)
    assert first == epoch_noise(texts, "typos:0.3", share=0.5, seed=0, epoch=1)
    changed = sum(a != b for a, b in zip(first, texts, strict=True))
    assert 150 < changed <= 250  # about half, each noised text almost surely changed
    assert first != epoch_noise(texts, "typos:0.3", share=0.5, seed=0, epoch=2)
    assert epoch_noise(texts, "typos:0.3", share=1.0, seed=0, epoch=1) != first


def test_noisy_copies_join_the_training_rows_with_their_labels():
    rows = Dataset(texts=["lost my card", "reset password"], labels=["card", "pw"], ids=["a", "b"])
    config = TuneConfig(noise="typos:1", noise_copies=3)
    more = _with_noisy_copies(rows, config)
    assert more.texts[:2] == rows.texts and len(more) == 8
    assert more.labels == ["card", "pw"] * 4 and more.ids[2:4] == ["a~noise1", "b~noise1"]
    assert all(t not in rows.texts for t in more.texts[2:])


def test_robust_is_the_measured_recipe_and_given_settings_win():
    robust = TuneConfig(method="lora", robust=True)
    assert (robust.noise, robust.noise_copies) == (ROBUST["noise"], ROBUST["noise_copies"])
    assert (robust.lora_r, robust.lora_alpha) == (ROBUST["lora_r"], 2 * ROBUST["lora_r"])
    assert (TuneConfig(method="lora").lora_r, TuneConfig(method="lora").lora_alpha) == (16, 32)
    assert TuneConfig(method="lora", lora_r=8).lora_alpha == 16  # alpha / r stays 2
    mine = TuneConfig(method="lora", robust=True, noise="words:0.2", noise_copies=3, lora_r=8)
    assert (mine.noise, mine.noise_copies, mine.lora_r) == ("words:0.2", 3, 8)
    assert TuneConfig(noise="typos").noise_copies == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--noise", "typos:2"], "perturbation rate must be in (0, 1]; got 2"),
        (["--noise", "accents"], "unknown perturbation 'accents'"),
        (["--noise-copies", "2"], "give noise too"),
        (["--noise", "typos", "--noise-copies", "0"], "1 <= noise_copies <= 10"),
        (["--noise-share", "0.5"], "give noise too"),
        (["--noise", "typos", "--noise-share", "0"], "0 < noise_share <= 1"),
        (["--noise", "typos", "--noise-share", "0.5", "--noise-copies", "2"], "not both"),
        (["--from", "b0000000000"], "no bundle 'b0000000000'"),
    ],
)
def test_bad_noise_and_transfer_options_are_one_line(capsys, tiny_base, intent_files, home, options, message):
    args = ["tune", str(intent_files["train"]), "--base", str(tiny_base), *options]
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and message in err


def test_robust_cli_trains_on_noise_and_records_it(capsys, tiny_base, intent_files, home):
    args = ["tune", str(intent_files["train"]), "--base", str(tiny_base), "--method", "lora"]
    code, out, _ = run_cli(capsys, *args, "--epochs", "1", "--robust", "--json")
    assert code == 0
    bundle = load_bundle(json.loads(out)["bundle_path"])
    assert bundle.config["robust"] is True and bundle.config["noise"] == ROBUST["noise"]
    assert bundle.config["noise_copies"] == ROBUST["noise_copies"]


def test_fresh_noise_trains_on_noise_without_copies(tiny_base, intent_files, home):
    """Fresh noise changes what the model learns, and the bundle records the recipe."""
    config = _config(tiny_base, method="lora", epochs=2, noise="typos:0.5", noise_share=1.0)
    summary = tune_and_register(intent_files["train"], config)
    plain = tune_and_register(intent_files["train"], _config(tiny_base, method="lora", epochs=2))
    assert summary.epochs_run == 2
    bundle = load_bundle(summary.bundle_path)
    assert bundle.config["noise_share"] == 1.0 and bundle.config["noise_copies"] is None
    noisy_model, _ = load_bundle_torch(bundle)
    plain_model, _ = load_bundle_torch(load_bundle(plain.bundle_path))
    weights = zip(noisy_model.state_dict().values(), plain_model.state_dict().values(), strict=True)
    assert any(not torch.equal(a, b) for a, b in weights)


def _changed_labels(tmp_path):
    """The tiny intents with `password` renamed `login` and `refund` gone: one label shared."""
    rename = {"password": "login", "lost_card": "lost_card"}
    rows = [(t, rename[y]) for t, y in make_rows(20, seed=5) if y in rename]
    return write_csv(tmp_path / "changed.csv", rows)


def test_transfer_carries_the_encoder_keeps_shared_labels_and_records_the_parent(
    tiny_base, intent_files, home, tmp_path
):
    parent = tune_and_register(intent_files["train"], _config(tiny_base, method="lora"))
    changed = _changed_labels(tmp_path)
    child = tune_and_register(
        changed, _config(tiny_base, method="head", parent=parent.bundle_id[:6]), eval_path=changed
    )
    assert child.metrics["accuracy"] >= 0.9
    parent_model, _ = load_bundle_torch(load_bundle(parent.bundle_path))
    child_bundle = load_bundle(child.bundle_path)
    child_model, _ = load_bundle_torch(child_bundle)
    assert child_bundle.labels == ["login", "lost_card"] and child_bundle.parents == [parent.bundle_id]
    assert child_bundle.config["parent"] == parent.bundle_id  # the id, however it was named
    for name, value in parent_model.encoder.state_dict().items():  # LoRA merged in, carried over
        assert torch.equal(value, child_model.encoder.state_dict()[name]), name
    chain = open_store(get_settings()).lineage(child.bundle_id)
    assert [row["id"] for row in chain] == [child.bundle_id, parent.bundle_id]


def test_transfer_continues_the_parents_method_weights(tiny_base, intent_files, home, tmp_path):
    parent = tune_and_register(intent_files["train"], _config(tiny_base, method="prefix", prefix_length=3))
    changed = _changed_labels(tmp_path)
    carried = tune_and_register(
        changed, _config(tiny_base, method="prefix", prefix_length=3, epochs=0, parent=parent.bundle_id)
    )
    prefix = "encoder.encoder.layer.0.attention.self.prefix.key"
    before = load_bundle_torch(load_bundle(parent.bundle_path))[0].state_dict()[prefix]
    assert torch.equal(before, load_bundle_torch(load_bundle(carried.bundle_path))[0].state_dict()[prefix])
    trained = tune_and_register(
        changed, _config(tiny_base, method="prefix", prefix_length=3, parent=parent.bundle_id)
    )
    assert not torch.equal(
        before, load_bundle_torch(load_bundle(trained.bundle_path))[0].state_dict()[prefix]
    )
    with pytest.raises(FrugalError, match="has prefix length 3; tune with the same"):
        tune_and_register(
            changed, _config(tiny_base, method="prefix", prefix_length=5, parent=parent.bundle_id)
        )


def test_transfer_refuses_another_base(tiny_base, intent_files, home, tmp_path):
    parent = tune_and_register(intent_files["train"], _config(tiny_base, method="head"))
    with pytest.raises(FrugalError, match="was tuned from base"):
        tune_and_register(intent_files["train"], TuneConfig(method="head", parent=parent.bundle_id))
    assert load_dataset(intent_files["train"])  # nothing else was touched
