"""The CLI as a user runs it: JSON on stdout, one-line errors with exit 2, models commands."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from frugalml import ui
from frugalml.cli import app
from frugalml.errors import FrugalError


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        app(list(args), prog_name="frugalml")
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_tune_json_then_eval_predict_and_models(capsys, tiny_base, intent_files, home, tmp_path):
    code, out, _ = run_cli(
        capsys,
        "tune",
        str(intent_files["train"]),
        "--eval",
        str(intent_files["test"]),
        "--base",
        str(tiny_base),
        "--method",
        "head",
        "--json",
    )
    assert code == 0
    summary = json.loads(out)
    assert list(summary) == [  # scripts read these keys: the shape stays as it is
        "bundle_id",
        "bundle_path",
        "method",
        "base",
        "metrics",
        "train_seconds",
        "trainable_params",
        "total_params",
        "peak_rss_mb",
        "epochs_run",
        "size_bytes",
        "run_id",
        "device",
        "workers",
        "resumed_from_step",
        "adapter_bytes",
        "task",
    ]
    assert summary["task"] == "text-classification"
    assert list(summary["metrics"]) == ["val_accuracy", "val_loss", "accuracy", "macro_f1", "eval_n"]
    assert summary["metrics"]["accuracy"] >= 0.9 and "macro_f1" in summary["metrics"]
    bundle_id = summary["bundle_id"]

    png = tmp_path / "cm.png"
    code, out, _ = run_cli(
        capsys, "eval", bundle_id[:6], str(intent_files["test"]), "--confusion", str(png), "--json"
    )
    report = json.loads(out)
    assert code == 0 and report["n"] == 24 and report["accuracy"] == summary["metrics"]["accuracy"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, _ = run_cli(  # another suffix: .png is added, and the JSON names the file written
        capsys,
        "eval",
        bundle_id,
        str(intent_files["test"]),
        "--confusion",
        str(tmp_path / "cm.txt"),
        "--json",
    )
    assert (
        json.loads(out)["confusion_png"] == str(tmp_path / "cm.txt.png")
        and (tmp_path / "cm.txt.png").is_file()
    )

    code, out, _ = run_cli(
        capsys, "predict", bundle_id, "my card was stolen block it", "reset password", "--json"
    )
    assert [p["label"] for p in json.loads(out)] == ["lost_card", "password"]
    # Texts are shown as typed: square brackets are not console markup.
    code, out, _ = run_cli(capsys, "predict", bundle_id, "reset [/b] password", "[bold]card[/bold] lost")
    assert code == 0 and "reset [/b] password" in out and "[bold]card[/bold] lost" in out

    code, out, _ = run_cli(capsys, "models", "list", "--json")
    assert [row["id"] for row in json.loads(out)] == [bundle_id]
    code, out, _ = run_cli(capsys, "models", "show", bundle_id, "--json")
    shown = json.loads(out)
    assert shown["bundle"]["id"] == bundle_id
    assert shown["lineage"][0]["dataset"]["source"] == str(intent_files["train"])
    assert shown["lineage"][0]["run"]["config"]["method"] == "head"
    # The same content under another name, given relative to the working folder: lineage names
    # the file that run read, whole (it named the first file ever seen with that content).
    copy = Path("renamed.csv")
    copy.write_bytes(intent_files["train"].read_bytes())
    args = ("tune", str(copy), "--base", str(tiny_base), "--method", "head", "--json")
    second = json.loads(run_cli(capsys, *args)[1])["bundle_id"]
    lineage = json.loads(run_cli(capsys, "models", "show", second, "--json")[1])["lineage"]
    assert lineage[0]["data_path"] == str(copy.resolve())
    code, out, _ = run_cli(capsys, "models", "show", second)  # the table names that file too,
    assert code == 0 and " renamed.csv " in out  # whole, as typed from this folder
    run_cli(capsys, "models", "rm", second)
    code, out, _ = run_cli(capsys, "models", "rm", bundle_id, "--json")
    assert json.loads(out) == {"removed": bundle_id}
    code, _, err = run_cli(capsys, "models", "show", bundle_id)
    assert code == 2 and "no bundle" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tune", "missing.csv"], "missing.csv: no such file or directory"),
        (["tune", "miss[/b]ing.csv"], "miss[/b]ing.csv: no such file"),  # not console markup
        (["tune", "{train}", "--method", "magic"], "unknown method 'magic'"),
        (["tune", "{train}", "--class-weight", "equal"], "class weight must be 'balanced', or none"),
        (["predict", "nobundle", "hello", "  "], "text 2 is empty"),  # before the bundle is looked up
        (["tune", "{single}"], "needs at least 2 classes"),
        (["tune", "{train}", "--batch-size", "0"], "out of range: batch_size=0 (batch_size >= 1, 0 <= seed"),
        (["tune", "{train}", "--seed", "-1"], "tune settings out of range: seed=-1"),
        # Settings are checked before any file is read: the training file here does not exist.
        (["tune", "missing.csv", "--epochs", "-1"], "tune settings out of range: epochs=-1"),
        (["tune", "missing.csv", "--head-lr", "0"], "tune settings out of range: head_lr=0.0"),
        (["tune", "missing.csv", "--method", "magic"], "unknown method 'magic'"),
        (["tune", "missing.csv", "--device", "tpu"], "unknown device 'tpu'"),
        (["tune", "missing.csv", "--backend", "spark"], "unknown backend 'spark'; choose one of local, ray"),
        (
            ["tune", "missing.csv", "--address", "127.0.0.1:6379"],
            "names a Ray cluster: use it with --backend ray",
        ),
        (["tune", "missing.csv", "--checkpoint-every", "-1"], "out of range: checkpoint_every=-1"),
        (["run", "{typed_yaml}"], "setting 'epochs' takes int or null, got '3'"),
        (["tune", "{one_each}"], "every class has a single row"),
        (["tune", "{train}", "--eval", "{unseen}"], "label(s) not seen in training"),
        (["eval", "nobundle", "{train}"], "no bundle 'nobundle'"),
        (
            ["eval", "nobundle", "missing.csv", "--batch-size", "0"],
            "eval settings out of range: batch_size=0",
        ),
        (["tune", "{train}", "--base", "/nonexistent/model"], "no such model folder"),
        (["tune", "{train}", "--base", "{bundle_like}"], "a frugalml bundle, not a base encoder"),
        (["run", "{bad_yaml}"], "not valid YAML"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(capsys, intent_files, home, tmp_path, args, message):
    single = tmp_path / "single.csv"
    single.write_text("text,label\na,x\nb,x\n")
    unseen = tmp_path / "unseen.csv"
    unseen.write_text("text,label\nrefund please,refund\nsomething,weird_label\n")
    one_each = tmp_path / "one_each.csv"
    one_each.write_text("text,label\na,x\nb,y\n")
    bundle_like = tmp_path / "bundle"  # what a bundle folder's config says
    bundle_like.mkdir()
    (bundle_like / "config.json").write_text('{"model_type": "frugal-text-classifier"}')
    bad_yaml = tmp_path / "p.yaml"
    bad_yaml.write_text("steps: [unclosed\n")
    typed_yaml = tmp_path / "typed.yaml"  # YAML reads '3' in quotes as text
    typed_yaml.write_text(f"steps:\n  - id: t\n    tune: {{train: {intent_files['train']}, epochs: '3'}}\n")
    paths = {
        "train": intent_files["train"],
        "single": single,
        "one_each": one_each,
        "unseen": unseen,
        "bad_yaml": bad_yaml,
        "bundle_like": bundle_like,
        "typed_yaml": typed_yaml,
    }
    code, _out, err = run_cli(capsys, *[a.format(**paths) for a in args])
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (home / "bundles").exists() or not any(
        p for p in (home / "bundles").iterdir() if not p.name.startswith(".")
    )


def test_tune_options_left_out_take_the_configs_defaults(capsys, monkeypatch, intent_files, home):
    import dataclasses

    import frugalml.tune
    import frugalml.tune.workflow
    from frugalml.tune import TuneConfig

    @dataclasses.dataclass
    class NewDefaults(TuneConfig):
        head_lr: float = 0.5
        batch_size: int = 7

    configs = []

    def tune_and_register(train, config, **_):
        configs.append(config)
        raise FrugalError("stopped before tuning")

    monkeypatch.setattr(frugalml.tune, "TuneConfig", NewDefaults)
    monkeypatch.setattr(frugalml.tune.workflow, "tune_and_register", tune_and_register)
    code, _, err = run_cli(capsys, "tune", str(intent_files["train"]), "--seed", "3")
    assert code == 2 and "stopped before tuning" in err
    assert configs == [NewDefaults(seed=3)]


def test_serve_refuses_a_bundle_twice_a_bad_name_a_taken_port_or_an_empty_key_before_loading(
    capsys, monkeypatch, tiny_base, intent_files, home
):
    args = ("tune", str(intent_files["train"]), "--base", str(tiny_base), "--method", "head", "--json")
    code, out, _ = run_cli(capsys, *args)
    bundle = json.loads(out)["bundle_id"]
    code, _, err = run_cli(capsys, "serve", f"intent={bundle}", f"intent={bundle}", "--port", "1")
    assert code == 2 and f"bundle {bundle} is already served as 'intent'" in err and "Traceback" not in err
    with socket.socket() as taken:  # were the serve let through, it would fail to bind, not hang
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, _, err = run_cli(capsys, "serve", f"team/intent={bundle}", "--port", port)
        assert code == 2 and "'team/intent' cannot be served" in err and "Traceback" not in err
        code, _, err = run_cli(capsys, "serve", bundle, "--port", port)  # before loading, exit 2
        assert code == 2 and f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err
        code, _, err = run_cli(capsys, "serve", bundle, "--host", "", "--port", port)  # every interface
        assert code == 2 and f"cannot listen on 0.0.0.0:{port}" in err
        monkeypatch.setenv("FRUGALML_API_KEY", "")  # say, a secret that was never filled in
        code, _, err = run_cli(capsys, "serve", bundle, "--port", port)
        assert code == 2 and "--api-key (or FRUGALML_API_KEY) is empty" in err and "Traceback" not in err


def test_serve_checks_its_options_before_it_looks_for_a_bundle(capsys, home):
    # "nope" is no bundle: each of these must fail on the option or the port, before that.
    code, _, err = run_cli(capsys, "serve", "nope", "--max-queue", "4")
    assert code == 2 and "--max-items must not exceed --max-queue" in err
    code, _, err = run_cli(capsys, "serve", "nope", "--port", "70000")  # was bound as 70000 - 65536
    assert code == 2 and "65535" in err


def test_sigterm_mid_tune_records_the_run_as_failed_and_leaves_no_bundle(tiny_base, intent_files, home):
    frugalml = str(Path(sys.executable).with_name("frugalml"))  # the installed command
    command = [frugalml, "tune", str(intent_files["train"]), "--base", str(tiny_base)]
    process = subprocess.Popen(
        [*command, "--method", "full", "--epochs", "500"], stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _run_statuses(home) != ["running"]:
            time.sleep(0.2)
        assert _run_statuses(home) == ["running"]
        time.sleep(1.0)  # into the epochs
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 143 and "terminated" in err and "Traceback" not in err
    assert _run_statuses(home) == ["failed"]
    assert not any(p for p in (home / "bundles").glob("*") if not p.name.startswith("."))


def _run_statuses(home) -> list[str]:
    path = home / "lineage.sqlite"
    if not path.exists():
        return []
    with closing(sqlite3.connect(path, timeout=30)) as db:
        try:
            return [row[0] for row in db.execute("SELECT status FROM runs")]
        except sqlite3.OperationalError:  # the tables are being made
            return []


def test_a_diverging_fine_tune_is_a_user_error_not_a_traceback(capsys, tiny_base, intent_files, home):
    args = ("tune", str(intent_files["train"]), "--base", str(tiny_base), "--method", "full", "--lr", "1e30")
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "fine-tuning diverged in epoch 1" in err and "lower the learning rate" in err
    assert "Traceback" not in err


def test_paths_are_shown_from_the_working_folder_unless_they_climb_out_of_it(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert ui.short_path(tmp_path / "data" / "train.csv") == os.path.join("data", "train.csv")
    assert ui.short_path(tmp_path / "..hidden.csv") == "..hidden.csv"  # a name, not the parent
    assert ui.short_path(tmp_path.parent / "x.csv") == str(tmp_path.parent.resolve() / "x.csv")


def test_hints_name_the_command_as_it_can_be_typed_again(monkeypatch, tmp_path):
    command = tmp_path / "venv" / "bin" / "frugalml"  # an installed command off the PATH
    command.parent.mkdir(parents=True)
    command.write_text("#!/bin/sh\n")
    command.chmod(0o755)
    monkeypatch.setattr(sys, "argv", [str(command)])
    monkeypatch.setenv("PATH", "")
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a relative path would climb out with ../
    assert ui.command_name() == str(command.resolve())
    monkeypatch.chdir(command.parent.parent)
    assert ui.command_name() == os.path.join("bin", "frugalml")
    monkeypatch.chdir(command.parent)  # a bare name would be looked up on PATH instead
    assert ui.command_name() == os.path.join(".", "frugalml")
    monkeypatch.setenv("PATH", str(command.parent))
    assert ui.command_name() == "frugalml"
    other = tmp_path / "other" / "frugalml"  # another install first on PATH: `frugalml` is not this one
    other.parent.mkdir()
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    monkeypatch.setenv("PATH", os.pathsep.join([str(other.parent), str(command.parent)]))
    assert ui.command_name() == os.path.join(".", "frugalml")
