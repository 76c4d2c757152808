"""How PyTorch's OpenMP threads wait between operations, and what it costs a served MiniLM call.

The serving bench's MiniLM head (`bench/serve.py` prepares it), as `frugalml serve` runs it
(traced, packed), in a fresh process per setting: p50 of one text at a time on 1 and 2 threads
(a lone request on an idle server), and texts/s of one single-threaded call per core side by side in
batches of 32 (a loaded server). Settings: PyTorch's default (spin about 3 ms), passive (sleep at
once) and frugalml's (passive after a short spin, `frugalml.settings.INFERENCE_ENV`). Rounds
round-robin, medians reported.

    flock /tmp/frugalml-cpu.lock .venv/bin/python bench/openmp_wait.py     # about 3 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _common import RESULTS, write_results
from serve import ENV, MAX_BATCH, load_texts, model_bundles, side_by_side

from frugalml.settings import INFERENCE_ENV

RESULT = RESULTS / "openmp_wait.json"
SIDE_BY_SIDE = "texts/s, one call per core side by side"
SETTINGS = {
    "PyTorch default": {},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "frugalml serve": INFERENCE_ENV,
}


def run_worker(bundle_path: str) -> None:
    from frugalml.serve.runner import serving_predictor

    texts = load_texts()
    figures = {}
    for threads in (2, 1):  # the single-threaded predictor last: it also runs side by side
        predictor = serving_predictor(bundle_path, threads=threads)
        predictor.warmup()
        latencies = []
        for text in texts[:300]:
            tick = time.perf_counter()
            predictor.predict_proba([text])
            latencies.append(time.perf_counter() - tick)
        figures[f"lone p50 ms, {threads} thread{'s' * (threads > 1)}"] = statistics.median(latencies) * 1000
    figures[SIDE_BY_SIDE] = side_by_side(predictor, texts, MAX_BATCH)
    print(json.dumps(figures))


def orchestrate(rounds: int) -> None:
    from frugalml import ui

    bundle = model_bundles()["torch"]
    runs: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    for round_ in range(rounds):
        for name, settings in SETTINGS.items():
            env = {k: v for k, v in os.environ.items() if k not in INFERENCE_ENV}
            out = subprocess.run(
                [sys.executable, __file__, "--worker", bundle],
                env={**env, **ENV, **settings},
                capture_output=True,
                text=True,
                check=True,
            )
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {round_ + 1} of {rounds}, {name}: {runs[name][-1]}", flush=True)
    medians = {
        name: {key: round(statistics.median(r[key] for r in rows), 2) for key in rows[0]}
        for name, rows in runs.items()
    }
    serve, passive = medians["frugalml serve"], medians["passive"]
    ratios = {
        f"{key}: passive / frugalml serve": round(passive[key] / serve[key], 2)
        for key in serve
        if key.startswith("lone")
    }
    ratios["texts/s side by side: frugalml serve / passive"] = round(
        serve[SIDE_BY_SIDE] / passive[SIDE_BY_SIDE],
        2,
    )
    rows = [[name, *figures.values()] for name, figures in medians.items()]
    ui.out.print(ui.table("OpenMP waiting: a served MiniLM call (medians)", ["setting", *serve], rows))
    ui.out.print(ui.table("ratios", ["comparison", "value"], list(ratios.items())))
    document = {"settings": SETTINGS, "rounds": rounds, "medians": medians, "ratios": ratios, "runs": runs}
    write_results(RESULT, document)
    print(f"wrote {RESULT}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", metavar="BUNDLE", help="measure in this process (one setting)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker)
    else:
        orchestrate(args.rounds)


if __name__ == "__main__":
    main()
