"""Method settings on the tiny BERT: IA3 targets, the prefix MLP, bad settings, prefix serving."""

from __future__ import annotations

import httpx
import pytest
from test_serve_support import running

from frugalml.bundle import load_bundle
from frugalml.data import load_dataset
from frugalml.errors import FrugalError
from frugalml.models import load_bundle_torch
from frugalml.runtime import load_predictor
from frugalml.serve import create_app
from frugalml.tune import TuneConfig
from frugalml.tune.trainer import tune
from frugalml.tune.workflow import tune_and_register

TEXTS = ["please reset my password", "my card was stolen", "i want my money back", "hello"]


def _tune(tiny_base, files, method, **overrides):
    config = TuneConfig(
        method=method, base=str(tiny_base), **({"epochs": 2, "batch_size": 8, "lr": 5e-3} | overrides)
    )
    return tune_and_register(files["train"], config, eval_path=files["test"])


def test_ia3_targets_choose_what_is_scaled(tiny_base, intent_files, home):
    default = _tune(tiny_base, intent_files, "ia3", epochs=1)
    query = _tune(tiny_base, intent_files, "ia3", epochs=1, ia3_targets="query")
    head = 32 * 3 + 3
    # Default: key and value (32 outputs each) and both output.dense inputs (64 FFN, 32 attention), 2 layers.
    assert default.trainable_params == 2 * (32 + 32 + 64 + 32) + head
    assert query.trainable_params == 2 * 32 + head and query.adapter_bytes == 2 * 32 * 4
    config = (load_bundle(query.bundle_path).path / "adapter" / "adapter_config.json").read_text()
    assert '"query"' in config and '"key"' not in config


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ("query,qkv", "unknown IA3 target qkv; choose among"),
        ("all-linear", "IA3 targets are module names"),
    ],
)
def test_bad_ia3_targets_are_one_line(tiny_base, intent_files, targets, message):
    config = TuneConfig(method="ia3", base=str(tiny_base), epochs=1, ia3_targets=targets)
    with pytest.raises(FrugalError, match=message) as caught:
        tune(load_dataset(intent_files["train"]), config)
    assert "\n" not in str(caught.value)


def test_prefix_mlp_trains_through_an_mlp_and_saves_plain_prefixes(tiny_base, intent_files, home):
    plain = _tune(tiny_base, intent_files, "prefix", prefix_length=3)
    mlp = _tune(tiny_base, intent_files, "prefix", prefix_length=3, prefix_mlp=8)
    assert mlp.metrics["accuracy"] >= 0.9
    # Per layer, key and value each: the 3 x 32 vectors plus the MLP 32 -> 8 -> 32.
    per = 3 * 32 + (32 * 8 + 8 + 8 * 32 + 32)
    assert mlp.trainable_params == 2 * 2 * per + 32 * 3 + 3
    assert plain.trainable_params == 2 * 2 * 3 * 32 + 32 * 3 + 3
    bundle = load_bundle(mlp.bundle_path)
    model, _ = load_bundle_torch(bundle)
    names = set(model.state_dict())
    assert not any("parametrizations" in n for n in names)  # merged: only plain prefixes saved
    assert "encoder.encoder.layer.1.attention.self.prefix.value" in names
    from frugalml.evaluate.workflow import evaluate_bundle

    _, report = evaluate_bundle(bundle.id, intent_files["test"])
    assert report.accuracy == pytest.approx(mlp.metrics["accuracy"])  # the bundle predicts as trained


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"method": "prefix", "prefix_mlp": -1}, "prefix_mlp >= 0"),
        ({"method": "lora", "adversarial": "pgd", "adv_epsilon": -0.5}, "adv_epsilon > 0"),
        ({"method": "ia3", "lora_r": 0}, "lora_r >= 1"),
    ],
)
def test_more_bad_settings_give_one_clear_line(settings, message):
    with pytest.raises(FrugalError, match=message) as caught:
        TuneConfig(**settings)
    assert "\n" not in str(caught.value)


@pytest.fixture(scope="module")
def tiny_distilbert(tmp_path_factory, tiny_base):
    """A DistilBERT (q_lin/k_lin/v_lin, no BERT-style output modules) on the tiny vocabulary."""
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    folder = tmp_path_factory.mktemp("tiny-distilbert")
    config = DistilBertConfig(
        vocab_size=AutoTokenizer.from_pretrained(tiny_base).vocab_size,
        dim=32,
        n_layers=2,
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=64,
    )
    DistilBertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_base).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("prefix", "method prefix: base model type 'distilbert' has no BERT-style self-attention"),
        ("adapter", "method adapter: base model type 'distilbert' has no BERT-style layer outputs"),
        ("ia3", "unknown IA3 target key, value, output.dense"),
    ],
)
def test_a_method_the_base_cannot_take_is_refused(tiny_distilbert, intent_files, method, message):
    config = TuneConfig(method=method, base=str(tiny_distilbert), epochs=1)
    with pytest.raises(FrugalError, match=message) as caught:
        tune(load_dataset(intent_files["train"]), config)
    assert "\n" not in str(caught.value)


def test_a_prefix_bundle_serves_over_loopback(tiny_base, intent_files, home):
    summary = _tune(tiny_base, intent_files, "prefix", prefix_length=3, prefix_mlp=8)
    predictor = load_predictor(load_bundle(summary.bundle_path))
    expected = predictor.predict_proba(TEXTS)
    with running(create_app(predictor)) as (url, _):
        response = httpx.post(f"{url}/v1/predict", json={"inputs": TEXTS})
    assert response.status_code == 200
    labels = [p["label"] for p in response.json()["predictions"]]
    assert labels == [predictor.labels[i] for i in expected.argmax(1)]
