"""Alert rules: valid for Prometheus (`promtool check rules`), right by its own unit tests
(`promtool test rules`), written by the CLI with the user's thresholds."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from test_cli import run_cli

from frugalml.errors import FrugalError
from frugalml.monitor.alerting import load_rules, parse_duration
from frugalml.monitor.checks import MEASURES
from frugalml.monitor.rules import CHECK, Thresholds, rules_document, rules_unit_tests

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (`make monitoring-tools` installs Debian's prometheus)"
)


def _promtool(*args: str | Path) -> subprocess.CompletedProcess:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=120)


def _write(path: Path, document: dict) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


CASES = {
    "defaults": ("intent", Thresholds()),
    "tight, odd name": (
        'odd "name" \\ here',
        Thresholds(p99_ms=80, error_ratio=0.5, window_s=30, for_s=5, not_ready_for_s=0, low_confidence=0.9),
    ),
    "loose": (
        "m",
        Thresholds(p99_ms=20_000, overload_ratio=0.9, queue_saturation=0.99, low_confidence_share=0.95),
    ),
}


@needs_promtool
@pytest.mark.parametrize(("model", "thresholds"), CASES.values(), ids=CASES.keys())
def test_rules_pass_promtool_check_and_their_unit_tests(tmp_path, model, thresholds):
    rules = _write(tmp_path / "rules.yml", rules_document(model, thresholds))
    checked = _promtool("check", "rules", rules)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout
    tests = _write(tmp_path / "rules_test.yml", rules_unit_tests(model, thresholds, "rules.yml"))
    tested = _promtool("test", "rules", tests)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@needs_promtool
def test_the_unit_tests_catch_a_wrong_threshold(tmp_path):
    """The shipped tests are no rubber stamp: rules with a looser threshold fail them."""
    _write(tmp_path / "rules.yml", rules_document("m", Thresholds(error_ratio=0.5)))
    tests = _write(tmp_path / "t.yml", rules_unit_tests("m", Thresholds(error_ratio=0.05), "rules.yml"))
    tested = _promtool("test", "rules", tests)
    assert tested.returncode != 0
    assert "FrugalmlHighErrorRatio" in tested.stdout + tested.stderr


def test_rules_cover_every_check_the_evaluator_runs():
    rules = rules_document("m")["groups"][0]["rules"]
    assert [rule["annotations"][CHECK] for rule in rules] == list(MEASURES)
    assert {rule["alert"] for rule in rules} == {
        "FrugalmlHighLatencyP99",
        "FrugalmlHighErrorRatio",
        "FrugalmlOverloaded",
        "FrugalmlQueueSaturated",
        "FrugalmlNotReady",
        "FrugalmlDrift",
        "FrugalmlLowConfidence",
    }
    drift = next(rule for rule in rules if rule["alert"] == "FrugalmlDrift")
    assert "frugalml_drift_psi" in drift["expr"]  # the name the drift monitor exposes


def test_thresholds_validate_every_field_in_one_message():
    with pytest.raises(FrugalError) as caught:
        Thresholds(p99_ms=0, error_ratio=2, low_confidence=0.55, for_s=-1)
    message = str(caught.value)
    for part in ("p99_ms", "error_ratio", "low_confidence", "for_s"):
        assert part in message


def test_load_rules_reads_back_what_rules_writes_and_refuses_foreign_rules(tmp_path):
    thresholds = Thresholds(p99_ms=250, window_s=60, for_s=30)
    rules = load_rules(_write(tmp_path / "r.yml", rules_document("m", thresholds)))
    p99 = next(rule for rule in rules if rule.check == "p99_latency")
    assert (p99.threshold, p99.window_s, p99.for_s, p99.model) == (0.25, 60, 30, "m")
    foreign = {"groups": [{"name": "g", "rules": [{"alert": "Up", "expr": "up == 0", "labels": {}}]}]}
    with pytest.raises(FrugalError, match="not written by `frugalml monitor rules`"):
        load_rules(_write(tmp_path / "f.yml", foreign))
    with pytest.raises(FrugalError, match="no 'groups'"):
        load_rules(_write(tmp_path / "e.yml", {"rules": []}))
    with pytest.raises(FrugalError, match="needs a list of rules"):
        load_rules(_write(tmp_path / "g.yml", {"groups": ["rules"]}))
    (tmp_path / "bad.yml").write_text("groups: [unclosed")
    with pytest.raises(FrugalError, match="cannot read alert rules"):
        load_rules(tmp_path / "bad.yml")
    assert parse_duration("1m30s") == 90
    with pytest.raises(FrugalError):
        parse_duration("90 seconds")


def test_rules_command_writes_rules_and_tests_with_given_thresholds(capsys, home, tmp_path):
    code, out, err = run_cli(
        capsys,
        "monitor",
        "rules",
        "intent",
        "--output",
        str(tmp_path / "out" / "rules.yml"),
        "--tests",
        str(tmp_path / "rules_test.yml"),
        "--p99-ms",
        "250",
        "--for",
        "30",
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["model"] == "intent"
    written = yaml.safe_load((tmp_path / "out" / "rules.yml").read_text())
    assert written == rules_document("intent", Thresholds(p99_ms=250, for_s=30))
    tests = yaml.safe_load((tmp_path / "rules_test.yml").read_text())
    assert tests["rule_files"] == ["out/rules.yml"]  # relative to the tests file, as promtool reads it
    if PROMTOOL:
        tested = _promtool("test", "rules", tmp_path / "rules_test.yml")
        assert tested.returncode == 0, tested.stdout + tested.stderr
    # To stdout by default; a bad threshold is one line and exit 2, with nothing written.
    code, out, _ = run_cli(capsys, "monitor", "rules", "intent")
    assert code == 0
    assert yaml.safe_load(out) == rules_document("intent")
    code, out, err = run_cli(
        capsys, "monitor", "rules", "intent", "--error-ratio", "3", "-o", str(tmp_path / "x")
    )
    assert (code, out) == (2, "")
    assert "error_ratio must be in (0, 1)" in err
    assert not (tmp_path / "x").exists()
