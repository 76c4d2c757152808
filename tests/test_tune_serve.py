"""Integration on a tiny config-built BERT: tune -> bundle -> eval -> standard HF load -> serve."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import MATCHING_TORCHVISION

from frugalml.bundle import load_bundle
from frugalml.evaluate.workflow import evaluate_bundle
from frugalml.runtime import load_predictor
from frugalml.tune import TuneConfig
from frugalml.tune.workflow import tune_and_register


def _tune(tiny_base, files, method, **overrides):
    config = TuneConfig(
        method=method, base=str(tiny_base), epochs=overrides.pop("epochs", 3), batch_size=8, **overrides
    )
    return tune_and_register(files["train"], config, eval_path=files["test"])


@pytest.mark.parametrize("method", ["head", "lora", "ia3", "full"])
def test_each_method_learns_and_writes_a_loadable_bundle(tiny_base, intent_files, home, method):
    summary = _tune(tiny_base, intent_files, method, lr=5e-3 if method != "head" else None)
    assert summary.metrics["accuracy"] >= 0.9  # 3 separable intents
    bundle = load_bundle(summary.bundle_path)
    assert bundle.method == method and bundle.format == "torch"
    assert (bundle.path / "adapter").is_dir() == (method in ("lora", "ia3"))
    if method == "head":
        # Only the head trains: 32 features x 3 classes + 3 biases.
        assert summary.trainable_params == 32 * 3 + 3
    elif method == "full":
        assert summary.trainable_params == summary.total_params
    else:
        assert 0 < summary.trainable_params < summary.total_params
    _, report = evaluate_bundle(bundle.id, intent_files["test"])
    assert report.accuracy == pytest.approx(summary.metrics["accuracy"])


def test_fine_tuning_changes_the_encoder_and_keeps_the_best_epoch(tiny_base, intent_files, home):
    summary = _tune(tiny_base, intent_files, "full", lr=5e-3, epochs=2)
    history = load_bundle(summary.bundle_path).config["history"]
    assert history[0]["epoch"] == 0 and "head_c" in history[0]
    assert [h["epoch"] for h in history[1:]] == list(range(1, len(history)))
    kept = min(history, key=lambda h: h["val_loss"])  # the epoch with the lowest validation loss
    assert summary.metrics["val_accuracy"] == kept["val_accuracy"]


STANDARD_LOAD = """
import json, sys, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
folder = sys.argv[1]
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
batch = tokenizer(json.loads(sys.argv[2]), padding=True, truncation=True, return_tensors="pt")
with torch.no_grad():
    print(json.dumps({"logits": model(**batch).logits.tolist(), "id2label": model.config.id2label,
                      "frugalml_imported": "frugalml" in sys.modules}))
"""


def _standard_load(bundle, texts: list[str], home) -> dict:
    """Without frugalml: plain transformers in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", MATCHING_TORCHVISION + STANDARD_LOAD, str(bundle.path), json.dumps(texts)],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(home.parent),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_bundle_is_a_standard_hf_folder_and_adapter_loads_with_peft(tiny_base, intent_files, home):
    summary = _tune(tiny_base, intent_files, "lora", lr=5e-3)
    bundle = load_bundle(summary.bundle_path)
    texts = ["refund money back please", "my card was stolen"]
    expected = load_predictor(bundle).predict_proba(texts)

    loaded = _standard_load(bundle, texts, home)
    assert not loaded["frugalml_imported"]
    assert list(loaded["id2label"].values()) == bundle.labels
    probabilities = torch.softmax(torch.tensor(loaded["logits"]), dim=-1).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)

    # The adapter in PEFT's own format, on a fresh base classifier, gives the same model.
    from peft import PeftModel

    from frugalml.models import load_tokenizer, new_classifier

    base = new_classifier(str(tiny_base), bundle.labels)
    peft_model = PeftModel.from_pretrained(base, bundle.path / "adapter").eval()
    tokenizer = load_tokenizer(str(tiny_base))
    with torch.no_grad():
        logits = peft_model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    np.testing.assert_allclose(torch.softmax(logits, -1).numpy(), expected, atol=1e-5)


def test_the_tuned_length_is_the_length_every_loader_cuts_texts_at(tiny_base, intent_files, home):
    summary = _tune(tiny_base, intent_files, "head", max_length=6)
    bundle = load_bundle(summary.bundle_path)
    predictor = load_predictor(bundle)
    assert predictor.max_length == 6  # not the predictors' old fixed 128 (here: the 64 positions)
    texts = ["refund money back please " * 8, "my card was stolen"]  # the first is cut at 6 tokens
    assert predictor.predict_proba(texts)[0] == pytest.approx(predictor.predict_proba([texts[0][:30]])[0])
    logits = torch.tensor(_standard_load(bundle, texts, home)["logits"])
    np.testing.assert_allclose(torch.softmax(logits, -1).numpy(), predictor.predict_proba(texts), atol=1e-5)


