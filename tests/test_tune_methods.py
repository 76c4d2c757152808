"""The prompt and adapter methods on a tiny config-built BERT: train, save, reload, serve."""

from __future__ import annotations

from dataclasses import asdict

import httpx
import pytest
import torch
from test_serve_support import running
from test_tune_serve import _standard_load

from frugalml.bundle import load_bundle
from frugalml.errors import FrugalError
from frugalml.models import load_bundle_torch, new_classifier
from frugalml.models.hf_model import FrugalTextClassifierConfig
from frugalml.runtime import load_predictor
from frugalml.runtime.torch_predictor import TorchPredictor
from frugalml.serve import create_app
from frugalml.tune import TuneConfig
from frugalml.tune.loop import make_optimizer
from frugalml.tune.methods import get_method
from frugalml.tune.trainer import tune
from frugalml.tune.workflow import tune_and_register

TEXTS = ["please check my balance", "book a flight to paris", "what is the weather", "hello"]


def _tune(tiny_base, files, method, **overrides):
    settings = {"epochs": 2, "batch_size": 8, "lr": 5e-3, **overrides}
    config = TuneConfig(method=method, base=str(tiny_base), **settings)
    return tune_and_register(files["train"], config, eval_path=files["test"])


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("prompt", {"prompt_length": 4}),
        ("prefix", {"prefix_length": 3}),
        ("adapter", {"adapter_reduction": 4}),
        ("adapter", {"adapter_reduction": 8, "adapter_placement": "houlsby"}),
    ],
)
def test_method_trains_only_its_weights_and_the_bundle_predicts_as_trained(
    tiny_base, intent_files, home, method, options
):
    summary = _tune(tiny_base, intent_files, method, **options)
    assert summary.metrics["accuracy"] >= 0.9  # 3 separable intents
    bundle = load_bundle(summary.bundle_path)
    assert bundle.method == method and not (bundle.path / "adapter").exists()
    hidden, layers, head = 32, 2, 32 * 3 + 3
    if method == "prompt":
        assert summary.trainable_params == 4 * hidden + head
    elif method == "prefix":  # a key and a value per prefix position and layer
        assert summary.trainable_params == layers * 2 * 3 * hidden + head
    else:
        inner = hidden // options["adapter_reduction"]
        per_adapter = hidden * inner + inner + inner * hidden + hidden
        places = 2 if options.get("adapter_placement") == "houlsby" else 1
        assert summary.trainable_params == layers * places * per_adapter + head
    assert summary.adapter_bytes == (summary.trainable_params - head) * 4  # fp32

    model, tokenizer = load_bundle_torch(bundle)
    if method == "prompt":
        assert model.prompt is not None and model.prompt.shape == (4, hidden)
        # The text keeps its own positions: all 64 of the tiny encoder's.
        assert tokenizer.model_max_length == 64 and model.config.prompt_shifts_text is False
    elif method == "prefix":
        assert len([n for n, _ in model.named_modules() if n.endswith(".prefix")]) == layers
    else:
        adapted = [n for n, _ in model.named_modules() if n.endswith(".adapter")]
        assert len(adapted) == layers * (2 if options.get("adapter_placement") == "houlsby" else 1)
        assert all(
            float(p.detach().abs().sum()) > 0 for n, p in model.named_parameters() if ".adapter.up." in n
        )

    # Reloaded through the predictor (eager and traced) it answers as the model did in memory.
    reloaded = load_predictor(bundle)
    traced = load_predictor(bundle, jit=True)
    expected = TorchPredictor(model, tokenizer, bundle.labels).predict_proba(TEXTS)
    assert reloaded.predict_proba(TEXTS) == pytest.approx(expected, abs=1e-5)
    assert traced.predict_proba(TEXTS) == pytest.approx(expected, abs=1e-4)
    assert isinstance(traced, TorchPredictor) and traced.padded_trace is not None
    # The packed trace reproduces BERT layer by layer: adapters included, a soft prompt not.
    assert (traced.packed_trace is not None) == (method == "adapter")
    # Plain transformers (trust_remote_code: the bundle's hf_model.py) rebuilds the method's weights.
    plain = _standard_load(bundle, TEXTS, home)
    assert torch.tensor(plain["logits"]).softmax(-1).numpy() == pytest.approx(expected, abs=1e-5)
    if method == "prompt":  # a bundle that stores no placement (older ones) shifts the text
        assert FrugalTextClassifierConfig().prompt_shifts_text is True
        model.config.prompt_shifts_text = True
        shifted = TorchPredictor(model, tokenizer, bundle.labels).predict_proba(TEXTS)
        assert shifted != pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(("method", "decayed"), [("prompt", False), ("prefix", True), ("adapter", True)])
