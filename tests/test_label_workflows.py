"""Labelling commands end to end on a tiny config-built BERT: files in, files and JSON out."""

from __future__ import annotations

import io
import json
import os
import sqlite3
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pandas as pd
import pytest
from conftest import INTENTS, make_rows, write_csv

from frugalml.cli import app
from frugalml.data import Dataset, load_dataset
from frugalml.errors import FrugalError
from frugalml.label import labelstudio
from frugalml.pipeline import FILE_OUTPUTS, run_pipeline


def invoke(*args: str) -> tuple[int, str]:
    """Run the real `frugalml` entry point in-process (its error handling included)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            app([str(a) for a in args], prog_name="frugalml")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return code, out.getvalue() + err.getvalue()


def ok_json(*args: str) -> dict:
    code, output = invoke(*args, "--json")
    assert code == 0, output
    return json.loads(output[output.index("{") : output.rindex("}") + 1])


def auto_json(seed: Path, pool: Path, base: Path, out: Path, review: Path, *options: str) -> dict:
    """`frugalml label auto` with its outputs named, as JSON."""
    return ok_json("label", "auto", seed, pool, "--base", base, "--out", out, "--review", review, *options)


@pytest.fixture
def seed_and_pool(tmp_path) -> dict[str, Path]:
    seed = write_csv(tmp_path / "seed.csv", make_rows(12, seed=1))
    pool_rows = [(f"u{i:03d}", text) for i, (text, _) in enumerate(make_rows(30, seed=2))]
    pool = write_csv(tmp_path / "pool.csv", pool_rows, header=("id", "text"))
    return {"seed": seed, "pool": pool}


# ------------------------------------------------------------------ auto
def test_auto_writes_labelled_rows_and_a_review_queue(tiny_base, seed_and_pool, home, tmp_path):
    out, review = tmp_path / "out.csv", tmp_path / "review.csv"
    summary = ok_json(
        "label",
        "auto",
        seed_and_pool["seed"],
        seed_and_pool["pool"],
        "--base",
        tiny_base,
        "--out",
        out,
        "--review",
        review,
        "--target-precision",
        "0.97",
        "--rounds",
        "1",
    )
    assert summary["pool"] == 90 and summary["labelled"] == 36 and summary["neighbours"] == 5
    assert summary["accepted"] + summary["review"] == 90
    assert summary["coverage"] == pytest.approx(summary["accepted"] / 90)
    assert len(summary["rounds"]) <= 2
    labelled = load_dataset(out)
    frame = labelled.to_frame()
    assert list(frame.columns) == ["id", "text", "label", "confidence", "source"]
    assert (frame["source"] == "human").sum() == 36 and (frame["source"] == "auto").sum() == summary[
        "accepted"
    ]
    auto_rows = frame[frame["source"] == "auto"]
    if summary["accepted"]:
        assert summary["estimated_precision"] >= 0.97
        assert auto_rows["confidence"].astype(float).min() >= summary["threshold"] - 1e-6
        assert set(auto_rows["label"]) <= set(INTENTS)
    queue = load_dataset(review, require_labels=False)
    assert set(queue.ids) | set(auto_rows["id"]) == {f"u{i:03d}" for i in range(90)}
    confidence = [float(c) for c in queue.extra["confidence"]]
    assert confidence == sorted(confidence, reverse=True)
    # The review queue can be the next run's pool: the columns this run wrote are written anew.
    assert summary["review"] > 0
    out2 = tmp_path / "out2.csv"
    again = ok_json(
        "label", "auto", seed_and_pool["seed"], review, "--base", tiny_base, "--out", out2,
        "--review", tmp_path / "review2.csv", "--target-precision", "0.9", "--rounds", "1",
    )  # fmt: skip
    assert again["pool"] == summary["review"]
    assert list(load_dataset(out2).to_frame().columns) == ["id", "text", "label", "confidence", "source"]


def test_auto_rows_in_the_labelled_file_are_labelled_again_and_empty_sources_are_human(
    tiny_base, seed_and_pool, home, tmp_path
):
    seed = load_dataset(seed_and_pool["seed"]).to_frame()
    seed["source"] = (["human", "auto", None] * len(seed))[: len(seed)]  # None: an empty cell
    seed.loc[seed["source"] == "auto", "label"] = "refund"  # an earlier run's guesses, some wrong
    seed.to_csv(tmp_path / "mixed.csv", index=False)
    out, review = tmp_path / "out.csv", tmp_path / "review.csv"
    summary = ok_json(
        "label", "auto", tmp_path / "mixed.csv", seed_and_pool["pool"], "--base", tiny_base, "--out", out,
        "--review", review,
    )  # fmt: skip
    # A guess is no truth to estimate precision on: the auto rows join the pool instead.
    assert summary["labelled"] == 24 and summary["auto_rows_labelled_again"] == 12
    assert summary["pool"] == 90 + 12
    written = load_dataset(out).to_frame()
    human = written[written["source"] == "human"]
    assert human["id"].tolist() == seed["id"][seed["source"] != "auto"].tolist()
    guessed = set(seed["id"][seed["source"] == "auto"])
    again = set(written["id"][written["source"] == "auto"]) | set(pd.read_csv(review, dtype=str)["id"])
    assert guessed <= again


def test_auto_point_estimate_accepts_where_the_wilson_bound_cannot(tiny_base, seed_and_pool, home):
    common = ("label", "auto", seed_and_pool["seed"], seed_and_pool["pool"], "--base", tiny_base)
    common += ("--target-precision", "0.98", "--rounds", "0")
    wilson = ok_json(*common, "--out", home / "w.csv", "--review", home / "w.review.csv")
    point = ok_json(*common, "--point-estimate", "--out", home / "p.csv", "--review", home / "p.review.csv")
    assert (wilson["precision_rule"], point["precision_rule"]) == ("Wilson lower bound", "point estimate")
    # 36 held-out rows: even all correct, the Wilson bound (z=1) is 36/37 = 0.973 < 0.98.
    assert wilson["accepted"] == 0 and "no confidence threshold" in wilson["notes"][0]
    assert point["accepted"] > 0 and point["estimated_precision"] >= 0.98
    assert len(load_dataset(home / "p.csv").texts) == 36 + point["accepted"]


def test_auto_smooths_over_neighbours_by_default_and_not_with_zero(tiny_base, seed_and_pool, home):
    common = ("label", "auto", seed_and_pool["seed"], seed_and_pool["pool"], "--base", tiny_base)
    smoothed = ok_json(*common, "--out", home / "s.csv", "--review", home / "s.review.csv")
    raw = ok_json(*common, "--neighbours", "0", "--out", home / "r.csv", "--review", home / "r.review.csv")
    assert (smoothed["neighbours"], raw["neighbours"]) == (5, 0)
    confidences = [  # of every pool row, accepted or queued for review
        pd.concat([pd.read_csv(home / f"{run}.csv"), pd.read_csv(home / f"{run}.review.csv")])
        .set_index("id")["confidence"]
        .to_dict()
        for run in ("s", "r")
    ]
    pool_ids = set(load_dataset(seed_and_pool["pool"], require_labels=False).ids)
    assert confidences[0].keys() >= pool_ids and confidences[1].keys() >= pool_ids
    assert any(confidences[0][i] != confidences[1][i] for i in pool_ids)
    code, output = invoke(*common, "--neighbours", "-1")
    assert code == 2 and "neighbours must be 0 or more, got -1" in output
    # Refused as the settings are read, before any file: a missing one is not reached.
    code, output = invoke("label", "auto", "missing.csv", "missing-pool.csv", "--neighbours", "-1")
    assert code == 2 and "neighbours must be 0 or more" in output and "missing" not in output


def test_auto_refuses_bad_inputs_with_one_clear_line(tiny_base, seed_and_pool, home, tmp_path):
    code, output = invoke(
        "label", "auto", seed_and_pool["seed"], seed_and_pool["pool"], "--base", tiny_base, "--out", "o.txt"
    )
    assert code == 2 and "o.txt: write .csv, .jsonl or .parquet" in output
    assert not (home / "cache").exists()  # refused before anything was encoded
    empty = tmp_path / "empty.csv"
    empty.write_text("id,text\n")
    code, output = invoke("label", "auto", seed_and_pool["seed"], empty, "--base", tiny_base)
    assert code == 2 and "contains no rows" in output

    code, output = invoke(
        "label",
        "auto",
        seed_and_pool["seed"],
        seed_and_pool["pool"],
        "--base",
        tiny_base,
        "--labels",
        "refund,lost_card",
    )
    assert code == 2 and "'password'" in output and "not in the label set" in output

    seed_with_ids = write_csv(
        tmp_path / "seed_ids.csv",
        [("u001", "refund money back", "refund"), ("x1", "card lost", "lost_card")]
        + [(f"s{i}", t, y) for i, (t, y) in enumerate(make_rows(4, seed=5))],
        header=("id", "text", "label"),
    )
    code, output = invoke("label", "auto", seed_with_ids, seed_and_pool["pool"], "--base", tiny_base)
    assert code == 2 and "'u001'" in output and "also appear in the labelled set" in output
    assert "Traceback" not in output
    assert not list(tmp_path.glob("*.labelled.csv"))  # nothing half-written

    channels = write_csv(
        tmp_path / "channels.csv", [("p1", "where is my card", "email"), ("p2", "refund", "chat")],
        header=("id", "text", "source"),
    )  # fmt: skip
    code, output = invoke("label", "auto", seed_and_pool["seed"], channels, "--base", tiny_base)
    assert code == 2 and "column 'source' holds ['chat', 'email']" in output

    before = seed_and_pool["seed"].read_bytes()
    code, output = invoke(
        "label", "auto", seed_and_pool["seed"], seed_and_pool["pool"], "--out", seed_and_pool["seed"]
    )
    assert code == 2 and "would overwrite" in output and seed_and_pool["seed"].read_bytes() == before


def test_files_without_id_columns_get_distinct_ids(tiny_base, home, tmp_path):
    seed = write_csv(tmp_path / "seed.csv", make_rows(6, seed=1))
    pool = write_csv(tmp_path / "pool.csv", [(t,) for t, _ in make_rows(5, seed=3)], header=("text",))
    out = tmp_path / "out.csv"
    ok_json("label", "auto", seed, pool, "--base", tiny_base, "--out", out, "--review", tmp_path / "r.csv")
    ids = load_dataset(out).ids  # loading refuses duplicate ids
    assert all(i.startswith("pool-") for i in ids[18:])


def test_auto_takes_the_labels_a_partly_labelled_pool_has(tiny_base, seed_and_pool, home, tmp_path):
    seed_rows = make_rows(12, seed=1)
    # A review queue where a human has filled in every third label.
    rows = [(t, y if i % 3 == 0 else "", "") for i, (t, y) in enumerate(make_rows(10, seed=5))]
    rows[1] = (rows[1][0], "password", "auto")  # an earlier run's guess: labelled again
    rows[2] = (seed_rows[0][0], "password", "")  # a seed text: the seed's label stands
    queue_columns = [(*row, "refund", 0.42) for row in rows]
    header = ("text", "label", "source", "suggested_label", "confidence")
    pool = write_csv(tmp_path / "pool.csv", queue_columns, header=header)
    out, review = tmp_path / "out.csv", tmp_path / "review.csv"
    summary = ok_json(
        "label", "auto", seed_and_pool["seed"], pool, "--base", tiny_base, "--out", out, "--review", review
    )
    given = {f"pool-{i}": y for i, (_, y, s) in enumerate(rows) if y and not s and i != 2}
    assert summary["labelled_in_pool"] == len(given) == 10
    assert summary["labelled"] == 36 + 10 and summary["pool"] == 30 - 11
    frame = load_dataset(out).to_frame()
    human = frame[frame["source"] == "human"]
    assert len(human) == 46 and human["text"].is_unique and (human["confidence"] == "1.0").all()
    assert dict(zip(human["id"][36:], human["label"][36:], strict=True)) == given
    assert list(frame.columns) == ["id", "text", "label", "confidence", "source"]  # the queue's guess is gone
    queue = pd.read_csv(review, dtype=str)  # may hold no rows
    relabelled = set(frame["id"][frame["source"] == "auto"]) | set(queue["id"])
    assert relabelled == {f"pool-{i}" for i, (_, y, s) in enumerate(rows) if not y or s} - {"pool-2"}


def test_a_partly_labelled_pool_keeps_ids_apart_from_the_labelled_files(
    tiny_base, seed_and_pool, home, tmp_path
):
    # seed.csv has no id column; the pool's own ids are 100..189 (numbers, but real ids).
    texts = [t for t, _ in make_rows(30, seed=2)]
    rows = [(100 + i, t, "refund" if i < 3 else "") for i, t in enumerate(texts)]
    pool = write_csv(tmp_path / "pool.csv", rows, header=("id", "text", "label"))
    out = tmp_path / "out.csv"
    summary = auto_json(seed_and_pool["seed"], pool, tiny_base, out, tmp_path / "r.csv")
    assert summary["labelled_in_pool"] == 3 and summary["pool"] == 87
    ids = load_dataset(out).ids  # loading refuses duplicate ids
    assert ids[:36] == [f"seed-{i}" for i in range(36)] and ids[36:39] == ["100", "101", "102"]
    # Suggest matches the pool's ids against real ids only: the seed's row numbers are none.
    picked = ok_json(
        "label", "suggest", pool, "--labelled", seed_and_pool["seed"], "--budget", "5", "--base", tiny_base,
        "--out", tmp_path / "t.json",
    )  # fmt: skip
    assert picked["excluded_already_labelled"] == 0 and picked["labelled_in_pool"] == 3

    # A pool label outside --labels is blamed on the pool, not on the labelled file.
    code, output = invoke(
        "label", "auto", seed_and_pool["seed"], pool, "--base", tiny_base, "--labels", "lost_card,password"
    )
    assert code == 2 and "labelled rows of" in output and "pool.csv" in output and "'refund'" in output


def test_id_columns_that_only_number_the_rows_are_no_ids_to_match(tiny_base, seed_and_pool, home, tmp_path):
    # An `idx` column holding 0..n-1 (a saved index) in both files: rows are told apart, not matched.
    seed = write_csv(
        tmp_path / "seed.csv",
        [(i, t, y) for i, (t, y) in enumerate(make_rows(12, seed=1))],
        header=("idx", "text", "label"),
    )
    pool = write_csv(
        tmp_path / "pool.csv",
        [(i, t) for i, (t, _) in enumerate(make_rows(20, seed=2))],
        header=("idx", "text"),
    )
    summary = ok_json(
        "label",
        "auto",
        seed,
        pool,
        "--base",
        tiny_base,
        "--out",
        tmp_path / "o.csv",
        "--review",
        tmp_path / "r.csv",
    )
    assert summary["pool"] == 60
    picked = ok_json(
        "label",
        "suggest",
        pool,
        "--labelled",
        seed,
        "--budget",
        "3",
        "--base",
        tiny_base,
        "--out",
        tmp_path / "t.json",
    )
    assert picked["excluded_already_labelled"] == 0


def test_a_pool_label_column_must_be_the_labelled_files(tiny_base, seed_and_pool, home, tmp_path):
    # seed.csv labels in `label`; the pool's `category` (a ticket's channel) is no label.
    rows = [(t, "web" if i % 2 else "") for i, (t, _) in enumerate(make_rows(10, seed=2))]
    pool = write_csv(tmp_path / "pool.csv", rows, header=("text", "category"))
    summary = auto_json(seed_and_pool["seed"], pool, tiny_base, tmp_path / "o.csv", tmp_path / "r.csv")
    assert summary["labelled_in_pool"] == 0 and summary["pool"] == 30
    assert set(summary["accepted_per_label"]) <= set(INTENTS)


def test_runs_chained_on_their_own_outputs_keep_ids_and_texts_unique(tiny_base, home, tmp_path):
    seed = write_csv(tmp_path / "seed.csv", make_rows(12, seed=1))  # no id columns anywhere
    pools = [
        write_csv(tmp_path / f"p{k}.csv", [(t,) for t, _ in make_rows(8, seed=10 + k)], ("text",))
        for k in range(3)
    ]
    labelled = seed
    for k, pool in enumerate(pools):
        out = tmp_path / f"out{k}.csv"
        auto_json(labelled, pool, tiny_base, out, tmp_path / f"r{k}.csv", "--target-precision", "0.9")
        frame = load_dataset(out).to_frame()  # loading refuses duplicate ids
        assert frame["text"].is_unique
        labelled = out
    # The same pool again: an earlier guess of a pool row is not labelled a second time.
    again = auto_json(labelled, pools[-1], tiny_base, tmp_path / "again.csv", tmp_path / "ra.csv")
    assert load_dataset(tmp_path / "again.csv").to_frame()["text"].is_unique
    assert again["auto_rows_labelled_again"] > 0


def test_outputs_keep_a_clashing_label_column_and_mixed_columns_fit_parquet(tiny_base, home, tmp_path):
    rows = [(t, y, "x", i % 3) for i, (t, y) in enumerate(make_rows(12, seed=1))]
    seed = write_csv(tmp_path / "seed.csv", rows, header=("text", "intent", "label", "priority"))
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"text": t, "priority": 1}) + "\n" for t, _ in make_rows(5, seed=2)))
    out = tmp_path / "out.parquet"
    auto_json(seed, pool, tiny_base, out, tmp_path / "r.csv", "--label-column", "intent")
    frame = pd.read_parquet(out)  # "0" from the CSV beside 1 from the JSONL: written as text
    assert frame["original_label"].iloc[0] == "x" and set(frame["priority"].dropna()) <= {"0", "1", "2"}
    # JSONL objects and lists come back from a CSV as JSON (they were Python reprs: {'a': 1}).
    nested = tmp_path / "nested.jsonl"
    meta = {"src": "chat", "tags": [1, "ü"]}
    nested.write_text("".join(json.dumps({"text": t, "meta": meta}) + "\n" for t, _ in make_rows(5, seed=3)))
    csv_out = tmp_path / "nested_out.csv"
    auto_json(seed, nested, tiny_base, csv_out, tmp_path / "r2.csv", "--label-column", "intent")
    written = pd.concat([pd.read_csv(f, dtype=str) for f in (csv_out, tmp_path / "r2.csv")])["meta"].dropna()
    assert len(written) == 15 and all(json.loads(cell) == meta for cell in written)  # every pool row
    # To Parquet (pyarrow refuses [1, "ü"] as a list), and from Parquet, whose structs hold arrays.
    parquet_out = tmp_path / "nested_out.parquet"
    auto_json(seed, nested, tiny_base, parquet_out, tmp_path / "r3.parquet", "--label-column", "intent")
    assert json.loads(pd.read_parquet(parquet_out)["meta"].dropna().iloc[0]) == meta
    struct_pool = tmp_path / "struct.parquet"
    pd.DataFrame({"text": [t for t, _ in make_rows(5, seed=3)], "meta": [{"tags": [1, 2]}] * 15}).to_parquet(
        struct_pool
    )
    auto_json(
        seed, struct_pool, tiny_base, tmp_path / "s.csv", tmp_path / "rs.csv", "--label-column", "intent"
    )
    cells = pd.concat([pd.read_csv(f, dtype=str) for f in (tmp_path / "s.csv", tmp_path / "rs.csv")])["meta"]
    assert all(json.loads(cell) == {"tags": [1, 2]} for cell in cells.dropna()) and cells.notna().sum() == 15


def test_auto_on_its_own_output_keeps_its_human_rows_once(tiny_base, seed_and_pool, home, tmp_path):
    first = tmp_path / "first.csv"
    summary = ok_json(
        "label", "auto", seed_and_pool["seed"], seed_and_pool["pool"], "--base", tiny_base,
        "--out", first, "--review", tmp_path / "r1.csv", "--target-precision", "0.9",
    )  # fmt: skip
    assert summary["accepted"] > 0
    again = ok_json(
        "label", "auto", seed_and_pool["seed"], first, "--base", tiny_base,
        "--out", tmp_path / "second.csv", "--review", tmp_path / "r2.csv", "--target-precision", "0.9",
    )  # fmt: skip
    # The output's human rows are the seed's: not labelled again, not added twice.
    assert again["pool"] == summary["accepted"] and again["labelled_in_pool"] == 0
    frame = load_dataset(tmp_path / "second.csv").to_frame()
    assert (frame["source"] == "human").sum() == 36 and frame["text"].is_unique


def test_auto_leaves_out_pool_rows_that_repeat_labelled_texts(tiny_base, seed_and_pool, home, tmp_path):
    seed_texts = [t for t, _ in make_rows(12, seed=1)]
    pool_texts = [t for t, _ in make_rows(10, seed=2)]
    pool = write_csv(tmp_path / "pool.csv", [(t,) for t in seed_texts[:5] + pool_texts], header=("text",))
    out = tmp_path / "out.csv"
    summary = auto_json(seed_and_pool["seed"], pool, tiny_base, out, tmp_path / "r.csv")
    assert summary["pool_rows_already_labelled"] == 5 and summary["pool"] == 30
    assert load_dataset(out).to_frame()["text"].is_unique  # no text both human and auto


def test_label_sets_inline_or_from_a_file(tiny_base, seed_and_pool, home, tmp_path):
    long = ",".join(["refund", "lost_card", "password"] + [f"intent_number_{i:03d}" for i in range(20)])
    assert len(long) > 255  # longer than a file name may be
    summary = ok_json(
        "label", "auto", seed_and_pool["seed"], seed_and_pool["pool"], "--base", tiny_base, "--labels", long,
        "--out", tmp_path / "o.csv", "--review", tmp_path / "r.csv",
    )  # fmt: skip
    assert len(summary["labels_without_seed_rows"]) == 20
    listed = tmp_path / "labels.txt"
    listed.write_text("\ufeffrefund\nlost_card\npassword\n", encoding="utf-8")  # a BOM, as Notepad writes
    ok_json(
        "label", "auto", seed_and_pool["seed"], seed_and_pool["pool"], "--base", tiny_base,
        "--labels", listed, "--out", tmp_path / "o2.csv", "--review", tmp_path / "r2.csv",
    )  # fmt: skip
    commas = tmp_path / "labels,v2.txt"  # a file is read as one, even with a comma in its name
    commas.write_text("refund\nlost_card\npassword\n")
    ok_json(
        "label", "auto", seed_and_pool["seed"], seed_and_pool["pool"], "--base", tiny_base,
        "--labels", commas, "--out", tmp_path / "o3.csv", "--review", tmp_path / "r3.csv",
    )  # fmt: skip
    for value, message in (
        ("nosuch.txt", "no such file"),
        ("refund,", "needs at least 2 labels"),
    ):
        code, output = invoke(
            "label", "auto", seed_and_pool["seed"], seed_and_pool["pool"], "--labels", value
        )
        assert code == 2 and message in output, output


def test_one_row_per_class_is_a_clear_error_for_auto_and_enough_for_issues(tiny_base, home, tmp_path):
    # Enough rows (5) and classes for the other checks: only the cross-validation cannot work.
    rows = [(f"{words[0]} {words[1]}", y) for y, words in INTENTS.items()]
    rows += [("where is my parcel", "delivery"), ("change my address", "address")]
    one_each = write_csv(tmp_path / "one.csv", rows)
    pool = write_csv(tmp_path / "pool.csv", [(t,) for t, _ in make_rows(3, seed=2)], header=("text",))
    code, output = invoke("label", "auto", one_each, pool, "--base", tiny_base)
    assert code == 2 and "cross-validation needs a class with 2 or more labelled rows" in output
    assert "Traceback" not in output
    # Two rows of one class and one of another: the fold without the single row still answers.
    small = write_csv(
        tmp_path / "small.csv",
        [("refund money", "refund"), ("money back", "refund"), ("lost card", "lost_card")],
    )
    report = ok_json("label", "issues", small, "--base", tiny_base, "--report", tmp_path / "i.csv")
    assert report["rows"] == 3


def test_suggested_tasks_carry_every_column_as_written(tiny_base, home, tmp_path):
    pool = tmp_path / "pool.parquet"
    frame = pd.DataFrame({"text": [t for t, _ in make_rows(3, seed=2)]})
    frame["received"] = pd.date_range("2024-01-01", periods=len(frame), freq="h")  # not JSON by itself
    frame["count"] = pd.array([1, None] * (len(frame) // 2) + [1] * (len(frame) % 2), dtype="Int64")  # pd.NA
    frame.to_parquet(pool)
    ok_json("label", "suggest", pool, "--budget", "2", "--base", tiny_base, "--out", tmp_path / "t.json")
    tasks = json.loads((tmp_path / "t.json").read_text())
    assert all(t["data"]["received"].startswith("2024-01-01T") for t in tasks)
    assert {t["data"]["count"] for t in tasks} <= {1, None}
    csv_pool = write_csv(
        tmp_path / "pool.csv",
        [(f"q{i}", t, "007", "true") for i, t in enumerate(frame["text"])],
        header=("id", "text", "zip", "flag"),
    )
    picked = ok_json(
        "label", "suggest", csv_pool, "--budget", "2", "--base", tiny_base, "--out", tmp_path / "c.json"
    )
    data = [t["data"] for t in json.loads((tmp_path / "c.json").read_text())]
    assert [(d["zip"], d["flag"]) for d in data] == [("007", "true")] * 2
    assert not any("JSON-MIN" in note for note in picked["notes"])
    # Columns that Label Studio's JSON-MIN export overwrites with its own keys are named.
    clashing = write_csv(
        tmp_path / "clash.csv",
        [(f"q{i}", t, "2024-05-01", "ann") for i, t in enumerate(frame["text"])],
        header=("id", "text", "created_at", "annotator"),
    )
    picked = ok_json(
        "label", "suggest", clashing, "--budget", "2", "--base", tiny_base, "--out", tmp_path / "m.json"
    )
    assert picked["notes"] == [
        "column(s) ['annotator', 'created_at'] share names with Label Studio's JSON-MIN keys and come "
        "back only from its JSON export (export as JSON, not JSON-MIN)",
        "no Label Studio label config written: the label set is unknown without labelled rows "
        "(pass --labels, a list or a file of labels)",
    ]


# ------------------------------------------------------------------ suggest and Label Studio
def test_suggest_never_returns_labelled_rows_or_duplicates(tiny_base, home, tmp_path):
    labelled_rows = make_rows(5, seed=1)
    seed = write_csv(
        tmp_path / "seed.csv",
        [(f"l{i}", t, y) for i, (t, y) in enumerate(labelled_rows)],
        header=("id", "text", "label"),
    )
    fresh = [t for t, _ in make_rows(20, seed=9)]
    pool_rows = [(f"p{i}", t) for i, t in enumerate(fresh)]
    pool_rows += [(f"d{i}", t) for i, t in enumerate(fresh[:10])]  # exact duplicates inside the pool
    pool_rows += [(f"c{i}", t.upper()) for i, (t, _) in enumerate(labelled_rows)]  # copies of labelled
    pool_rows += [("l0", "some new text about my card")]  # id of a labelled row
    pool = write_csv(tmp_path / "pool.csv", pool_rows, header=("id", "text"))
    for strategy in ("margin", "entropy", "kcenter", "hybrid", "random"):
        out = tmp_path / f"{strategy}.json"
        summary = ok_json(
            "label",
            "suggest",
            pool,
            "--budget",
            "40",
            "--strategy",
            strategy,
            "--labelled",
            seed,
            "--base",
            tiny_base,
            "--out",
            out,
        )
        ids = [r["id"] for r in summary["rows"]]
        texts = [r["text"].casefold() for r in summary["rows"]]
        assert len(ids) == len(set(ids)) and len(texts) == len(set(texts))
        assert not any(i.startswith("c") or i == "l0" for i in ids)
        assert summary["excluded_already_labelled"] == 16
        tasks = json.loads(out.read_text())
        assert [t["data"]["frugalml_id"] for t in tasks] == ids
        assert all(t["predictions"][0]["result"][0]["value"]["choices"][0] in INTENTS for t in tasks)
    assert 'Choice value="refund"' in (tmp_path / "random.label_config.xml").read_text()


def test_suggest_with_a_named_label_column_and_a_pool_without_ids(tiny_base, home, tmp_path):
    # --label-column names the labelled file's column, not the pool's; and the pool's row numbers
    # are not ids, so pool rows 0 to 4 are not "already labelled" by the labelled ids 0 to 4.
    labelled_rows = [(str(i), t, y) for i, (t, y) in enumerate(make_rows(5, seed=1))]
    labelled = write_csv(tmp_path / "seed.csv", labelled_rows, header=("id", "text", "intent"))
    pool = write_csv(tmp_path / "pool.csv", [(f"a new question {i}",) for i in range(8)], header=("text",))
    summary = ok_json(
        "label",
        "suggest",
        pool,
        "--budget",
        "8",
        "--labelled",
        labelled,
        "--label-column",
        "intent",
        "--base",
        tiny_base,
        "--out",
        tmp_path / "t.json",
    )
    assert summary["excluded_already_labelled"] == 0 and summary["suggested"] >= 1
    assert all(r["predicted_label"] in INTENTS for r in summary["rows"])


def test_suggest_without_labels_uses_diversity_and_refuses_uncertainty(tiny_base, home, tmp_path):
    pool = write_csv(tmp_path / "pool.csv", [(t,) for t, _ in make_rows(10, seed=4)], header=("text",))
    for strategy in ("kcenter", "hybrid", "random"):
        summary = ok_json(
            "label",
            "suggest",
            pool,
            "--budget",
            "5",
            "--strategy",
            strategy,
            "--base",
            tiny_base,
            "--out",
            tmp_path / "t.json",
        )
        assert summary["suggested"] == 5 and summary["label_config"] is None
        assert summary["notes"] == [  # the docs promise a config: say why there is none
            "no Label Studio label config written: the label set is unknown without labelled rows "
            "(pass --labels, a list or a file of labels)"
        ]
    # A budget over what the pool holds: fewer rows, and the summary says why. Only exact copies
    # reach a similarity of 0.9999, so the pool's distinct texts are all suggested.
    distinct = sorted({t for t, _ in make_rows(10, seed=4)})
    copies = distinct[:3]
    pool = write_csv(tmp_path / "pool.csv", [(t,) for t in distinct + copies], header=("text",))
    asked = ("label", "suggest", pool, "--budget", "500", "--base", tiny_base, "--labels", "a,b")
    summary = ok_json(*asked, "--dup-threshold", "0.9999")
    assert summary["suggested"] == len(distinct)
    assert summary["notes"] == [
        f"suggested {len(distinct)} of the 500 rows asked: the pool has {len(distinct) + 3} rows not "
        "labelled yet, and 3 of them are near-duplicates (similarity >= 0.9999) of a row picked or labelled"
    ]
    pool = write_csv(tmp_path / "pool.csv", [(t,) for t in distinct], header=("text",))
    summary = ok_json(*asked, "--dup-threshold", "0.9999")
    assert summary["notes"] == [
        f"suggested {len(distinct)} of the 500 rows asked: the pool has {len(distinct)} rows not labelled yet"
    ]
    for strategy in ("margin", "entropy"):
        code, output = invoke(
            "label", "suggest", pool, "--budget", "5", "--strategy", strategy, "--base", tiny_base
        )
        assert code == 2 and "needs labelled rows" in output


def test_suggest_learns_from_the_labels_a_pool_has_and_never_suggests_them(tiny_base, home, tmp_path):
    rows = [(f"p{i}", t, y if i % 2 == 0 else "") for i, (t, y) in enumerate(make_rows(8, seed=6))]
    pool = write_csv(tmp_path / "pool.csv", rows, header=("id", "text", "label"))
    summary = ok_json(
        "label", "suggest", pool, "--budget", "6", "--strategy", "margin", "--base", tiny_base,
        "--out", tmp_path / "t.json",
    )  # fmt: skip
    assert summary["labelled_in_pool"] == 12 and 1 <= summary["suggested"] <= 6
    assert all(int(r["id"][1:]) % 2 == 1 and r["predicted_label"] in INTENTS for r in summary["rows"])

    # One labelled row trains no model, but a cold-start strategy still runs and skips that row.
    one = write_csv(
        tmp_path / "one.csv",
        [(i, t, y if i == "p0" else "") for i, t, y in rows],
        header=("id", "text", "label"),
    )
    cold = ok_json(
        "label",
        "suggest",
        one,
        "--budget",
        "3",
        "--strategy",
        "kcenter",
        "--base",
        tiny_base,
        "--out",
        tmp_path / "c.json",
    )
    assert cold["labelled_in_pool"] == 1 and "p0" not in [r["id"] for r in cold["rows"]]

    done = write_csv(
        tmp_path / "done.csv", [(i, t, y or "refund") for i, t, y in rows], header=("id", "text", "label")
    )
    code, output = invoke("label", "suggest", done, "--budget", "2", "--base", tiny_base)
    assert code == 2 and "every row already has a label" in output


TRICKY = Dataset(
    texts=['comma, "quotes" and\nnewline', "ünïcödé ✓ 日本", "  padded  ", "plain"],
    labels=["refund", "lost_card", "refund", "password"],
    ids=["007", "a,b", "x-1", "42"],
    extra={"priority": [1, 2, 3, 4], "channel": ["email", None, "chat", "phone"]},  # not A-Z
)


def test_label_studio_round_trip_is_lossless(tmp_path):
    path = labelstudio.write_tasks(labelstudio.to_tasks(TRICKY), tmp_path / "tasks.json")
    back, skipped = labelstudio.read_export(path)
    assert skipped == 0
    assert (back.ids, back.texts, back.labels, back.extra) == (
        TRICKY.ids,
        TRICKY.texts,
        TRICKY.labels,
        TRICKY.extra,
    )
    assert list(back.extra) == list(TRICKY.extra)  # the columns in their order, not sorted


def test_import_reads_a_label_studio_export_of_suggested_tasks(tmp_path):
    unlabelled = Dataset(texts=TRICKY.texts, labels=None, ids=TRICKY.ids)
    guesses = [("refund", 0.5)] * 4
    tasks = labelstudio.to_tasks(unlabelled, guesses)
    # What Label Studio adds on export: its own ids, annotation metadata, cancelled and repeated work.
    for number, (task, label) in enumerate(zip(tasks, TRICKY.labels, strict=True)):
        task["id"] = 100 + number
        task["annotations"] = [
            {
                "id": 1,
                "was_cancelled": True,
                "created_at": "2026-01-02",
                "result": [labelstudio._choice("password")],
            },
            {
                "id": 2,
                "completed_by": 7,
                "created_at": "2026-01-01",
                "result": [labelstudio._choice("lost_card")],
            },
            {"id": 3, "completed_by": 7, "created_at": "2026-01-03", "result": [labelstudio._choice(label)]},
        ]
    tasks.append({"id": 999, "data": {"text": "never labelled", "frugalml_id": "n1"}, "annotations": []})
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    out = tmp_path / "imported.csv"
    summary = ok_json("label", "import", export, "--out", out)
    assert summary["rows"] == 4 and summary["skipped_unannotated"] == 1
    back = load_dataset(out, id_column="id")
    assert back.texts == TRICKY.texts and back.labels == TRICKY.labels
    assert back.ids == TRICKY.ids
    out_jsonl = tmp_path / "imported.jsonl"
    ok_json("label", "import", export, "--out", out_jsonl)
    rows = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    assert [r["id"] for r in rows] == TRICKY.ids


def test_import_reads_json_min_and_refuses_bad_exports(tmp_path):
    minimal = [
        {"id": 5, "text": "refund money back", "label": "refund", "annotator": 1, "lead_time": 3.2},
        {"id": 6, "text": "card lost", "label": {"choices": ["lost_card"]}, "annotation_id": 2},
    ]
    path = tmp_path / "min.json"
    path.write_text(json.dumps(minimal))
    back, _ = labelstudio.read_export(path)
    assert (back.ids, back.labels, back.extra) == (["5", "6"], ["refund", "lost_card"], {})

    code, output = invoke("label", "import", path, "--labels", "refund,password")
    assert code == 2 and "'lost_card'" in output
    path.write_text(json.dumps([*minimal, dict(minimal[0])]))
    code, output = invoke("label", "import", path)
    assert code == 2 and "duplicate task id" in output
    path.write_text("{not json")
    code, output = invoke("label", "import", path)
    assert code == 2 and "not a Label Studio JSON export" in output
    path.write_text(
        json.dumps(
            [
                {
                    "data": {"text": "x"},
                    "annotations": [
                        {"result": [labelstudio._choice("a") | {"value": {"choices": ["a", "b"]}}]}
                    ],
                }
            ]
        )
    )
    code, output = invoke("label", "import", path)
    assert code == 2 and "exactly one choice" in output
    answer = {"result": [labelstudio._choice("refund")]}
    # Task data may carry its own "id" and "label": kept beside the task's id and the annotation.
    path.write_text(
        json.dumps([{"id": 9, "data": {"text": "hi", "id": "u1", "label": "old"}, "annotations": [answer]}])
    )
    out = tmp_path / "imported.csv"
    assert invoke("label", "import", path, "--out", out)[0] == 0
    frame = load_dataset(out).to_frame()
    assert frame[["id", "label", "original_id", "original_label"]].values.tolist() == [
        ["9", "refund", "u1", "old"]
    ]
    for misshapen in (
        {"data": "just text", "annotations": [answer]},
        {"data": {"text": "x"}, "annotations": ["refund"]},
        {"data": {"text": "x"}, "annotations": {"result": []}},
        {"data": {"text": "x"}, "annotations": [{"result": ["refund"]}]},
        {"data": {"text": "x"}, "annotations": [{"result": [labelstudio._choice("a") | {"value": None}]}]},
    ):
        path.write_text(json.dumps([misshapen]))
        code, output = invoke("label", "import", path)
        assert code == 2 and "task 0 is not shaped like a Label Studio task" in output, misshapen


# ------------------------------------------------------------------ issues and augment
def test_issues_names_flagged_rows_by_id_with_given_and_suggested_labels(tiny_base, home, tmp_path):
    rows = make_rows(40, seed=11)
    flipped = {3: "password", 17: "refund", 29: "lost_card", 44: "password", 58: "refund", 71: "lost_card"}
    noisy = []
    for i, (text, label) in enumerate(rows):
        wrong = flipped.get(i)
        noisy.append((f"r{i}", text, wrong if wrong and wrong != label else label))
    truly_flipped = {f"r{i}" for i in flipped if noisy[i][2] != rows[i][1]}
    data = write_csv(tmp_path / "data.csv", noisy, header=("id", "text", "label"))
    report = tmp_path / "issues.html"
    found = ok_json("label", "issues", data, "--base", tiny_base, "--report", report)
    assert found["rows"] == 120
    flagged = {r["id"]: r for r in found["issues"]}
    assert len(truly_flipped & set(flagged)) >= len(truly_flipped) - 1
    for row_id in truly_flipped & set(flagged):
        index = int(row_id[1:])
        assert flagged[row_id]["given_label"] == noisy[index][2]
        assert flagged[row_id]["suggested_label"] == rows[index][1]
    scores = [r["score"] for r in found["issues"]]
    assert scores == sorted(scores)
    assert "<table" in report.read_text() and "label_error" in report.read_text()


def test_folds_beyond_what_the_rows_allow_are_reported_and_below_two_refused(
    tiny_base, seed_and_pool, home, tmp_path
):
    data = write_csv(tmp_path / "data.csv", make_rows(6, seed=12))  # 6 rows per label
    found = ok_json("label", "issues", data, "--base", tiny_base, "--folds", "10")
    assert found["folds"] == 6 and found["notes"] == [
        "cross-validation used 6 folds, not 10: the labelled rows allow no more"
    ]
    assert ok_json("label", "issues", data, "--base", tiny_base, "--folds", "3")["notes"] == []
    code, output = invoke("label", "issues", data, "--base", tiny_base, "--folds", "20")
    assert code == 0 and "note: cross-validation used 6 folds, not 20" in output
    code, output = invoke("label", "issues", data, "--base", tiny_base, "--report", tmp_path / "issues.txt")
    assert code == 2 and "issues.txt: write .csv, .jsonl, .parquet or .html" in output  # .html included

    out, review = tmp_path / "out.csv", tmp_path / "review.csv"
    summary = auto_json(seed_and_pool["seed"], seed_and_pool["pool"], tiny_base, out, review, "--folds", "40")
    assert summary["folds"] == 12 and "used 12 folds, not 40" in summary["notes"][0]
    for command in (("issues", data), ("auto", seed_and_pool["seed"], seed_and_pool["pool"])):
        code, output = invoke("label", *command, "--base", tiny_base, "--folds", "1")
        assert code == 2 and "folds must be 2 or more, got 1" in output and "Traceback" not in output


def test_issues_without_an_id_column_uses_row_indices(tiny_base, home, tmp_path):
    rows = make_rows(20, seed=12)
    rows[5] = (rows[5][0], "password" if rows[5][1] != "password" else "refund")
    rows.append((rows[0][0], "password" if rows[0][1] != "password" else "refund"))  # conflicting copy
    data = write_csv(tmp_path / "data.csv", rows)
    found = ok_json(
        "label",
        "issues",
        data,
        "--base",
        tiny_base,
        "--report",
        tmp_path / "r.csv",
        "--dup-threshold",
        "0.99999",
    )
    assert all(isinstance(r["id"], int) for r in found["issues"])
    assert {(d["id"], d["other_id"]) for d in found["near_duplicates"]} == {(0, 60)}
    assert (tmp_path / "r.csv").read_text().startswith("kind,id,text")


def test_augment_caps_and_marks_synthetic_rows(home, tmp_path):
    data = write_csv(tmp_path / "data.csv", make_rows(5, seed=1))
    out = tmp_path / "aug.csv"
    summary = ok_json("label", "augment", data, "--out", out, "--per-row", "2")
    frame = load_dataset(out).to_frame()
    frame["synthetic"] = frame["synthetic"] == "True"  # CSV cells come back as written
    synthetic = frame[frame["synthetic"]]
    assert summary["synthetic"] == len(synthetic) <= 30 and summary["original"] == 15
    assert synthetic.groupby("origin_id").size().max() <= 2
    original = frame[~frame["synthetic"]].set_index("id")
    assert all(original.loc[str(r.origin_id), "label"] == r.label for r in synthetic.itertuples())
    assert not set(synthetic["text"]) & set(original["text"])


# ------------------------------------------------------------------ pipeline
def test_pipeline_labels_the_pool_then_tunes_on_the_result(tiny_base, seed_and_pool, home, tmp_path):
    spec = tmp_path / "pipe.yaml"
    spec.write_text(
        f"""