@pytest.mark.parametrize("method", ["head", "full"])
def test_final_head_is_fitted_on_every_row_validation_included(tiny_base, intent_files, method):
    from frugalml.data import load_dataset
    from frugalml.models.batching import run_model, tokenize
    from frugalml.tune import tune
    from frugalml.tune.heads import fit_head

    data = load_dataset(intent_files["train"])
    result = tune(data, TuneConfig(method=method, base=str(tiny_base), epochs=2, batch_size=8, lr=5e-3))
    assert result.epochs_run == (2 if method == "full" else 0)
    index = {label: i for i, label in enumerate(result.labels)}
    ids = tokenize(result.tokenizer, data.texts, 128)
    features = run_model(result.model, ids, result.tokenizer.pad_token_id, pool=True)
    y = np.array([index[label] for label in data.labels])
    weight, bias = fit_head(features, y, result.history[0]["head_c"], len(result.labels))
    np.testing.assert_allclose(result.model.classifier.weight.detach().numpy(), weight, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(result.model.classifier.bias.detach().numpy(), bias, rtol=1e-4, atol=1e-4)


def test_tune_leaves_the_callers_config_as_given(tiny_base, intent_files):
    from frugalml.data import load_dataset
    from frugalml.tune import tune

    config = TuneConfig(method="head", base=str(tiny_base), batch_size=8)
    result = tune(load_dataset(intent_files["train"]), config)
    assert config == TuneConfig(method="head", base=str(tiny_base), batch_size=8)
    assert result.config["epochs"] == 10  # chosen by data size: 60 rows


def test_epochs_are_scored_by_the_head_the_final_model_gets(tiny_base, intent_files):
    """Each epoch is judged as it would ship: a logistic-regression head fitted on that epoch's
    training features and scored on the validation rows, not the softmax head trained alongside."""
    from frugalml.data import load_dataset, validation_split
    from frugalml.models.batching import run_model, tokenize
    from frugalml.tune import tune
    from frugalml.tune.heads import fit_head, val_scores

    data = load_dataset(intent_files["train"])
    config = TuneConfig(method="full", base=str(tiny_base), epochs=2, batch_size=8, lr=5e-3)
    result = tune(data, config)
    kept = min(result.history, key=lambda h: h["val_loss"])
    assert kept["epoch"] > 0  # the fine-tuned encoder won, so its score is the one to check
    fit_part, val_part = validation_split(data, config.val_fraction, config.seed)
    index = {label: i for i, label in enumerate(result.labels)}
    fit_x, val_x = (
        run_model(
            result.model, tokenize(result.tokenizer, d.texts, 128), result.tokenizer.pad_token_id, pool=True
        )
        for d in (fit_part, val_part)
    )
    fit_y, val_y = (np.array([index[label] for label in d.labels]) for d in (fit_part, val_part))
    weight, bias = fit_head(fit_x, fit_y, result.history[0]["head_c"], len(result.labels))
    accuracy, loss = val_scores(val_x @ weight.T + bias, val_y)
    assert accuracy == kept["val_accuracy"]
    assert loss == pytest.approx(kept["val_loss"], rel=1e-3)


def test_balanced_weights_give_every_class_the_same_total():
    from frugalml.tune.heads import row_weights

    y = np.array([0, 0, 0, 0, 1, 2, 2])
    np.testing.assert_array_equal(row_weights(y, False), np.ones(len(y)))
    weights = row_weights(y, True)
    totals = np.bincount(y, weights=weights)
    np.testing.assert_allclose(totals, totals[0])
    assert weights.sum() == pytest.approx(len(y))


def test_balanced_validation_scores_count_every_class_the_same():
    from frugalml.tune.heads import val_scores

    y = np.array([0, 0, 0, 0, 1, 1])
    logits = np.zeros((6, 2))
    logits[:, 0] = 1.0  # always class 0: right on 4 of 6 rows, on 1 of 2 classes
    assert val_scores(logits, y)[0] == pytest.approx(4 / 6)
    assert val_scores(logits, y, balanced=True)[0] == pytest.approx(0.5)  # mean recall per class
    plain_loss, balanced_loss = val_scores(logits, y)[1], val_scores(logits, y, balanced=True)[1]
    assert balanced_loss > plain_loss  # the wrongly predicted class weighs more


def test_balanced_head_keeps_a_rare_class_from_being_swallowed():
    """Two overlapping classes, 9 rows to 1: the plain head gives most of the rare class's rows to the
    common one; the balanced head, fitted as if both were equally common, finds most of them."""
    from frugalml.tune.heads import fit_head

    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 1, (900, 2)), rng.normal(1.5, 1, (100, 2))])
    y = np.r_[np.zeros(900, int), np.ones(100, int)]
    rare = rng.normal(1.5, 1, (500, 2))
    recall = {}
    for balanced in (False, True):
        weight, bias = fit_head(x, y, 1.0, 2, balanced)
        recall[balanced] = float(((rare @ weight.T + bias).argmax(1) == 1).mean())
    assert recall[False] < 0.5 < recall[True]


def test_class_weight_balanced_reaches_the_shipped_head(tiny_base, intent_files):
    """On skewed data the shipped head is the balanced one (and differs from the plain one)."""
    from frugalml.data import load_dataset
    from frugalml.models.batching import run_model, tokenize
    from frugalml.tune import tune
    from frugalml.tune.heads import fit_head

    data = load_dataset(intent_files["train"])
    first = data.labels[0]
    seen: dict[str, int] = {}
    keep = []  # every row of one intent, 5 of each other
    for i, label in enumerate(data.labels):
        seen[label] = seen.get(label, 0) + 1
        if label == first or seen[label] <= 5:
            keep.append(i)
    skewed = data.subset(keep)
    config = TuneConfig(
        method="full", base=str(tiny_base), epochs=1, batch_size=8, lr=5e-3, class_weight="balanced"
    )
    result = tune(skewed, config)
    index = {label: i for i, label in enumerate(result.labels)}
    ids = tokenize(result.tokenizer, skewed.texts, 128)
    features = run_model(result.model, ids, result.tokenizer.pad_token_id, pool=True)
    y = np.array([index[label] for label in skewed.labels])
    shipped = result.model.classifier.weight.detach().numpy()
    c = result.history[0]["head_c"]
    gap = {
        balanced: np.abs(shipped - fit_head(features, y, c, len(result.labels), balanced)[0]).max()
        for balanced in (True, False)
    }
    assert gap[True] < 2e-3 and gap[False] > 0.1  # refit noise (row order, L-BFGS tolerance) vs weighting
