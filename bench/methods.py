"""Every tuning method, plain and robust, on BANKING77: accuracy clean and under noise, cost.

For each (method, recipe, data, draw): MiniLM tuned with the CLI's defaults through the same
library call as `frugalml tune`, scored on the 3,080-row test set clean, under `--perturb
typos:0.1` (the project's noise, seed 0) and under a noise model that is not the project's
(nlpaug's KeyboardAug, when installed: `pip install 'frugalml[bench]'`), with trainable
parameters, adapter bytes, train wall time and peak RSS. `head` is the frozen-embedding logistic
regression every other row is compared with.

Recipes: plain; fgm (`--adversarial fgm`); augment (rows from `label augment --operations typo
--per-row 2`); noise2 / noise4 (`--noise typos:0.1 --noise-copies 2|4`); noise2-fgm; noise2-r32
(LoRA rank 32, alpha 32); fresh50 / fresh100 (`--noise typos:0.1 --noise-share 0.5|1`); robust (`--robust`,
whatever it currently means).

    python bench/methods.py --per-intent 10 --draws 1                  # every method, plain
    python bench/methods.py --methods lora --recipes plain,augment,noise2,noise4,robust
    python bench/methods.py --per-intent 0 --methods head,lora         # all 10,003 rows

Each run is its own process (peak RSS is that run's); every finished run is merged into
bench/results/methods.json at once, so an interrupted bench keeps what it measured, and a run
already there is not repeated (--force reruns). Prints a table of the means over draws.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import DATA, HOME, RESULTS, write_results

RESULT = RESULTS / "methods.json"
METHODS = ("head", "lora", "ia3", "full", "prompt", "prefix", "adapter")
PERTURB = "typos:0.1"
RECIPES: dict[str, dict] = {  # TuneConfig settings on top of the method's defaults
    "plain": {},
    "fgm": {"adversarial": "fgm"},
    "augment": {},  # the training file is `label augment --operations typo --per-row 2`'s output
    "noise2": {"noise": PERTURB, "noise_copies": 2},
    "noise4": {"noise": PERTURB, "noise_copies": 4},
    "noise2-fgm": {"noise": PERTURB, "noise_copies": 2, "adversarial": "fgm"},
    "noise2-r32": {"noise": PERTURB, "noise_copies": 2, "lora_r": 32, "lora_alpha": 32},
    "fresh50": {"noise": PERTURB, "noise_share": 0.5},  # fresh noise on half the rows each epoch
    "fresh100": {"noise": PERTURB, "noise_share": 1.0},
    "robust": {"robust": True},
}


def train_file(shots: int, draw: int, recipe: str) -> Path:
    from banking77 import few_shot_file

    source = DATA / "train.csv" if shots == 0 else few_shot_file(shots, draw)
    if recipe != "augment":
        return source
    from frugalml.label.config import AugmentConfig
    from frugalml.label.workflow.augment import augment_files

    out = HOME / "data" / f"{source.stem}_typo2.csv"
    if not out.exists():
        augment_files(source, out=out, config=AugmentConfig(per_row=2, operations=("typo",), seed=draw))
    return out


def independent_noise_file() -> Path | None:
    """The test set under nlpaug's KeyboardAug (seeded), written once; None without nlpaug."""
    out = HOME / "data" / "banking77_test_nlpaug_keyboard.csv"
    if out.exists():
        return out
    try:
        import nlpaug.augmenter.char as nac
        import nlpaug.util
    except ImportError:
        return None
    nlpaug.util.Randomness.seed(0)
    # About one word in three gets one or two keyboard-neighbour substitutions (nlpaug's own
    # keyboard distances); no digits or symbols.
    augmenter = nac.KeyboardAug(
        aug_char_p=0.1, aug_word_p=0.3, include_special_char=False, include_numeric=False
    )
    test = pd.read_csv(DATA / "test.csv")
    test["text"] = [augmenter.augment(t)[0] for t in test["text"]]
    out.parent.mkdir(parents=True, exist_ok=True)
    test.to_csv(out, index=False)
    return out