name: label-then-tune
steps:
  - id: label
    label_auto: {{labelled: {seed_and_pool["seed"]}, unlabelled: {seed_and_pool["pool"]},
                 base: {tiny_base}, target_precision: 0.9, rounds: 1}}
  - id: issues
    label_issues: {{data: "${{label.data}}", base: {tiny_base}}}
  - id: tune
    tune: {{train: "${{label.data}}", base: {tiny_base}, method: head}}
"""
    )
    first = run_pipeline(spec)
    label = first.outputs("label")
    assert Path(label["data"]).is_file() and label["accepted"] + label["review"] == 90
    assert Path(first.outputs("issues")["report"]).is_file()
    assert first.outputs("tune")["bundle_id"]
    second = run_pipeline(spec)
    assert [s.cached for s in second.steps] == [True, True, True]


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    return {
        "train": write_csv(tmp_path / "train.csv", make_rows(10, seed=1)),
        "pool": write_csv(tmp_path / "pool.csv", [(t,) for t, _ in make_rows(10, seed=3)], ("text",)),
    }


def run_steps(tmp_path: Path, steps: str):
    spec = tmp_path / "p.yaml"
    spec.write_text("steps:\n" + steps)
    return run_pipeline(spec)


@pytest.mark.parametrize(
    "step",
    [
        "label_issues: {data: train.csv, report: train.csv, base: BASE}",
        "label_augment: {data: train.csv, out: train.csv}",
        "label_auto: {labelled: train.csv, unlabelled: pool.csv, out: pool.csv, base: BASE}",
        "label_auto: {labelled: train.csv, unlabelled: pool.csv, out: a.csv, review: a.csv, base: BASE}",
        "label_suggest: {pool: pool.csv, budget: 2, strategy: kcenter, out: pool.csv, base: BASE}",
        "label_import: {data: train.csv, out: train.csv}",
    ],
)
def test_a_label_step_never_writes_over_an_input_or_another_output(tiny_base, files, home, tmp_path, step):
    before = files["train"].read_bytes(), files["pool"].read_bytes()
    with pytest.raises(FrugalError, match="would overwrite an input or another output"):
        run_steps(tmp_path, f"  - id: s\n    {step.replace('BASE', str(tiny_base))}\n")
    assert (files["train"].read_bytes(), files["pool"].read_bytes()) == before


@pytest.mark.parametrize("operations", ["'swap,typo'", "' swap , typo '", "[swap, typo]"])
def test_label_augment_takes_operations_as_a_comma_separated_string_or_a_list(
    files, home, tmp_path, operations
):
    result = run_steps(
        tmp_path, f"  - id: a\n    label_augment: {{data: train.csv, operations: {operations}}}\n"
    )
    assert result.outputs("a")["synthetic"] > 0


def test_a_relative_home_hands_later_steps_paths_they_can_open(files, tiny_base, monkeypatch, tmp_path):
    # The default home, ./.frugalml, is relative; the pipeline file sits in another folder.
    monkeypatch.delenv("FRUGALML_HOME", raising=False)
    project = tmp_path / "examples"
    project.mkdir()
    for name in ("train.csv", "pool.csv"):
        (project / name).write_bytes(files[name.removesuffix(".csv")].read_bytes())
    spec = project / "p.yaml"
    spec.write_text(
        "steps:\n  - id: more\n    label_augment: {data: train.csv, per_row: 1}\n"
        f"  - id: check\n    label_issues: {{data: '${{more.data}}', base: '{tiny_base}'}}\n"
    )
    monkeypatch.chdir(tmp_path)  # as `make run` runs examples/quickstart.yaml from the repository
    result = run_pipeline(spec.relative_to(tmp_path))
    first = Path(result.outputs("more")["data"])
    assert first.is_absolute() and first.is_relative_to(tmp_path / ".frugalml")
    assert result.outputs("check")["rows"] == result.outputs("more")["rows"]  # it read that file


def test_a_cached_step_with_a_relative_output_path_runs_again(files, home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    steps = "  - id: more\n    label_augment: {data: train.csv, per_row: 1}\n"
    first = Path(run_steps(tmp_path, steps).outputs("more")["data"])
    # As a run before FRUGALML_HOME was made absolute cached it: relative to the working folder.
    with sqlite3.connect(home / "lineage.sqlite") as db:
        for key, outputs in db.execute("SELECT key, outputs FROM steps").fetchall():
            relative = {**json.loads(outputs), "data": os.path.relpath(first)}
            db.execute("UPDATE steps SET outputs=? WHERE key=?", (json.dumps(relative), key))
    again = run_steps(tmp_path, steps)
    assert not again.steps[0].cached and Path(again.outputs("more")["data"]).is_absolute()
    assert run_steps(tmp_path, steps).steps[0].cached  # its absolute output path is reused


def test_label_augment_refuses_operations_that_are_neither(files, home, tmp_path):
    with pytest.raises(FrugalError, match="a list of names or a comma-separated string"):
        run_steps(tmp_path, "  - id: a\n    label_augment: {data: train.csv, operations: 3}\n")


LABEL_PIPELINE = """\
  - id: label
    label_auto: {{labelled: train.csv, unlabelled: pool.csv, target_precision: 0.999, base: {base}}}
  - id: suggest
    label_suggest: {{pool: "${{label.review_out}}", budget: 2, labels: "refund,lost_card,password",
                    strategy: kcenter, base: {base}}}
  - id: issues
    label_issues: {{data: train.csv, folds: 2, base: {base}}}
  - id: more
    label_augment: {{data: train.csv, per_row: 1}}
