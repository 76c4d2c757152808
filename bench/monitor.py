"""Alert latency: from an induced fault to the webhook, embedded evaluator against Prometheus +
Alertmanager, side by side on the same server and the same rules; and the embedded evaluator's cost.

Each repetition starts `frugalml serve --fault error:1 --alerts RULES --notify HOOK_A` (evaluating
every second) and a real Prometheus (scrape every second, rule evaluation every 100 ms) +
Alertmanager (no group wait) posting to HOOK_B, sends one request every 100 ms from t0, and records
when each webhook first hears FrugalmlHighErrorRatio (rule `for:` 2 s, window 10 s), counted from
t0 and from the first failing answer (the first the server counts; on a loaded machine a request's
own time can let the scrape after t0 miss it). t0 falls at a random point of Prometheus's scrape
cycle, as a real fault does: starting right after the first scrape would always cost the
Prometheus path a whole scrape interval. Needs Debian's prometheus and prometheus-alertmanager
(`make monitoring-tools`).

    python bench/monitor.py [--repeats 8]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import yaml
from _common import RESULTS, ROOT, write_results
from rich.console import Console

sys.path.insert(0, str(ROOT / "tests"))
from conftest import build_tiny_base
from monitor_support import TOOLS_MISSING, monitoring_stack, webhook_receiver
from test_serve_support import free_port, tiny_intent_bundle, wait_until

from frugalml.monitor.alerting import Evaluator, load_rules
from frugalml.monitor.metrics import ServingMetrics
from frugalml.monitor.rules import Thresholds, rules_document
from frugalml.ui import table

THRESHOLDS = Thresholds(error_ratio=0.5, window_s=10, for_s=2)
INTERVAL_S = 1.0  # Prometheus's scrape and evaluation interval, and the embedded evaluation interval
FAULT = ["--fault", "error:1"]
CLI = [sys.executable, "-c", "import sys; from frugalml.cli import app; app(sys.argv[1:])"]


def tiny_bundle(folder: Path) -> str:
    """The test suite's tiny BERT, head-tuned: the fault makes the model beside the point."""
    return tiny_intent_bundle(build_tiny_base(folder / "base"), folder)


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz").status_code == 200
    except httpx.TransportError:
        return False