def run_one(method: str, recipe: str, shots: int, draw: int, epochs: int | None) -> dict:
    """One tuning run and its three scores, in this process."""
    os.environ["FRUGALML_HOME"] = str(HOME)
    from frugalml.evaluate import EvalConfig
    from frugalml.evaluate.workflow import evaluate_bundle
    from frugalml.tune import TuneConfig
    from frugalml.tune.workflow import tune_and_register

    data = "full" if shots == 0 else f"{shots}shot"
    summary = tune_and_register(
        train_file(shots, draw, recipe),
        TuneConfig(method=method, seed=draw, epochs=epochs, **RECIPES[recipe]),
        eval_path=DATA / "test.csv",
        name=f"banking77-{method}-{recipe}-{data}",
    )
    _, report = evaluate_bundle(
        summary.bundle_id, DATA / "test.csv", config=EvalConfig(perturb=PERTURB, perturb_seed=0)
    )
    assert report.perturbed is not None
    row = {
        "method": method,
        "recipe": recipe,
        "shots": shots,
        "draw": draw,
        "epochs": epochs,  # None: the recipe's own, by data size with early stopping
        "accuracy": report.accuracy,
        "typos_accuracy": report.perturbed.accuracy,
        "summary": summary.to_json(),
    }
    other = independent_noise_file()
    if other is not None:
        _, noisy = evaluate_bundle(summary.bundle_id, other)
        row["nlpaug_accuracy"] = noisy.accuracy
    return row


def spawn(method: str, recipe: str, shots: int, draw: int, epochs: int | None) -> dict:
    command = [sys.executable, __file__, "--child", method, recipe, str(shots), str(draw)]
    command += ["--epochs", str(epochs)] if epochs is not None else []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"run {method}/{recipe}/{shots}/{draw} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def load_runs() -> dict[tuple, dict]:
    runs = json.loads(RESULT.read_text())["runs"] if RESULT.exists() else []
    return {(r["method"], r["recipe"], r["shots"], r["draw"], r.get("epochs")): r for r in runs}


def save(runs: dict[tuple, dict]) -> list[dict]:
    table = summarize(list(runs.values()))
    write_results(
        RESULT,
        {
            "benchmark": "methods",
            "base": "minilm (all-MiniLM-L6-v2)",
            "test": "BANKING77 test set, 3,080 rows",
            "perturb": f"{PERTURB}, seed 0; nlpaug: KeyboardAug(aug_char_p=0.1, aug_word_p=0.3), seed 0",
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "load_average_at_save": os.getloadavg(),
            },
            "table": table,
            "runs": sorted(runs.values(), key=lambda r: (r["shots"], r["method"], r["recipe"], r["draw"])),
        },
    )
    return table


