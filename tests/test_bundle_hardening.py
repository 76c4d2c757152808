"""Loading a bundle reads only listed files, runs no code from it, and refuses what it cannot serve.

Each test changes a copy of a real tuned bundle the way someone with write access to a bundle
folder could: adding files beside the listed ones, or editing files and rewriting the manifest's
hashes to match ("rehash").
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import make_rows, write_csv

from frugalml.bundle import Bundle, load_bundle
from frugalml.cli import app
from frugalml.compress.onnx_export import export_onnx
from frugalml.errors import BundleError
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
    return load_bundle(tune_and_register(train, config, settings=Settings(home=root / "home"))["bundle_path"])


@pytest.fixture(scope="module")
def onnx_bundle(tuned, tmp_path_factory) -> Bundle:
    return export_onnx(tuned, tmp_path_factory.mktemp("hardening-onnx"))


def copy_of(bundle: Bundle, tmp_path: Path) -> Path:
    assert bundle.path is not None
    return Path(shutil.copytree(bundle.path, tmp_path / "copy"))


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        app(list(args), prog_name="frugalml")
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


def test_unlisted_added_tokens_are_refused_and_predict_says_so_in_one_line(tuned, tmp_path, capsys, home):
    folder = copy_of(tuned, tmp_path)
    (folder / "added_tokens.json").write_text(json.dumps(ADDED_TOKENS))
    with pytest.raises(BundleError, match="does not list: added_tokens.json"):
        load_bundle(folder)
    code, out, err = run_cli(capsys, "predict", str(folder), TEXT)
    assert_one_line_error(code, err, "added_tokens.json")
    assert out == ""


def test_an_untouched_bundle_still_loads_in_both_formats(tuned, onnx_bundle):
    for bundle in (tuned, onnx_bundle):
        probabilities = load_predictor(load_bundle(bundle.path)).predict_proba([TEXT])
        assert probabilities.shape == (1, len(tuned.labels))
