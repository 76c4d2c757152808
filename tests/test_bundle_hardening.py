"""Loading a bundle reads only listed files, runs no code from it, and refuses what it cannot serve.

Each test changes a copy of a real tuned bundle the way someone with write access to a bundle
folder could: adding files beside the listed ones, or editing files and rewriting the manifest's
hashes to match ("rehash").
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_rows, write_csv
from safetensors.torch import load_file, save_file
from test_cli import run_cli

from frugalml.bundle import Bundle, load_bundle
from frugalml.compress.onnx_export import export_onnx
from frugalml.errors import BundleError
from frugalml.hashing import sha256_file
from frugalml.runtime import load_predictor
from frugalml.settings import Settings
from frugalml.tune import TuneConfig
from frugalml.tune.workflow import tune_and_register

ADDED_TOKENS = {"parcel": 30522, "refund": 30523}  # "parcel" is not in the tiny vocabulary
TEXT = "I want a refund for my parcel now"


@pytest.fixture(scope="module")
def tuned(tiny_base, tmp_path_factory) -> Bundle:
    root = tmp_path_factory.mktemp("hardening")
    train = write_csv(root / "train.csv", make_rows(20, seed=1))
    config = TuneConfig(method="head", base=str(tiny_base))
    return load_bundle(tune_and_register(train, config, settings=Settings(home=root / "home")).bundle_path)


@pytest.fixture(scope="module")
def onnx_bundle(tuned, tmp_path_factory) -> Bundle:
    return export_onnx(tuned, tmp_path_factory.mktemp("hardening-onnx"))


def copy_of(bundle: Bundle, tmp_path: Path) -> Path:
    assert bundle.path is not None
    return Path(shutil.copytree(bundle.path, tmp_path / "copy"))


def rehash(folder: Path) -> None:
    """List every file of `folder` in its manifest with its current hash, as a writer would."""
    manifest = json.loads((folder / "bundle.json").read_text())
    manifest["files"] = {
        str(p.relative_to(folder)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "bundle.json"
    }
    (folder / "bundle.json").write_text(json.dumps(manifest))


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


def test_unlisted_added_tokens_are_refused_and_predict_says_so_in_one_line(tuned, tmp_path, capsys, home):
    folder = copy_of(tuned, tmp_path)
    (folder / "added_tokens.json").write_text(json.dumps(ADDED_TOKENS))
    with pytest.raises(BundleError, match=r"does not list: added_tokens.json"):
        load_bundle(folder)
    code, out, err = run_cli(capsys, "predict", str(folder), TEXT)
    assert_one_line_error(code, err, "added_tokens.json")
    assert out == ""


def test_unlisted_special_tokens_map_is_refused_even_unverified(tuned, tmp_path):
    folder = copy_of(tuned, tmp_path)
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"cls_token": "[MASK]", "sep_token": "[MASK]"})
    )
    with pytest.raises(BundleError, match=r"does not list: special_tokens_map.json"):
        load_bundle(folder)
    # A bundle read without hashing (as `models show` does) still loads no unlisted file.
    with pytest.raises(BundleError, match=r"does not list: special_tokens_map.json"):
        load_predictor(load_bundle(folder, verify=False))


def test_listed_added_tokens_past_the_embeddings_fail_at_load_not_per_request(tuned, tmp_path, capsys, home):
    folder = copy_of(tuned, tmp_path)
    (folder / "added_tokens.json").write_text(json.dumps(ADDED_TOKENS))
    rehash(folder)
    code, out, err = run_cli(capsys, "predict", str(folder), TEXT)
    assert_one_line_error(code, err, "token ids up to 32", "ids 0-31")
    assert out == ""


def test_onnx_graph_is_checked_against_the_tokenizer_beyond_the_config(onnx_bundle, tmp_path, capfd, home):
    folder = copy_of(onnx_bundle, tmp_path)
    (folder / "added_tokens.json").write_text(json.dumps(ADDED_TOKENS))
    with pytest.raises(BundleError, match=r"does not list: added_tokens.json"):
        load_predictor(load_bundle(folder, verify=False))
    rehash(folder)
    with pytest.raises(BundleError, match="token ids up to 32"):
        load_predictor(load_bundle(folder))
    # A config that claims more rows than the graph has: the graph itself is asked.
    edit_json(folder / "config.json", lambda config: config["encoder"].update(vocab_size=40))
    rehash(folder)
    with pytest.raises(BundleError, match=r"model.onnx cannot embed token id 32"):
        load_predictor(load_bundle(folder))
    code, _, err = run_cli(capfd, "predict", str(folder), TEXT)  # capfd: ONNX Runtime logs from C++
    assert_one_line_error(code, err, "model.onnx cannot embed token id 32")


def test_listed_special_tokens_sharing_a_role_are_refused(tuned, tmp_path):
    folder = copy_of(tuned, tmp_path)
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"cls_token": "[MASK]", "sep_token": "[MASK]"})
    )
    rehash(folder)
    with pytest.raises(BundleError, match="'\\[MASK\\]' as cls_token and sep_token"):
        load_predictor(load_bundle(folder))


EVIL_TOKENIZER = """
from pathlib import Path
Path({marker!r}).write_text("bundle code ran")
from transformers import BertTokenizer
class EvilTokenizer(BertTokenizer):
    pass
