"""Drift on BANKING77: does the reference a bundle carries tell held-out in-domain traffic from
another domain's?

    python bench/drift.py                  # MiniLM, head method, every training row (a few minutes)
    python bench/drift.py --method lora    # another tuning method

Tunes MiniLM on the BANKING77 training set through `frugalml tune`'s library call (which writes
the bundle's reference.json), then scores windows of texts as the server does (1,000 texts, the
server's window) against that reference:

- in-domain: three disjoint windows of the held-out BANKING77 test set;
- near domain: an online shop's customer-support messages (examples/data, every file);
- other domains: sentences of the CC BY 4.0 licence text (legal), and of the Python standard
  library's docstrings (software documentation);
- a mix: 800 in-domain test texts with 200 documentation sentences.

Also times the server's per-request cost: `DriftWindow.observe` for a one-text request and a
full-window `refresh`. Writes bench/results/drift.json and bench/results/drift.png (reference
against the legal window), and prints a table.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import DATA, HOME, RESULTS, ROOT, write_results

RESULT = RESULTS / "drift.json"
WINDOW = 1000
DOC_MODULES = (
    "json",
    "csv",
    "argparse",
    "logging",
    "subprocess",
    "asyncio",
    "email.message",
    "http.client",
    "unittest",
    "collections",
    "pathlib",
    "shutil",
    "tarfile",
    "zipfile",
    "sqlite3",
    "decimal",
    "statistics",
    "textwrap",
    "difflib",
    "threading",
)


def sentences(text: str) -> list[str]:
    """Sentences and clauses (split at . ; : ! ?) of 3 to 60 words, whitespace collapsed."""
    parts = re.split(r"(?<=[.;:!?])\s+", re.sub(r"\s+|=+", " ", text))
    return [p.strip() for p in parts if 3 <= len(p.split()) <= 60 and re.search(r"[a-zA-Z]", p)]


def docstring_sentences() -> list[str]:
    found: list[str] = []
    for name in DOC_MODULES:
        module = importlib.import_module(name)
        for _, member in [("", module), *inspect.getmembers(module)]:
            if getattr(member, "__module__", name) != name and member is not module:
                continue
            found += sentences(inspect.getdoc(member) or "")
    return list(dict.fromkeys(found))  # each sentence once, in order


def texts_of(path: Path) -> list[str]:
    return pd.read_csv(path)["text"].astype(str).tolist()


def windows(seed: int) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    test = texts_of(DATA / "test.csv")
    order = rng.permutation(len(test))
    shop = [t for f in sorted((ROOT / "examples" / "data").glob("support_*.csv")) for t in texts_of(f)]
    legal = sentences((DATA / "LICENSE").read_text())
    docs = docstring_sentences()
    docs = [docs[i] for i in rng.permutation(len(docs))]
    mix = [test[i] for i in order[2 * WINDOW : 2 * WINDOW + 800]]  # part of window 3
    return {
        "BANKING77 test, window 1 (in-domain)": [test[i] for i in order[:WINDOW]],
        "BANKING77 test, window 2 (in-domain)": [test[i] for i in order[WINDOW : 2 * WINDOW]],
        "BANKING77 test, window 3 (in-domain)": [test[i] for i in order[2 * WINDOW : 3 * WINDOW]],
        "shop support messages (near domain)": shop[:WINDOW],
        "CC BY 4.0 licence sentences (legal)": legal[:WINDOW],
        "Python docstring sentences (software docs)": docs[:WINDOW],
        "80 % in-domain + 20 % docstrings": mix + docs[:200],
    }


def server_cost(reference, probabilities: np.ndarray, texts: list[str]) -> dict[str, float]:
    """What drift adds on the server's event loop: per one-text request, `observe` (always) and the
    access-log line's features (with the access log on, JSON encoding included); per refresh of
    a full window (every scrape, and at most every 10 s between)."""
    from frugalml.monitor.metrics import ServingMetrics
    from frugalml.monitor.window import DriftWindow

    window = DriftWindow(reference, "bench", ServingMetrics(), refresh_s=1e9)
    rows, calls = len(texts), 5000

    def per_call_us(fn) -> float:
        started = time.perf_counter()
        for i in range(calls):
            fn(texts[i % rows : i % rows + 1], probabilities[i % rows : i % rows + 1])
        return round((time.perf_counter() - started) / calls * 1e6, 1)

    observe_us = per_call_us(window.observe)
    log_us = per_call_us(lambda t, p: json.dumps(window.request_features(t, p)))
    started = time.perf_counter()
    for _ in range(20):
        window._stale = True  # the cost of a refresh with a full window, as after new requests
        window.refresh()
    refresh_ms = (time.perf_counter() - started) / 20 * 1e3
    return {"observe_us": observe_us, "access_log_features_us": log_us, "refresh_ms": round(refresh_ms, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="head")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bundle", help="score this tuned bundle instead of tuning one")
    args = parser.parse_args()
    if not (DATA / "train.csv").exists():
        raise SystemExit(f"skipped: {DATA} is absent (shared data)")
    os.environ["FRUGALML_HOME"] = str(HOME)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from frugalml.bundle import load_bundle
    from frugalml.monitor.drift import drift_scores
    from frugalml.monitor.reference import load_reference, reference_of
    from frugalml.monitor.report import DriftReport, plot_drift
    from frugalml.runtime import load_predictor
    from frugalml.tune import TuneConfig
    from frugalml.tune.workflow import tune_and_register

    tune_s = None
    if args.bundle is None:
        started = time.perf_counter()
        summary = tune_and_register(
            DATA / "train.csv",
            TuneConfig(method=args.method, seed=args.seed),
            name=f"banking77-drift-{args.method}",
        )
        tune_s = round(time.perf_counter() - started, 1)
        args.bundle = summary.bundle_path
    bundle = load_bundle(args.bundle)
    reference = load_reference(bundle)
    assert reference is not None
    predictor = load_predictor(bundle)
    started = time.perf_counter()  # what tune spends on the reference (a sample of 2,000 texts)
    reference_of(predictor, texts_of(DATA / "train.csv"), seed=args.seed)
    reference_s = round(time.perf_counter() - started, 1)
    first = windows(args.seed)["BANKING77 test, window 1 (in-domain)"][:200]
    cost = server_cost(reference, predictor.predict_proba(first), first)
    rows, plotted = [], None
    for name, texts in windows(args.seed).items():
        live = reference.features_of(texts, predictor.predict_proba(texts))
        scores = drift_scores(reference.features, live)
        rows.append(
            {
                "window": name,
                "texts": len(texts),
                "psi": {f: round(s.psi, 4) for f, s in scores.items()},
                "ks": {f: round(s.ks, 4) for f, s in scores.items() if s.ks is not None},
                "max_psi": round(max(s.psi for s in scores.values()), 4),
            }
        )
        if "legal" in name:
            plotted = (live, DriftReport(bundle.id, bundle.name, name, len(texts), scores))
    assert plotted is not None
    plot_drift(reference, plotted[0], plotted[1], RESULTS / "drift.png")
    document = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "model": {
            "base": "MiniLM-L6",
            "method": bundle.method,
            "bundle": bundle.id,
            "tune_seconds": tune_s,
            "reference_seconds": reference_s,
        },
        "reference_rows": reference.rows,
        "window": WINDOW,
        "server_cost": cost,
        "windows": rows,
    }
    write_results(RESULT, document)
    features = list(reference.features)
    print(f"reference: {reference.rows} training texts; PSI per feature (KS of confidence)")
    print(f"{'window':<46} {'texts':>5} " + " ".join(f"{f[:13]:>13}" for f in features) + "   KS conf")
    for row in rows:
        cells = " ".join(f"{row['psi'][f]:>13.3f}" for f in features)
        print(f"{row['window']:<46} {row['texts']:>5} {cells}   {row['ks']['confidence']:.3f}")
    print(
        f"server cost: observe {cost['observe_us']} µs and access-log features "
        f"{cost['access_log_features_us']} µs per one-text request, {cost['refresh_ms']} ms per refresh"
    )
    print(f"wrote {RESULT.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
