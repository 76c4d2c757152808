"""Measure a bundle on this machine: accuracy, macro-F1, bytes, latency, throughput, peak memory.

Every bundle is measured in a fresh Python process (`python -m frugalml.compress.measure`) with
the same thread count, so one candidate's allocator, thread pools and caches never colour
another's figures, and peak RSS is the candidate's own. Each runs as `frugalml serve` runs it (a
PyTorch bundle traced, packed where it can be), with serve's OpenMP settings. Latency is end to
end (tokenize or preprocess, run, softmax) for one input at a time; throughput is inputs per
second in batches of 32 drawn in random order (mixed lengths, as a server sees them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from frugalml.data import Dataset
from frugalml.data.images import ImageDataset
from frugalml.errors import FrugalError
from frugalml.resources import peak_rss_mb
from frugalml.settings import INFERENCE_ENV

IMAGES_FILE = "images.npy"


def measure(
    bundle_path: Path,
    inputs: Sequence[Any],
    labels: list[str],
    threads: int,
    latency_runs: int = 200,
    min_seconds: float = 2.0,
    seed: int = 0,
    batch_sizes: Sequence[int] = (32,),
) -> dict[str, Any]:
    """Figures for one bundle, measured in this process (the worker side). `inputs` are of the
    bundle's task (texts, or uint8 HWC images); throughput is measured for each of `batch_sizes`
    (`batch32_per_s` ...)."""
    from frugalml.bundle import load_bundle
    from frugalml.evaluate import score
    from frugalml.serve.runner import serving_predictor

    bundle = load_bundle(bundle_path)
    started = time.perf_counter()
    # As `frugalml serve` runs it, on the CPU whatever `compress --device` says: the int8
    # candidates are CPU kernels (ONNX Runtime's dynamic and static int8), so only there do all
    # candidates run, and their size, speed and accuracy compare on one footing.
    predictor = serving_predictor(bundle, threads=threads)
    predictor.warmup()
    load_seconds = time.perf_counter() - started

    probabilities = predictor.predict_proba(inputs)
    predicted = probabilities.argmax(1)
    report = score(labels, [predictor.labels[i] for i in predicted], predictor.labels)

    order = np.random.default_rng(seed).permutation(len(inputs))
    latencies = []
    for i in order[:latency_runs]:
        tick = time.perf_counter()
        predictor.predict_proba([inputs[i]])
        latencies.append(time.perf_counter() - tick)

    throughput = {}
    for size in batch_sizes:
        batches = [
            [inputs[i] for i in order[j : j + size]] for j in range(0, min(len(order), 32 * size), size)
        ]
        done, tick = 0, time.perf_counter()
        while True:  # whole passes, until at least min_seconds have gone by
            for batch in batches:
                predictor.predict_proba(batch)
                done += len(batch)
            if time.perf_counter() - tick >= min_seconds:
                break
        throughput[f"batch{size}_per_s"] = done / (time.perf_counter() - tick)

    return {
        "bundle_id": bundle.id,
        "format": bundle.format,
        "precision": bundle.precision,
        "accuracy": report.accuracy,
        "macro_f1": report.macro_f1,
        "size_bytes": bundle.size_bytes,
        "p50_ms": float(np.percentile(latencies, 50) * 1000),
        "p90_ms": float(np.percentile(latencies, 90) * 1000),
        **throughput,
        "peak_rss_mb": peak_rss_mb(),
        "load_seconds": load_seconds,
        "threads": threads,
        "inference_env": {name: os.environ.get(name) for name in INFERENCE_ENV},
        "predictions": predicted.tolist(),
    }


def measure_in_subprocess(
    bundle_path: Path, data: Dataset | ImageDataset, threads: int, timeout: float = 1800, **options: Any
) -> dict[str, Any]:
    """`measure` in a fresh interpreter; raises FrugalError with the worker's last words on failure.
    Images go to the worker as a NumPy file beside the request."""
    env = {
        **INFERENCE_ENV,
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
    }
    with tempfile.TemporaryDirectory() as scratch:
        request = Path(scratch) / "request.json"
        if isinstance(data, ImageDataset):
            np.save(Path(scratch) / IMAGES_FILE, data.images)
            inputs: dict[str, Any] = {"images": IMAGES_FILE}
        else:
            inputs = {"inputs": data.texts}
        request.write_text(
            json.dumps({**inputs, "labels": data.require_labels(), "threads": threads, **options})
        )
        command = [sys.executable, "-m", "frugalml.compress.measure", str(bundle_path), str(request)]
        command += ["--parent", str(os.getpid())]
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise FrugalError(f"measuring {bundle_path} took over {timeout:.0f} s; gave up") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise FrugalError(f"measuring {bundle_path} failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def exit_with_parent(parent: int, poll_seconds: float = 0.5) -> None:
    """End this process within `poll_seconds` of `parent` ending (killed with -9 included), so a
    measuring child never outlives the run that started it: a daemon thread watches for this
    process being handed to another parent."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(1)

    if os.getppid() != parent:  # the parent died before the watch began
        os._exit(1)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Measure one bundle (frugalml compress runs this).")
    parser.add_argument("bundle", type=Path)
    parser.add_argument("request", type=Path, help="JSON: texts, labels, threads and measure() options")
    parser.add_argument("--parent", type=int, help="exit when the process with this id is gone")
    args = parser.parse_args(argv)
    if args.parent:
        exit_with_parent(args.parent)
    request = json.loads(args.request.read_text())
    if "images" in request:
        request["inputs"] = np.load(args.request.parent / request.pop("images"))
    result = measure(args.bundle, **request)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
