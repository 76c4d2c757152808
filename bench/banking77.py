"""BANKING77 benchmark: head, LoRA and full tuning of MiniLM, on all 10,003 training rows and on
10 examples per intent, evaluated on the 3,080-row test set.

    python bench/banking77.py                 # every row (about 35 min on 2 cores)
    python bench/banking77.py --only head     # a subset; results merge into the JSON

Each row runs in its own process (so peak RSS is that row's alone) through the same library call
as `frugalml tune`, with the CLI's default recipe. Bundles are registered in bench/.home.
Writes bench/results/banking77.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from _common import DATA, HOME, RESULTS, write_results

RESULT = RESULTS / "banking77.json"
METHODS = ("head", "lora", "full")
ANCHORS = {  # Casanueva et al. 2020, BANKING77 test accuracy (%)
    "USE+ConveRT, full data": 93.36,
    "USE+ConveRT, 10 per intent": 85.19,
    "BERT-large fine-tuned, full data": 93.7,
    "frozen MiniLM + logistic regression, full data (measured here)": 92.9,
    "frozen MiniLM + logistic regression, 10 per intent (measured here)": 84.8,
}


def few_shot_file(shots: int, seed: int) -> Path:
    """A class-balanced sample of the training set, written once per (shots, seed)."""
    path = HOME / "data" / f"banking77_{shots}shot_seed{seed}.csv"
    if not path.exists():
        train = pd.read_csv(DATA / "train.csv")
        sample = train.groupby("category", group_keys=False).sample(n=shots, random_state=seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        sample.sample(frac=1, random_state=seed).to_csv(path, index=False)
    return path


def run_one(method: str, shots: int, seed: int) -> dict:
    """One tuning run in this process; returns its summary."""
    os.environ["FRUGALML_HOME"] = str(HOME)
    from frugalml.tune import TuneConfig
    from frugalml.tune.workflow import tune_and_register

    train = DATA / "train.csv" if shots == 0 else few_shot_file(shots, seed)
    summary = tune_and_register(
        train,
        TuneConfig(method=method, seed=seed),
        eval_path=DATA / "test.csv",
        name=f"banking77-{method}-{'full' if shots == 0 else f'{shots}shot'}",
    )
    return {"method": method, "shots": shots, "seed": seed, **summary.to_json()}


def spawn(method: str, shots: int, seed: int) -> dict:
    command = [sys.executable, __file__, "--child", method, str(shots), str(seed)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise SystemExit(f"run {method}/{shots}/{seed} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def aggregate(runs: list[dict]) -> dict:
    def mean(key: str, inside: str | None = None) -> float:
        return float(np.mean([(r[inside] if inside else r)[key] for r in runs]))

    return {
        "method": runs[0]["method"],
        "data": "full" if runs[0]["shots"] == 0 else f"{runs[0]['shots']} per intent",
        "seeds": len(runs),
        "accuracy": mean("accuracy", "metrics"),
        "accuracy_std": float(np.std([r["metrics"]["accuracy"] for r in runs])),
        "macro_f1": mean("macro_f1", "metrics"),
        "train_seconds": mean("train_seconds"),
        "peak_rss_mb": mean("peak_rss_mb"),
        "trainable_params": runs[0]["trainable_params"],
        "epochs_run": mean("epochs_run"),
        "bundle_ids": [r["bundle_id"] for r in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(METHODS), help="comma-separated methods to run")
    parser.add_argument("--data", default="full,10", help="'full' and/or shots per intent, comma-separated")
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the few-shot rows")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, shots, seed = args.child
        print(json.dumps(run_one(method, int(shots), int(seed)), default=str))
        return
    if not (DATA / "train.csv").exists():
        print(f"skipped: BANKING77 not found at {DATA}")
        return

    previous = json.loads(RESULT.read_text())["rows"] if RESULT.exists() else []
    rows = {(r["method"], r["data"]): r for r in previous}
    for data in args.data.split(","):
        shots = 0 if data == "full" else int(data)
        for method in args.only.split(","):
            seeds = [0] if shots == 0 else list(range(args.seeds))
            print(
                f"running {method} on {'full data' if shots == 0 else f'{shots} per intent'} "
                f"({len(seeds)} seed(s)) ...",
                flush=True,
            )
            row = aggregate([spawn(method, shots, s) for s in seeds])
            rows[(row["method"], row["data"])] = row
            print(f"  accuracy {row['accuracy']:.4f}  train {row['train_seconds']:.0f} s", flush=True)
            ordered = save(rows)  # after every row, so an interrupted run keeps what it measured
    print_table(ordered)


def save(rows: dict) -> list[dict]:
    ordered = sorted(rows.values(), key=lambda r: (r["data"] != "full", METHODS.index(r["method"])))
    write_results(
        RESULT,
        {
            "benchmark": "banking77",
            "base": "minilm (all-MiniLM-L6-v2)",
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "processor": platform.processor() or platform.machine(),
            },
            "anchors_test_accuracy_percent": ANCHORS,
            "rows": ordered,
        },
    )
    return ordered


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="BANKING77 test set (3,080 queries, 77 intents), MiniLM-L6 on 2 CPU cores")
    for column in (
        "method",
        "train data",
        "seeds",
        "accuracy %",
        "macro-F1 %",
        "train time",
        "peak RSS",
        "trainable params",
    ):
        table.add_column(column, justify="left" if column in ("method", "train data") else "right")
    for r in rows:
        spread = f" ± {100 * r['accuracy_std']:.1f}" if r["seeds"] > 1 else ""
        table.add_row(
            r["method"],
            r["data"],
            str(r["seeds"]),
            f"{100 * r['accuracy']:.2f}{spread}",
            f"{100 * r['macro_f1']:.2f}",
            f"{r['train_seconds'] / 60:.1f} min",
            f"{r['peak_rss_mb']:.0f} MB",
            f"{r['trainable_params']:,}",
        )
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