def one_run(bundle: str, folder: Path, phase_s: float) -> dict[str, float]:
    """Seconds from t0 to each webhook's first firing alert; t0 comes `phase_s` after the scrape
    that Prometheus was first seen to have made."""
    rules = folder / "rules.yml"
    rules.write_text(yaml.safe_dump(rules_document("shop", THRESHOLDS)))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "FRUGALML_HOME": str(folder / "home"), "HF_HUB_OFFLINE": "1"}
    with (
        webhook_receiver() as (embedded_hook, embedded),
        webhook_receiver() as (prom_hook, through_prometheus),
    ):
        options = ["--alerts", str(rules), "--notify", embedded_hook, "--alert-interval", str(INTERVAL_S)]
        server = subprocess.Popen(
            [*CLI, "serve", f"shop={bundle}", "--port", str(port), "--no-access-log", *FAULT, *options],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        stop = threading.Event()
        try:
            wait_until(lambda: server.poll() is not None or ready(url), timeout=180, what="server ready")
            with monitoring_stack(folder, rules, f"127.0.0.1:{port}", prom_hook, INTERVAL_S) as (
                prometheus,
                _,
            ):
                up = 'up{job="frugalml"} == 1'
                wait_until(
                    lambda: httpx.get(f"{prometheus}/api/v1/query", params={"query": up}).json()["data"][
                        "result"
                    ],
                    timeout=60,
                    what="first scrape",
                )
                arrived: dict[str, float] = {}

                def watch(name: str, receiver) -> None:
                    while not stop.is_set() and not receiver.alerts("firing"):
                        time.sleep(0.01)
                    arrived[name] = time.monotonic()

                watchers = [
                    threading.Thread(target=watch, args=(name, receiver), daemon=True)
                    for name, receiver in (("embedded", embedded), ("prometheus", through_prometheus))
                ]
                for watcher in watchers:
                    watcher.start()
                time.sleep(phase_s)
                started = time.monotonic()

                failed: list[float] = []  # when the first failing answer came back

                def traffic() -> None:
                    while not stop.is_set():
                        with contextlib.suppress(httpx.HTTPError):
                            body = {"inputs": ["refund please"]}
                            answer = httpx.post(f"{url}/v1/predict", json=body, timeout=30)
                            if answer.status_code == 500 and not failed:
                                failed.append(time.monotonic())
                        stop.wait(0.1)

                threading.Thread(target=traffic, daemon=True).start()
                wait_until(lambda: len(arrived) == 2, timeout=120, what="both notifications")
        finally:
            stop.set()
            server.send_signal(signal.SIGTERM)
            server.wait(60)
    return {
        **{name: at - started for name, at in arrived.items()},
        **{f"{name}_from_first_failure": at - failed[0] for name, at in arrived.items()},
        "first_failure_s": failed[0] - started,
    }


def evaluation_cost_ms(folder: Path, ticks: int = 2000) -> float:
    """Milliseconds per evaluation of all seven rules on a registry with one model's series."""
    metrics = ServingMetrics()
    rules = folder / "cost.yml"
    rules.write_text(yaml.safe_dump(rules_document("m")))
    evaluator = Evaluator(load_rules(rules), lambda: metrics.registry)
    rng = np.random.default_rng(0)
    metrics.start_at_zero("m", ("/v1/predict", "/v2/models/{name}/infer"))
    metrics.ready.labels("m", "v1").set(1)
    started = time.perf_counter()
    for tick in range(ticks):
        metrics.requests.labels("m", "/v1/predict", "200").inc(10)
        metrics.latency.labels("m", "/v1/predict").observe(float(rng.exponential(0.02)))
        metrics.observe_predictions("m", ["a", "b", "c"], rng.dirichlet([1, 1, 1], 8))
        evaluator.evaluate(float(tick))
    return (time.perf_counter() - started) / ticks * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()
    if TOOLS_MISSING:
        raise SystemExit(TOOLS_MISSING)
    with tempfile.TemporaryDirectory(prefix="frugalml-bench-monitor-") as temp:
        folder = Path(temp)
        bundle = tiny_bundle(folder)
        runs = []
        phases = random.Random(0)
        for repeat in range(args.repeats):
            run_folder = folder / f"run{repeat}"
            run_folder.mkdir()
            phase = round(phases.uniform(0, INTERVAL_S), 3)
            runs.append({**one_run(bundle, run_folder, phase), "phase_s": phase})
            print(
                f"run {repeat + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in runs[-1].items()), flush=True
            )
        cost = evaluation_cost_ms(folder)
    goal = THRESHOLDS.for_s + INTERVAL_S
    rows = []
    summary = {}
    for path in ("embedded", "prometheus", "embedded_from_first_failure", "prometheus_from_first_failure"):
        values = [run[path] for run in runs]
        summary[path] = {"median_s": statistics.median(values), "min_s": min(values), "max_s": max(values)}
        rows.append((path, statistics.median(values), min(values), max(values), goal))
    Console().print(
        table("fault to webhook (s)", ["path", "median", "min", "max", "goal for: + interval"], rows)
    )
    print(f"embedded evaluation of 7 rules: {cost:.3f} ms per tick")
    write_results(
        RESULTS / "monitor.json",
        {
            "what": "seconds from the first failing request to the first webhook notification",
            "rule": {"for_s": THRESHOLDS.for_s, "window_s": THRESHOLDS.window_s, "error_ratio": 0.5},
            "interval_s": INTERVAL_S,
            "prometheus_evaluation_interval_s": INTERVAL_S / 10,
            "t0": "uniformly random in the scrape cycle after the first scrape seen (phase_s)",
            "goal_s": goal,
            "runs": runs,
            "summary": summary,
            "embedded_evaluation_ms_per_tick": cost,
            "machine": f"{os.cpu_count()} cores",
        },
    )


if __name__ == "__main__":
    main()