"""


def _with_custom_tokenizer(folder: Path, marker: Path, auto_map: bool) -> None:
    (folder / "evil_tokenizer.py").write_text(EVIL_TOKENIZER.format(marker=str(marker)))

    def ask_for_code(settings: dict) -> None:
        settings["tokenizer_class"] = "EvilTokenizer"
        if auto_map:
            settings["auto_map"] = {"AutoTokenizer": ["evil_tokenizer.EvilTokenizer", None]}

    edit_json(folder / "tokenizer_config.json", ask_for_code)
    rehash(folder)


def test_tokenizer_code_in_a_bundle_never_runs_even_when_the_user_says_yes(tuned, tmp_path, home):
    folder, marker = copy_of(tuned, tmp_path), tmp_path / "marker"
    _with_custom_tokenizer(folder, marker, auto_map=True)
    frugalml = str(Path(sys.executable).with_name("frugalml"))  # the installed command
    done = subprocess.run(
        [frugalml, "predict", str(folder), TEXT], input="y\n", capture_output=True, text=True, timeout=300
    )
    assert_one_line_error(done.returncode, done.stderr, "tokenizer_config.json", "auto_map")
    assert "custom code" not in done.stdout  # transformers never asked
    assert not marker.exists()


def test_a_tokenizer_class_transformers_lacks_is_refused(tuned, tmp_path):
    folder, marker = copy_of(tuned, tmp_path), tmp_path / "marker"
    _with_custom_tokenizer(folder, marker, auto_map=False)
    with pytest.raises(BundleError, match="tokenizer_class 'EvilTokenizer', not a transformers tokenizer"):
        load_predictor(load_bundle(folder))
    assert not marker.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["auto_map"].update(AutoConfig="evil.Config"), "an auto_map other than frugalml's own"),
        (lambda c: c["encoder"].update(auto_map={"AutoModel": "evil.Model"}), "an auto_map for the encoder"),
        (lambda c: c["encoder"].update(model_type="evil-bert"), "encoder model_type 'evil-bert'"),
    ],
    ids=["auto_map", "encoder-auto_map", "encoder-model_type"],
)
def test_a_config_asking_for_other_code_is_refused(tuned, tmp_path, change, message):
    folder = copy_of(tuned, tmp_path)
    edit_json(folder / "config.json", change)
    rehash(folder)
    with pytest.raises(BundleError, match=message):
        load_predictor(load_bundle(folder))


def test_weights_missing_from_the_safetensors_are_refused_not_filled_at_random(tuned, tmp_path):
    folder = copy_of(tuned, tmp_path)
    weights = load_file(folder / "model.safetensors")
    save_file(
        {k: v for k, v in weights.items() if not k.startswith("classifier.")}, folder / "model.safetensors"
    )
    rehash(folder)
    with pytest.raises(
        BundleError, match=r"model.safetensors lacks weights \(classifier.bias, classifier.weight"
    ):
        load_predictor(load_bundle(folder))


def test_an_untouched_bundle_still_loads_in_both_formats(tuned, onnx_bundle):
    for bundle in (tuned, onnx_bundle):
        probabilities = load_predictor(load_bundle(bundle.path)).predict_proba([TEXT])
        assert probabilities.shape == (1, len(tuned.labels))


def test_a_base_model_asking_for_code_is_refused_without_running_it(tiny_base, tmp_path):
    from frugalml.errors import FrugalError
    from frugalml.models import load_tokenizer, new_classifier

    base, marker = Path(shutil.copytree(tiny_base, tmp_path / "base")), tmp_path / "marker"
    (base / "evil_tokenizer.py").write_text(EVIL_TOKENIZER.format(marker=str(marker)))
    edit_json(
        base / "tokenizer_config.json",
        lambda s: s.update(
            tokenizer_class="EvilTokenizer",
            auto_map={"AutoTokenizer": ["evil_tokenizer.EvilTokenizer", None]},
        ),
    )
    edit_json(
        base / "config.json", lambda c: c.update(model_type="evil-bert", auto_map={"AutoModel": "evil.Model"})
    )
    with pytest.raises(FrugalError, match=r"base model .* cannot be loaded"):
        load_tokenizer(str(base))
    with pytest.raises(FrugalError, match=r"base model .* cannot be loaded"):
        new_classifier(str(base), ["a", "b"])
    assert not marker.exists()
