"""`compress` settings: refused where the config is built, before any file is read."""

from __future__ import annotations

import pytest
from test_cli import run_cli

from frugalml.compress import CompressConfig
from frugalml.compress.steps import step_config
from frugalml.errors import FrugalError


@pytest.mark.parametrize(
    ("setting", "value"),
    [("max_drop", -1.0), ("heads", 0.0), ("latency_runs", 0), ("measure_seconds", 0.0), ("splice", 1.5)],
)
def test_the_config_refuses_a_setting_out_of_range_where_it_is_built(setting, value):
    with pytest.raises(FrugalError, match=f"compress settings out of range: {setting}="):
        CompressConfig(**{setting: value})
    with pytest.raises(FrugalError, match=f"{setting}="):  # the pipeline step builds the same config
        step_config({"bundle": "b", "train": "t.csv", "eval": "e.csv", setting: value})
    for wrong in ({"keep": "some"}, {"techniques": ("zip",)}, {"layers": (0,)}, {"options": {"zip": {}}}):
        with pytest.raises(FrugalError):
            CompressConfig(**wrong)


def test_the_cli_refuses_a_setting_out_of_range_before_reading_any_file(capsys, home, tmp_path):
    missing = ("--data", str(tmp_path / "no.csv"), "--eval", str(tmp_path / "none.csv"))
    for option, value in (("--max-drop", "-1"), ("--ffn", "2"), ("--keep", "some"), ("--splice", "-0.5")):
        code, _, err = run_cli(capsys, "compress", "nope", *missing, option, value)
        name = option.removeprefix("--").replace("-", "_")
        assert code == 2 and name in err and len(err.strip().splitlines()) == 1, err
    assert not (home / "lineage.sqlite").exists()  # refused before the lineage store was opened


def test_the_cli_passes_on_only_the_settings_given(capsys, home, tmp_path, monkeypatch):
    """The config's defaults are the only copy: options the user left out are not passed on."""
    from frugalml.compress import workflow

    seen = []

    def record(bundle, train, dev, config, **_):
        seen.append(config)
        raise FrugalError("stop here")

    monkeypatch.setattr(workflow, "compress_and_register", record)
    files = ("--data", str(tmp_path / "no.csv"), "--eval", str(tmp_path / "none.csv"))
    code, _, _ = run_cli(capsys, "compress", "b", *files, "--heads", "0.5", "--layers", "1,2")
    assert code == 2 and seen == [CompressConfig(heads=0.5, layers=(1, 2))]


def test_the_transfer_set_settings_reach_distillation_of_text_only():
    from frugalml.bundle import IMAGE_TASK, TEXT_TASK
    from frugalml.compress.workflow import _extra

    config = CompressConfig(splice=0.5, augment_copies=2, distill_epochs=3)
    assert _extra(config, "distill", TEXT_TASK) == {"epochs": 3, "augment_copies": 2, "splice": 0.5}
    assert _extra(config, "distill", IMAGE_TASK) == {"epochs": 3}  # images have no text to splice
    assert _extra(CompressConfig(), "distill", TEXT_TASK) == {}  # left out: distill's own defaults
    assert _extra(config, "prune", TEXT_TASK) == {}