def summarize(runs: list[dict]) -> list[dict]:
    """Means over draws per (data, method, recipe); ratios against full fine-tuning's plain row."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["shots"], r["method"], r["recipe"], r.get("epochs")), []).append(r)
    rows = []
    for (shots, method, recipe, epochs), group in groups.items():

        def mean(key: str, group=group) -> float | None:
            values = [g[key] if key in g else g["summary"].get(key) for g in group]
            return float(np.mean(values)) if all(v is not None for v in values) else None

        rows.append(
            {
                "data": "full" if shots == 0 else f"{shots} per intent",
                "method": method,
                "recipe": recipe,
                "draws": len(group),
                "epochs": epochs,
                "epochs_run": mean("epochs_run"),
                "accuracy": mean("accuracy"),
                "accuracy_std": float(np.std([g["accuracy"] for g in group])),
                "typos_accuracy": mean("typos_accuracy"),
                "nlpaug_accuracy": mean("nlpaug_accuracy"),
                "trainable_params": group[0]["summary"]["trainable_params"],
                "trainable_percent": 100
                * group[0]["summary"]["trainable_params"]
                / group[0]["summary"]["total_params"],
                "adapter_bytes": group[0]["summary"]["adapter_bytes"],
                "train_seconds": mean("train_seconds"),
                "peak_rss_mb": mean("peak_rss_mb"),
            }
        )
    for row in rows:
        full = next(
            (
                r
                for r in rows
                if r["data"] == row["data"] and r["method"] == "full" and r["recipe"] == "plain"
            ),
            None,
        )
        row["vs_full_points"] = None if full is None else 100 * (row["accuracy"] - full["accuracy"])
    order = list(RECIPES)
    return sorted(
        rows,
        key=lambda r: (r["data"], r["epochs"] or 0, METHODS.index(r["method"]), order.index(r["recipe"])),
    )


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"BANKING77 test (3,080), MiniLM-L6; noise: {PERTURB} and nlpaug keyboard")
    columns = ["data", "method", "recipe", "epochs", "draws", "clean %", "vs full", "typos %", "nlpaug %"]
    columns += ["trainable", "% of model", "adapter bytes", "train s", "peak RSS MB"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("data", "method", "recipe") else "right")

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    for r in rows:
        spread = f" ± {100 * r['accuracy_std']:.1f}" if r["draws"] > 1 else ""
        table.add_row(
            r["data"],
            r["method"],
            r["recipe"],
            f"{r['epochs_run']:.0f}" + (f" of {r['epochs']}" if r["epochs"] is not None else " (auto)"),
            str(r["draws"]),
            pct(r["accuracy"]) + spread,
            "-" if r["vs_full_points"] is None else f"{r['vs_full_points']:+.1f}",
            pct(r["typos_accuracy"]),
            pct(r["nlpaug_accuracy"]),
            f"{r['trainable_params']:,}",
            f"{r['trainable_percent']:.2f}",
            f"{r['adapter_bytes']:,}",
            f"{r['train_seconds']:.0f}",
            f"{r['peak_rss_mb']:.0f}",
        )
    Console(width=200).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    parser.add_argument("--recipes", default="plain", help=f"comma-separated, of {', '.join(RECIPES)}")
    parser.add_argument(
        "--per-intent", default="10", help="examples per intent, comma-separated; 0: all rows"
    )
    parser.add_argument("--epochs", type=int, help="maximum epochs (default: the recipe's, by data size)")
    parser.add_argument("--draws", type=int, default=3, help="draws (and seeds) of the few-shot sample")
    parser.add_argument("--force", action="store_true", help="rerun runs already in the results")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, recipe, shots, draw = args.child
        print(json.dumps(run_one(method, recipe, int(shots), int(draw), args.epochs), default=str))
        return
    if not (DATA / "train.csv").exists():
        print(f"skipped: BANKING77 not found at {DATA}")
        return
    unknown = sorted(set(args.methods.split(",")) - set(METHODS)) + sorted(
        set(args.recipes.split(",")) - set(RECIPES)
    )
    if unknown:
        raise SystemExit(f"unknown method or recipe: {', '.join(unknown)}")
    runs = load_runs()
    for per_intent in (int(s) for s in args.per_intent.split(",")):
        for draw in range(1 if per_intent == 0 else args.draws):
            for method in args.methods.split(","):
                for recipe in args.recipes.split(","):
                    key = (method, recipe, per_intent, draw, args.epochs)
                    if recipe != "plain" and method == "head" and RECIPES[recipe].get("adversarial"):
                        continue  # the head trains no encoder to attack
                    if key in runs and not args.force:
                        continue
                    started = time.perf_counter()
                    print(f"running {method} {recipe} per-intent={per_intent} draw={draw} ...", flush=True)
                    runs[key] = spawn(method, recipe, per_intent, draw, args.epochs)
                    r = runs[key]
                    print(
                        f"  clean {r['accuracy']:.4f}  {PERTURB} {r['typos_accuracy']:.4f}  "
                        f"nlpaug {r.get('nlpaug_accuracy', float('nan')):.4f}  "
                        f"({time.perf_counter() - started:.0f} s)",
                        flush=True,
                    )
                    save(runs)
    print_table(save(runs))


if __name__ == "__main__":
    main()
