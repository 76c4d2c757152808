"""Data-parallel tuning benchmark: MiniLM-L6 LoRA on a BANKING77 subset, 1 worker against 2
torch.distributed (gloo) workers on this machine's cores, same seed and recipe.

    python bench/ddp.py                  # 20 labelled queries per intent, 2 epochs (~10 min on 2 cores)
    python bench/ddp.py --shots 10 --epochs 1

Samples/s counts the training rows fine-tuning processed per second of its optimizer loop (the
per-epoch `seconds` in the run's history: rank 0's, the workers move in lockstep); wall seconds
are the whole call, workers' start included; the machine's 1-minute load average before and after
each row says how much of it other processes took. Accuracy is on the 3,080-query test set. The 1-worker
run uses every core in one process; each of the 2 workers gets half of them.
Writes bench/results/ddp.json and prints a table.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import pandas as pd
from _common import DATA, HOME, RESULTS, use_banking77, write_results

RESULT = RESULTS / "ddp.json"


def run(train, test, workers: int, epochs: int) -> dict:
    import torch

    from frugalml.runtime.torch_predictor import TorchPredictor
    from frugalml.tune import TuneCompute, TuneConfig, tune

    config = TuneConfig(method="lora", epochs=epochs, patience=epochs, seed=0)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    result = tune(train, config, compute=TuneCompute(workers=workers, device="cpu"))
    wall = time.perf_counter() - started
    epochs_done = result.history[1:]
    fit_rows = round(len(train) * (1 - config.val_fraction))
    seconds = sum(epoch["seconds"] for epoch in epochs_done)
    probabilities = TorchPredictor(result.model, result.tokenizer, result.labels).predict_proba(test.texts)
    accuracy = float(np.mean(np.array(result.labels)[probabilities.argmax(1)] == np.array(test.labels)))
    return {
        "workers": workers,
        "threads_per_worker": max(1, len(os.sched_getaffinity(0)) // workers),
        "torch_threads_here": torch.get_num_threads(),
        "epochs": len(epochs_done),
        "train_rows": fit_rows,
        "loop_seconds": round(seconds, 1),
        "samples_per_second": round(fit_rows * len(epochs_done) / seconds, 1),
        "wall_seconds": round(wall, 1),
        "val_accuracy": result.val_accuracy,
        "accuracy": accuracy,
        "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],  # others' work too
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shots", type=int, default=20, help="labelled queries per intent")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    if not use_banking77():
        return
    from frugalml.data import load_dataset

    sample = (
        pd.read_csv(DATA / "train.csv")
        .groupby("category", group_keys=False)
        .sample(n=args.shots, random_state=0)
        .sample(frac=1, random_state=0)
    )
    path = HOME / "data" / f"banking77_{args.shots}shot_seed0.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    sample.to_csv(path, index=False)
    train, test = load_dataset(path), load_dataset(DATA / "test.csv")
    rows = []
    for workers in (1, 2):
        print(f"{workers} worker(s) ...", flush=True)
        rows.append(run(train, test, workers, args.epochs))
        print(rows[-1], flush=True)
    base = rows[0]
    for row in rows:
        row["speedup"] = round(row["samples_per_second"] / base["samples_per_second"], 2)
        row["accuracy_change_points"] = round(100 * (row["accuracy"] - base["accuracy"]), 2)
    document = {
        "benchmark": "MiniLM-L6 LoRA on BANKING77, 1 vs 2 data-parallel workers (gloo)",
        "train": f"{args.shots} per intent ({len(train)} rows), test: {len(test)} rows",
        "machine": {"cpus": len(os.sched_getaffinity(0)), "platform": platform.platform()},
        "rows": rows,
    }
    write_results(RESULT, document)
    print_table(document)


def print_table(document: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{document['benchmark']}; train {document['train']}")
    columns = ["workers", "threads/worker", "samples/s", "speed-up", "loop s", "wall s", "accuracy %"]
    for column in columns:
        table.add_column(column, justify="right")
    for row in document["rows"]:
        table.add_row(
            str(row["workers"]),
            str(row["threads_per_worker"]),
            f"{row['samples_per_second']:.1f}",
            f"{row['speedup']:.2f}x",
            f"{row['loop_seconds']:.0f}",
            f"{row['wall_seconds']:.0f}",
            f"{100 * row['accuracy']:.2f}",
        )
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