def test_weight_decay_spares_the_soft_prompt_only(tiny_base, method, decayed):
    """At the prompt's learning rate of 0.3 decay would pull it toward zero whatever it learns;
    the other methods' weights and every head decay as configured."""
    config = TuneConfig(method=method, base=str(tiny_base), weight_decay=0.05)
    chosen = get_method(method)
    model = chosen.prepare(new_classifier(str(tiny_base), ["a", "b"]), asdict(config))
    encoder_lr, _ = chosen.encoder_optimizer(config)
    optimizer = make_optimizer(model, config, chosen.encoder_optimizer(config))
    trained = {name: p for name, p in model.named_parameters() if p.requires_grad}
    before = {name: p.detach().clone() for name, p in trained.items()}
    for p in trained.values():
        p.grad = torch.zeros_like(p)  # Adam then moves nothing: what changes is decay alone
    optimizer.step()
    for name, p in trained.items():
        head = "classifier" in name  # as make_optimizer tells the head apart
        rate = config.weight_decay if decayed or head else 0.0
        lr = config.head_lr if head else encoder_lr
        assert torch.allclose(p.detach(), before[name] * (1 - lr * rate)), name
    assert any(name == "prompt" for name in trained) == (method == "prompt")


def test_prediction_before_save_equals_after_reload(tiny_base, intent_files, home):
    summary = _tune(tiny_base, intent_files, "adapter", adapter_reduction=4)
    bundle = load_bundle(summary.bundle_path)
    # Untrained adapters are the identity: a trained one must have changed the encoder's output.
    model, tokenizer = load_bundle_torch(bundle)
    before = TorchPredictor(model, tokenizer, bundle.labels).predict_proba(TEXTS)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".adapter.up." in name:
                param.zero_()
    identity = TorchPredictor(model, tokenizer, bundle.labels).predict_proba(TEXTS)
    assert not torch.allclose(torch.from_numpy(before), torch.from_numpy(identity), atol=1e-6)


@pytest.mark.parametrize(
    "settings",
    [
        {"method": "prompt", "prompt_length": 3},
        {"method": "prefix", "prefix_length": 3},
        {"method": "adapter", "adapter_reduction": 4, "adapter_placement": "houlsby"},
    ],
)
def test_in_memory_model_and_saved_bundle_agree(tiny_base, intent_files, home, settings):
    from frugalml.data import load_dataset

    config = TuneConfig(base=str(tiny_base), epochs=2, batch_size=8, lr=5e-3, **settings)
    result = tune(load_dataset(intent_files["train"]), config)
    memory = TorchPredictor(result.model, result.tokenizer, result.labels).predict_proba(TEXTS)
    from frugalml.tune.workflow import save_tuned

    bundle = save_tuned(result, home / "bundles", "p", {"val_accuracy": result.val_accuracy})
    assert load_predictor(bundle).predict_proba(TEXTS) == pytest.approx(memory, abs=1e-5)
    # The method's weights matter: without them the same model answers otherwise.
    plain = TorchPredictor(
        load_bundle_torch(bundle)[0].__class__(_without_method(result.model.config)),
        result.tokenizer,
        result.labels,
    )
    plain.model.load_state_dict(result.model.state_dict(), strict=False)
    assert plain.predict_proba(TEXTS) != pytest.approx(memory, abs=1e-4)


def _without_method(config):
    config = config.__class__.from_dict(config.to_dict())
    config.prompt_length, config.prefix_length, config.bottleneck_adapter = 0, 0, None
    return config