"""


def test_a_deleted_review_queue_reruns_label_auto_instead_of_reusing_it(tiny_base, files, home, tmp_path):
    first = run_steps(tmp_path, LABEL_PIPELINE.format(base=tiny_base))
    review = Path(first.outputs("label")["review_out"])
    assert first.outputs("label")["review"] > 0  # the queue has rows for suggest to pick from
    assert all(s.cached for s in run_steps(tmp_path, LABEL_PIPELINE.format(base=tiny_base)).steps)
    review.unlink()
    again = run_steps(tmp_path, LABEL_PIPELINE.format(base=tiny_base))
    assert again.steps[0].cached is False
    assert review.is_file()
    assert again.outputs("suggest")["suggested"] == 2


def test_every_file_a_label_step_writes_is_checked_before_reuse(tiny_base, files, home, tmp_path):
    result = run_steps(tmp_path, LABEL_PIPELINE.format(base=tiny_base))
    for step in result.steps:
        written = {k for k, v in step.outputs.items() if isinstance(v, str) and Path(v).is_file()}
        assert written and written <= set(FILE_OUTPUTS), (step.kind, written - set(FILE_OUTPUTS))
    assert "review" not in FILE_OUTPUTS  # label_auto's review is a count, not a file


def test_a_label_auto_rerun_for_a_new_default_writes_beside_the_files_of_the_old_run(
    tiny_base, files, home, tmp_path, monkeypatch
):
    import dataclasses

    from frugalml.label import steps

    spec = (
        f"  - id: label\n    label_auto: {{labelled: train.csv, unlabelled: pool.csv, base: {tiny_base}}}\n"
    )
    first = run_steps(tmp_path, spec).outputs("label")
    before = Path(first["data"]).read_bytes()

    # As a new frugalml version that changes a default would: the step runs again, into a new folder.
    @dataclasses.dataclass
    class NewDefaults(steps.AutoLabelConfig):
        neighbours: int = 0

    monkeypatch.setattr(steps, "AutoLabelConfig", NewDefaults)
    again = run_steps(tmp_path, spec)
    assert again.steps[0].cached is False and again.outputs("label")["neighbours"] == 0
    assert Path(again.outputs("label")["data"]).parent != Path(first["data"]).parent
    assert Path(first["data"]).read_bytes() == before  # what the older cache entry points to


def test_a_label_set_file_is_read_next_to_the_pipeline_and_its_content_reruns_label_auto(
    tiny_base, files, home, tmp_path, monkeypatch
):
    listed = tmp_path / "labels.txt"
    listed.write_text("refund\nlost_card\npassword\n")
    spec = (
        "  - id: label\n    label_auto: {labelled: train.csv, unlabelled: pool.csv, labels: labels.txt, "
        f"base: {tiny_base}}}\n"
    )
    elsewhere = tmp_path / "elsewhere"  # the working folder holds no labels.txt
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    first = run_steps(tmp_path, spec)
    assert first.outputs("label")["labels_without_seed_rows"] == []
    assert run_steps(tmp_path, spec).steps[0].cached
    listed.write_text("refund\nlost_card\npassword\nclose_account\n")
    again = run_steps(tmp_path, spec)
    assert again.steps[0].cached is False
    assert again.outputs("label")["labels_without_seed_rows"] == ["close_account"]