def test_an_adapter_bundle_serves(tiny_base, intent_files, home):
    summary = _tune(tiny_base, intent_files, "adapter", adapter_reduction=4)
    predictor = load_predictor(load_bundle(summary.bundle_path))
    expected = predictor.predict_proba(TEXTS)
    with running(create_app(predictor)) as (url, _):
        response = httpx.post(f"{url}/v1/predict", json={"inputs": TEXTS})
    assert response.status_code == 200
    labels = [p["label"] for p in response.json()["predictions"]]
    assert labels == [predictor.labels[i] for i in expected.argmax(1)]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"method": "prompt", "prompt_length": 0}, "prompt_length >= 1"),
        ({"method": "prefix", "prefix_length": 0}, "prefix_length >= 1"),
        ({"method": "adapter", "adapter_reduction": 0}, "adapter_reduction >= 1"),
        ({"method": "adapter", "adapter_reduction": -2}, "adapter_reduction >= 1"),
        ({"method": "adapter", "adapter_placement": "middle"}, "pfeiffer, houlsby"),
        ({"method": "lora", "lora_r": 0}, "lora_r >= 1"),
        ({"method": "lora", "lora_variant": "qlora"}, "lora, dora, rslora"),
    ],
)
def test_bad_settings_give_one_clear_line(settings, message):
    with pytest.raises(FrugalError, match=message) as caught:
        TuneConfig(**settings)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"method": "adapter", "adapter_reduction": 33}, "leaves no bottleneck for hidden size 32"),
    ],
)
def test_settings_the_base_cannot_take_are_refused(tiny_base, intent_files, settings, message):
    from frugalml.data import load_dataset

    config = TuneConfig(base=str(tiny_base), epochs=1, batch_size=8, **settings)
    with pytest.raises(FrugalError, match=message):
        tune(load_dataset(intent_files["train"]), config)


def test_a_portable_export_refuses_what_a_plain_encoder_cannot_carry(tiny_base, intent_files, home, tmp_path):
    from frugalml.models.portable import export_bundle

    summary = _tune(tiny_base, intent_files, "adapter", adapter_reduction=4, epochs=1)
    with pytest.raises(FrugalError, match="tuned with --method adapter, whose weights a plain encoder"):
        export_bundle(load_bundle(summary.bundle_path), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("variant", "magnitudes"), [("lora", 0), ("dora", 1), ("rslora", 0)])
def test_lora_rank_targets_and_variants(tiny_base, intent_files, home, variant, magnitudes):
    summary = _tune(
        tiny_base, intent_files, "lora", lora_r=4, lora_targets="query, value", lora_variant=variant
    )
    assert summary.metrics["accuracy"] >= 0.9
    # 2 layers x (query, value) x (A: 4 x 32 + B: 32 x 4), DoRA with a magnitude per output; + head.
    lora = 2 * 2 * (4 * 32 + 32 * 4 + magnitudes * 32)
    assert summary.trainable_params == lora + 32 * 3 + 3
    assert summary.adapter_bytes == lora * 4
    bundle = load_bundle(summary.bundle_path)
    adapter_config = (bundle.path / "adapter" / "adapter_config.json").read_text()
    assert '"r": 4' in adapter_config and f'"use_dora": {str(variant == "dora").lower()}' in adapter_config
    # The merged model the bundle serves gives the evaluation's accuracy.
    from frugalml.evaluate.workflow import evaluate_bundle

    _, report = evaluate_bundle(bundle.id, intent_files["test"])
    assert report.accuracy == pytest.approx(summary.metrics["accuracy"])


def test_unknown_lora_target_names_the_choices(tiny_base, intent_files):
    from frugalml.data import load_dataset

    config = TuneConfig(method="lora", base=str(tiny_base), epochs=1, lora_targets="query,qkv_proj")
    with pytest.raises(FrugalError, match=r"unknown LoRA target qkv_proj; choose all-linear or among .*"):
        tune(load_dataset(intent_files["train"]), config)


def test_cli_passes_method_settings_and_refuses_two_lora_variants(capsys, tiny_base, intent_files, home):
    import json

    from test_cli import run_cli

    common = ["tune", str(intent_files["train"]), "--base", str(tiny_base), "--epochs", "1", "--json"]
    code, out, _ = run_cli(capsys, *common, "--method", "adapter", "--adapter-reduction", "8")
    assert code == 0
    summary = json.loads(out)
    assert summary["method"] == "adapter"
    bundle = load_bundle(summary["bundle_path"])
    assert bundle.config["adapter_reduction"] == 8
    # 2 layers x one Pfeiffer adapter of a 4-wide bottleneck on 32 features, fp32.
    assert summary["adapter_bytes"] == 2 * (32 * 4 + 4 + 4 * 32 + 32) * 4
    code, out, err = run_cli(capsys, *common, "--method", "lora", "--dora", "--rslora")
    assert code == 2 and out == ""
    assert "--dora and --rslora are two LoRA variants: choose one" in err
    assert len(err.strip().splitlines()) == 1
