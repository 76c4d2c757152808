"""Serving benchmark: frugalml (PyTorch, ONNX Runtime fp32, int8) vs LitServe vs plain FastAPI.

The same MiniLM BANKING77 intent model (a `head` bundle) on every server, one BANKING77 test query
per request, closed-loop load from a separate process on loopback at concurrency 1, 8, 32 and 64,
a bounded number of requests per level. frugalml also serves the bundle bench/compress.py
selected, when that has run here (a smaller model of its own: each bundle's test accuracy is
reported beside its speed).
Every server gets the same machine in one run, one after another, round-robin over --rounds
rounds (3; the round with the median req/s is reported, every round's req/s beside it).

    .venv/bin/python bench/serve.py            # writes bench/results/serve.json
    .venv/bin/python bench/serve.py --goal     # writes bench/results/serve_goal.json

--goal measures only what the issue's goal compares, at concurrency 32, over more rounds (9): each
frugalml bundle served with `frugalml serve`'s defaults, and LitServe. A server's ratio to LitServe
is taken per round, between measurements close in time, so the machine's drift over the run moves
both sides of a ratio alike; the JSON gives every round's ratio and their median, min and max.

Run it under the shared CPU lock (`flock /tmp/frugalml-cpu.lock ...`) on a shared machine.
The same file is also the LitServe and plain-FastAPI servers (--server) and the load generator
(--load), so that each runs in a process of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import itertools
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from _common import DATA, HOME, RESULTS, in_repo, write_results
from pydantic import BaseModel

from frugalml.settings import INFERENCE_ENV

RESULT = RESULTS / "serve.json"
GOAL_RESULT = RESULTS / "serve_goal.json"
NOISY_RESULT = RESULTS / "serve_noisy.json"
MAX_BATCH, MAX_WAIT_MS = 32, 10
REQUESTS = {1: 200, 8: 500, 32: 1000, 64: 1000}  # per concurrency level, after a warm-up
ROUNDS = 3  # every server measured this many times, round-robin
GOAL_ROUNDS = 9
NOISY_ROUNDS = 5
BASELINES = ("litserve torch fp32", "litserve +same model")
NOISY_FRUGALML = (
    f"frugalml torch fp32 parallel {os.cpu_count() or 1}"  # `frugalml serve`'s defaults on 2 cores
)
ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "FRUGALML_HOME": str(HOME)}


# ---------------------------------------------------------------- competitor servers (--server)


def _torch_predictor(bundle_path: str):
    from frugalml.bundle import load_bundle
    from frugalml.runtime import load_predictor

    # BENCH_JIT=1: the TorchScript forward that `frugalml serve` uses, to compare engines alone.
    return load_predictor(load_bundle(bundle_path), jit=os.environ.get("BENCH_JIT") == "1")


try:
    import litserve as ls
except ImportError:  # only the LitServe server needs it
    ls = None

if ls is not None:

    class IntentAPI(ls.LitAPI):
        """The same predictor behind LitServe's hooks; LitServe hands `predict` a batch of texts."""

        def __init__(self, bundle_path: str, **options):
            super().__init__(**options)
            self.bundle_path = bundle_path

        def setup(self, device):
            self.predictor = _torch_predictor(self.bundle_path)
            self.predictor.warmup()

        def decode_request(self, request):
            return request["inputs"][0]

        def predict(self, texts):
            probabilities = self.predictor.predict_proba(texts)
            labels = self.predictor.labels
            return [{"label": labels[row.argmax()], "score": float(row.max())} for row in probabilities]

        def encode_response(self, output):
            return {"predictions": [output]}


def run_litserve(bundle_path: str, port: int) -> None:
    if ls is None:
        raise SystemExit("LitServe is not installed: pip install -c constraints.txt -e '.[bench]'")
    api = IntentAPI(bundle_path, max_batch_size=MAX_BATCH, batch_timeout=MAX_WAIT_MS / 1000)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=port, log_level="warning", generate_client_file=False)


class PlainBody(BaseModel):
    inputs: list[str]


def run_fastapi(bundle_path: str, port: int) -> None:
    import uvicorn
    from fastapi import FastAPI

    predictor = _torch_predictor(bundle_path)
    predictor.warmup()
    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(body: PlainBody) -> dict:  # a plain def: FastAPI runs it in its thread pool
        probabilities = predictor.predict_proba(body.inputs)
        labels = predictor.labels
        return {
            "predictions": [{"label": labels[r.argmax()], "score": float(r.max())} for r in probabilities]
        }

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def run_noop(port: int) -> None:
    """uvicorn (httptools, uvloop) with an app that reads the body and answers a fixed prediction:
    the event-loop CPU per request of HTTP alone, below which no Python ASGI server here can go."""
    import uvicorn

    answer = json.dumps({"predictions": [{"label": "card_arrival", "score": 0.9}]}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ---------------------------------------------------------------------- load generator (--load)


@contextlib.asynccontextmanager
async def _poster(client: str, concurrency: int):
    """`post(body) -> ok` over `concurrency` pooled connections: aiohttp, the light client that
    every level uses, or httpx, whose pure-Python HTTP stack costs several times the CPU per
    request (the CPU-hungry neighbour of the noisy-neighbour case)."""
    if client == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=120) as session:

            async def post(url: str, body: dict) -> bool:
                try:
                    response = await session.post(url, json=body)
                except (httpx.HTTPError, TimeoutError):
                    return False
                return response.status_code == 200

            yield post
        return
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as session:

        async def post(url: str, body: dict) -> bool:
            try:
                async with session.post(url, json=body) as response:
                    await response.read()
                    return response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                return False

        yield post


async def _load(url: str, texts: list[str], concurrency: int, requests: int, client: str = "aiohttp") -> dict:
    async with _poster(client, concurrency) as post:

        async def phase(total: int) -> tuple[list[float], int, float]:
            latencies: list[float] = []
            errors = 0
            sent = 0

            async def user() -> None:
                nonlocal sent, errors
                while sent < total:
                    text = texts[sent % len(texts)]
                    sent += 1
                    began = time.perf_counter()
                    if await post(url, {"inputs": [text]}):
                        latencies.append(time.perf_counter() - began)
                    else:
                        errors += 1

            started = time.perf_counter()
            await asyncio.gather(*(user() for _ in range(concurrency)))
            return latencies, errors, time.perf_counter() - started

        warmup = max(2 * concurrency, 20)
        await phase(warmup)  # connections, caches, first batches
        cpu_before = time.process_time()
        latencies, errors, wall = await phase(requests)
        # The load generator shares the server's cores: what it spends bounds every server.
        client_cpu = time.process_time() - cpu_before
    latencies.sort()

    def pct(q: float) -> float:
        return (
            round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2) if latencies else 0
        )

    return {
        "concurrency": concurrency,
        "client": client,
        "requests": requests,
        "ok": len(latencies),
        "errors": errors,
        "wall_s": round(wall, 3),
        "rps": round(len(latencies) / wall, 1),
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "client_cpu_ms_per_request": round(1000 * client_cpu / max(1, requests), 3),
        "warmup_requests": warmup,
    }


def load_texts(seed: int = 0) -> list[str]:
    with (DATA / "test.csv").open(newline="") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    random.Random(seed).shuffle(texts)
    return texts


def run_load(url: str, concurrency: int, requests: int, client: str = "aiohttp") -> None:
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    print(json.dumps(runner(_load(url, load_texts(), concurrency, requests, client))))


# --------------------------------------------------------------- the model alone (--ceiling)


def side_by_side(predictor, texts: list[str], batch: int, seconds: float = 3.0) -> float:
    """Texts/s of one call per core side by side, each `batch` texts at a time (no HTTP)."""
    from concurrent.futures import ThreadPoolExecutor

    callers = os.cpu_count() or 1

    def work(start: int) -> int:
        done, deadline = 0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            at = (start + done * callers) % (len(texts) - batch)
            predictor.predict_proba(texts[at : at + batch])
            done += batch
        return done

    started = time.perf_counter()
    with ThreadPoolExecutor(callers) as pool:
        total = sum(pool.map(work, [k * batch for k in range(callers)]))
    return total / (time.perf_counter() - started)


def run_ceiling(bundle_path: str) -> None:
    """Texts/s of the served model with no HTTP at all: one single-threaded call per core side by
    side (as `frugalml serve --parallel <cores>` runs it), at half and full batches; and its
    accuracy on the BANKING77 test set, since the bundles served need not be the same model.
    A packed PyTorch model is also measured with 1 to 3 attention grids per call, in turns."""
    from frugalml.bundle import load_bundle
    from frugalml.data import load_dataset
    from frugalml.evaluate import evaluate
    from frugalml.runtime import load_predictor
    from frugalml.serve.runner import serving_predictor

    bundle = load_bundle(bundle_path)
    predictor = serving_predictor(bundle, threads=1)
    predictor.warmup()
    texts = load_texts()
    batches = (MAX_BATCH // 2, MAX_BATCH)
    rates = {f"batch {b}": round(side_by_side(predictor, texts, b), 1) for b in batches}
    measured = {"texts_per_s": rates}
    if getattr(predictor, "packed_trace", None) is not None:
        by_grids = {
            g: predictor if g == predictor.grids else load_predictor(bundle, threads=1, jit=True, grids=g)
            for g in (1, 2, 3)
        }
        runs: dict[str, list[float]] = {}
        for _ in range(3):  # in turns, so the machine's drift reaches every count alike
            for g, model in by_grids.items():
                for b in batches:
                    runs.setdefault(f"grids {g}, batch {b}", []).append(
                        side_by_side(model, texts, b, seconds=2.0)
                    )
        measured["packed_texts_per_s_by_grids"] = {k: round(sorted(v)[1], 1) for k, v in runs.items()}
    measured["test_accuracy"] = round(evaluate(predictor, load_dataset(DATA / "test.csv")).accuracy, 4)
    print(json.dumps(measured))


def model_ceilings(bundles: dict[str, str]) -> tuple[dict[str, dict], dict[str, float], dict[str, dict]]:
    """Per bundle: the model alone's texts/s, its BANKING77 test accuracy, and for a packed
    PyTorch model its texts/s by attention grids per call."""
    ceilings, accuracy, grids = {}, {}, {}
    for kind, path in bundles.items():
        out = subprocess.run(
            [sys.executable, __file__, "--ceiling", path],
            env={**os.environ, **ENV, **INFERENCE_ENV},
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        measured = json.loads(out.stdout.strip().splitlines()[-1])
        ceilings[kind], accuracy[kind] = measured["texts_per_s"], measured["test_accuracy"]
        print(f"  model alone, {kind}: {ceilings[kind]} texts/s, test accuracy {accuracy[kind]}", flush=True)
        if "packed_texts_per_s_by_grids" in measured:
            grids[kind] = measured["packed_texts_per_s_by_grids"]
            print(f"  model alone, {kind}, packed, by attention grids: {grids[kind]}", flush=True)
    return ceilings, accuracy, grids


# ----------------------------------------------------------------------------- orchestration


def prepare_bundles() -> dict[str, str]:
    """Bundle folders for torch fp32, ONNX fp32 and ONNX int8 of one model, and the bundle the
    compression benchmark selected (when it has run here)."""
    paths = model_bundles()
    compressed = compressed_bundle()
    return paths | {"compressed": compressed} if compressed else paths


def compressed_bundle() -> str | None:
    """The bundle bench/compress.py selected: smaller, and in the committed run distilled from a
    teacher of its own (so a different model: its test accuracy is reported beside the others')."""
    report = RESULTS / "compress.json"
    selected = json.loads(report.read_text()).get("selected") if report.exists() else None
    folder = in_repo(selected["bundle_path"]) if selected else None
    if folder is None or not folder.is_dir():
        print("compressed: not served (run bench/compress.py here first)", flush=True)
        return None
    return str(folder)


def model_bundles() -> dict[str, str]:
    """Bundle folders for torch fp32, ONNX fp32 and ONNX int8 of one model."""
    os.environ.update(ENV)
    cache = HOME / "serve-bundles.json"
    if cache.exists():
        paths = json.loads(cache.read_text())
        if all(Path(p).is_dir() for p in paths.values()):
            return paths
    from frugalml.bundle import load_bundle
    from frugalml.compress import CompressContext, apply_technique, export_onnx
    from frugalml.data import load_dataset
    from frugalml.lineage import open_store
    from frugalml.settings import get_settings
    from frugalml.tune import TuneConfig
    from frugalml.tune.workflow import tune_and_register

    store = get_settings().bundles_dir
    lineage = open_store()
    train = load_dataset(DATA / "train.csv")
    # Any MiniLM head already tuned on this exact training set will do: serving cost does not
    # depend on how the head was trained.
    known = [
        b
        for b in lineage.list_bundles()
        if (b["format"], b["method"], b["base_model"], b["data_sha256"])
        == ("torch", "head", "minilm", train.sha256)
    ]
    if known:
        torch_bundle = load_bundle(known[-1]["path"])
    else:
        print("preparing: tune a MiniLM head on BANKING77 train ...", flush=True)
        summary = tune_and_register(
            DATA / "train.csv", TuneConfig(method="head", base="minilm"), name="banking77-serve"
        )
        torch_bundle = load_bundle(summary.bundle_path)
    print(f"preparing: ONNX export (and int8) of {torch_bundle.id} ...", flush=True)
    onnx_bundle = export_onnx(torch_bundle, store)
    lineage.add_bundle(onnx_bundle)
    paths = {"torch": str(torch_bundle.path), "onnx": str(onnx_bundle.path)}
    context = CompressContext(store=store, train=train, teacher=torch_bundle)
    int8 = apply_technique("int8", onnx_bundle, context)
    lineage.add_bundle(int8)
    paths["int8"] = str(int8.path)
    cache.write_text(json.dumps(paths, indent=2))
    return paths


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; see {HOME / 'logs'}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} not healthy within {timeout} s")


def servers(bundles: dict[str, str]) -> list[dict]:
    from frugalml.bundle import load_bundle

    kinds = [("torch fp32", "torch"), ("onnx fp32", "onnx"), ("onnx int8", "int8")]
    if "compressed" in bundles:
        kinds.append((f"compressed {load_bundle(bundles['compressed']).precision}", "compressed"))
    frugalml = str(Path(sys.executable).with_name("frugalml"))
    batching = ["--max-batch-size", str(MAX_BATCH), "--max-wait-ms", str(MAX_WAIT_MS)]
    entries = [
        {"name": f"frugalml {kind}", "bundle": key, "cmd": [frugalml, "serve", bundles[key], *batching]}
        for kind, key in kinds
        if key in bundles
    ]
    # The default leaves one core to the event loop; --parallel runs one single-threaded model
    # call per core side by side instead.
    cores = str(os.cpu_count() or 1)
    for entry in list(entries):
        parallel = {
            **entry,
            "name": f"{entry['name']} parallel {cores}",
            "cmd": [*entry["cmd"], "--parallel", cores],
            "default": cores != "1",  # `frugalml serve` runs min(2, cores) calls at once
        }
        entry["cmd"] += ["--parallel", "1"]
        entry["default"] = cores == "1"
        entries.insert(entries.index(entry) + 1, parallel)
    me = [sys.executable, str(Path(__file__).resolve())]
    for framework in ("litserve", "fastapi"):
        command = [*me, "--server", framework, bundles["torch"]]
        entries.append({"name": f"{framework} torch fp32", "bundle": "torch", "cmd": command})
        # The same server with the model settings of `frugalml serve` (threads, OpenMP threads
        # that spin briefly and then sleep, the traced forward): engine against engine.
        same = {
            **INFERENCE_ENV,
            "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) - 1)),
            "BENCH_JIT": "1",
        }
        entries.append({"name": f"{framework} +same model", "bundle": "torch", "cmd": command, "env": same})
    entries.append({"name": "uvicorn no-op app", "bundle": None, "cmd": [*me, "--server", "noop"]})
    for entry in entries:
        ours = entry["name"].startswith("frugalml")
        entry["health"], entry["path"] = ("/readyz", "/v1/predict") if ours else ("/health", "/predict")
        # LitServe's event loops run in worker processes; the others' in the main thread.
        entry["loop_in_main_thread"] = not entry["name"].startswith("litserve")
    return entries


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds a server has used: (all its processes and threads, its main thread alone)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for process in (root, *root.children(recursive=True)):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    main = next(t for t in root.threads() if t.id == pid)
    return total, main.user_time + main.system_time


def measure(entry: dict, requests: dict[int, int], clients: tuple[str, ...] = ("aiohttp",)) -> list[dict]:
    """`entry`'s server started once and loaded at each concurrency by each client in turn."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    logs = HOME / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = (logs / f"{entry['name'].replace(' ', '-')}.log").open("w")
    # A session of its own: LitServe starts worker processes, and all of them must stop.
    process = subprocess.Popen(
        [*entry["cmd"], "--port", str(port)],
        env={**os.environ, **ENV, **entry.get("env", {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    rows = []
    try:
        _wait_healthy(base + entry["health"], process)
        for (concurrency, count), client in itertools.product(requests.items(), clients):
            cpu_before = _cpu_seconds(process.pid)
            url = base + entry["path"]
            out = subprocess.run(
                [sys.executable, __file__, "--load", url, str(concurrency), str(count), "--client", client],
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            )
            row = {
                "server": entry["name"],
                "bundle": entry["bundle"],
                **json.loads(out.stdout.strip().splitlines()[-1]),
            }
            # Server CPU per request (warm-up requests included): where each server's time goes.
            sent = row["requests"] + row.pop("warmup_requests")
            total, loop = (
                after - before for after, before in zip(_cpu_seconds(process.pid), cpu_before, strict=True)
            )
            row["server_cpu_ms_per_request"] = round(1000 * total / sent, 3)
            row["event_loop_cpu_ms_per_request"] = (
                round(1000 * loop / sent, 3) if entry["loop_in_main_thread"] else None
            )
            print(
                f"  {entry['name']:<22} c={concurrency:<3} {client:<7} {row['rps']:>7.1f} req/s  "
                f"p50 {row['p50_ms']:>7.1f} ms  p99 {row['p99_ms']:>8.1f} ms  errors {row['errors']}",
                flush=True,
            )
            rows.append(row)
    finally:
        with contextlib.suppress(ProcessLookupError):  # a server that failed to start is gone
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
    return rows


def _ratios(rows: list[dict], ceilings: dict[str, dict]) -> dict:
    at = {(r["server"], r["concurrency"]): r for r in rows}

    def ratio(server: str, baseline: str, c: int, key: str) -> float | None:
        a, b = at.get((server, c)), at.get((baseline, c))
        return round(a[key] / b[key], 2) if a and b and b[key] else None

    ours = sorted({r["server"] for r in rows if r["server"].startswith("frugalml")})
    ratios = {}
    for baseline in BASELINES:
        for server in ours:
            ratios[f"c32 req/s  {server} / {baseline}"] = ratio(server, baseline, 32, "rps")
            ratios[f"c32 p99    {server} / {baseline}"] = ratio(server, baseline, 32, "p99_ms")
    for baseline in ("fastapi torch fp32", "fastapi +same model"):
        for server in ours:
            ratios[f"c1 p50     {server} / {baseline}"] = ratio(server, baseline, 1, "p50_ms")
    # How much of what the model alone can do (no HTTP, batch MAX_BATCH) each server delivers.
    for row in rows:
        alone = _alone(ceilings, row["bundle"])
        if row["concurrency"] == 32 and alone:
            ratios[f"c32 req/s  {row['server']} / its model alone"] = round(row["rps"] / alone, 2)
    for bundle, bound in bounds(rows, ceilings).items():
        for baseline in BASELINES:
            if (baseline, 32) in at:
                ratios[f"c32 req/s  {bundle} bound / {baseline}"] = round(bound / at[baseline, 32]["rps"], 2)
    return {k: v for k, v in ratios.items() if v is not None}


def bounds(rows: list[dict], ceilings: dict[str, dict]) -> dict[str, float]:
    """Highest c=32 req/s any server of each bundle could reach here: all cores busy with the model
    alone (its batch-MAX_BATCH cost per text) and the load generator (its CPU per request), no
    HTTP or batching cost at all. A goal above it cannot be met on this machine."""
    cores = os.cpu_count() or 1
    out = {}
    for bundle in ceilings:
        client = [
            r["client_cpu_ms_per_request"] for r in rows if r["bundle"] == bundle and r["concurrency"] == 32
        ]
        if client and _alone(ceilings, bundle):
            seconds_per_request = cores / _alone(ceilings, bundle) + min(client) / 1000
            out[bundle] = round(cores / seconds_per_request, 1)
    return out


def cpu_split(rows: list[dict], ceilings: dict[str, dict]) -> list[dict]:
    """CPU ms per request at c=32, by where it went, beside the model alone's cost per text."""
    cores = os.cpu_count() or 1
    split = []
    for row in rows:
        if row["concurrency"] != 32 or row["event_loop_cpu_ms_per_request"] is None:
            continue
        alone = _alone(ceilings, row["bundle"])
        loop = row["event_loop_cpu_ms_per_request"]
        split.append(
            {
                "server": row["server"],
                "event_loop": loop,
                "other_threads": round(row["server_cpu_ms_per_request"] - loop, 3),
                "load_generator": row["client_cpu_ms_per_request"],
                "model_alone_per_text": round(1000 * cores / alone, 3) if alone else None,
            }
        )
    return split


def _alone(ceilings: dict[str, dict], bundle: str) -> float | None:
    """Texts/s of `bundle`'s model alone at the servers' max batch size."""
    return ceilings.get(bundle, {}).get(f"batch {MAX_BATCH}")


def median_rows(rounds: list[list[dict]]) -> list[dict]:
    """Per server and concurrency, the round with the median req/s (one real measurement, so its
    latencies and CPU belong together), with every round's req/s beside it."""
    by_level: dict[tuple[str, int], list[dict]] = {}
    for row in (row for measured in rounds for row in measured):
        by_level.setdefault((row["server"], row["concurrency"]), []).append(row)
    rows = []
    for same in by_level.values():
        ordered = sorted(same, key=lambda row: row["rps"])
        rows.append({**ordered[(len(ordered) - 1) // 2], "rps_rounds": [row["rps"] for row in same]})
    return rows


def round_ratios(rounds: list[list[dict]]) -> dict[str, dict]:
    """Each frugalml server's c=32 req/s over LitServe's, round by round (a round measures the
    servers one after another, close in time, where the medians of `median_rows` may come from
    different rounds), with the median, min and max of those ratios."""
    out: dict[str, dict] = {}
    for measured in rounds:
        at = {row["server"]: row["rps"] for row in measured if row["concurrency"] == 32}
        for baseline in (b for b in BASELINES if at.get(b)):
            for server in (s for s in at if s.startswith("frugalml")):
                key = f"c32 req/s  {server} / {baseline}"
                out.setdefault(key, {"rounds": []})["rounds"].append(round(at[server] / at[baseline], 2))
    for entry in out.values():
        ordered = sorted(entry["rounds"])
        entry.update(median=ordered[(len(ordered) - 1) // 2], min=ordered[0], max=ordered[-1])
    return out


def orchestrate(
    quick: bool = False,
    only: str | None = None,
    rounds: int | None = None,
    goal: bool = False,
    noisy: bool = False,
    requests_per_level: int | None = None,
    baseline_src: str | None = None,
) -> None:
    if not DATA.is_dir():
        print(f"skipped: {DATA} not found (the shared BANKING77 data)")
        return
    from frugalml import ui

    if noisy:
        bundles = model_bundles()
        entries = [e for e in servers(bundles) if e["name"] in (NOISY_FRUGALML, "litserve torch fp32")]
        if baseline_src:  # the same server from another source tree (say, main before a change)
            before = {
                **entries[0],
                "name": f"{NOISY_FRUGALML} (baseline)",
                "env": {"PYTHONPATH": baseline_src},
            }
            entries.insert(1, before)
        count = requests_per_level or REQUESTS[32]
        noisy_run(entries, max(20, count // 20) if quick else count, rounds or NOISY_ROUNDS, write=not quick)
        return
    bundles = prepare_bundles()
    requests = {32: REQUESTS[32]} if goal else REQUESTS
    requests = {c: max(20, n // 20) for c, n in requests.items()} if quick else requests
    rounds = rounds or (GOAL_ROUNDS if goal else ROUNDS)
    entries = [
        entry
        for entry in servers(bundles)
        if (not only or any(part in entry["name"] for part in only.split(",")))
        and (not goal or entry.get("default") or entry["name"] in BASELINES)
    ]
    if goal:
        goal_run(entries, requests, rounds, bundles, write=not (quick or only))
        return
    print("the model alone, no HTTP:", flush=True)
    ceilings, accuracy, grids = model_ceilings(bundles)
    measured = measure_rounds(entries, requests, rounds)
    rows = median_rows(measured)
    ratios = _ratios(rows, ceilings)
    ui.out.print(
        ui.table(
            "serving: one BANKING77 query per request, MiniLM intent model, loopback",
            ["server", "conc.", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"],
            [
                (r["server"], r["concurrency"], r["rps"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["errors"])
                for r in rows
            ],
        )
    )
    ui.out.print(ui.table("ratios", ["comparison", "value"], [(k, v) for k, v in ratios.items()]))
    split = cpu_split(rows, ceilings)
    ui.out.print(
        ui.table(
            "CPU ms per request at c=32 (the model alone: per text, batch 32, no HTTP)",
            ["server", "event loop", "other threads", "load generator", "model alone"],
            [tuple(entry.values()) for entry in split],
        )
    )
    if "int8" not in bundles:
        print("int8: pending (frugalml.compress offers no int8 technique yet)")
    if quick or only:
        return
    write_results(
        RESULT,
        {
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "settings": {
                "max_batch_size": MAX_BATCH,
                "max_wait_ms": MAX_WAIT_MS,
                "requests": REQUESTS,
                "rounds": rounds,
                "statistic": "round with the median req/s, per server and concurrency",
            },
            "bundles": bundles,
            "test_accuracy": accuracy,
            "model_alone_texts_per_s": ceilings,
            "packed_texts_per_s_by_grids": grids,
            "c32_bound_req_per_s": bounds(rows, ceilings),
            "c32_cpu_ms_per_request": split,
            "results": rows,
            "ratios": ratios,
            "c32_ratio_rounds": round_ratios(measured),
            "int8": "measured" if "int8" in bundles else "pending",
        },
    )
    print(f"wrote {RESULT}")


def measure_rounds(entries: list[dict], requests: dict[int, int], rounds: int) -> list[list[dict]]:
    """Every entry measured once per round, round-robin: this machine's speed drifts by 20 % and
    more within minutes, so each server's measurements spread across the whole run, not one
    window of it."""
    measured = []
    for round_number in range(1, rounds + 1):
        for entry in entries:
            print(f"{entry['name']} (round {round_number} of {rounds}):", flush=True)
            measured.append(measure(entry, requests))
    # Regrouped by round: one list of rows per round, every entry's rows in it.
    return [
        list(itertools.chain.from_iterable(measured[i : i + len(entries)]))
        for i in range(0, len(measured), len(entries))
    ]


def goal_run(entries: list[dict], requests: dict[int, int], rounds: int, bundles: dict, write: bool) -> None:
    from frugalml import ui

    measured = measure_rounds(entries, requests, rounds)
    ratios = round_ratios(measured)
    ui.out.print(
        ui.table(
            f"c=32 req/s over LitServe's, round by round ({rounds} rounds)",
            ["comparison", "median", "min", "max", "rounds"],
            [
                (k, *(f"{v[stat]:.2f}" for stat in ("median", "min", "max")), " ".join(map(str, v["rounds"])))
                for k, v in ratios.items()
            ],
        )
    )
    if not write:
        return
    write_results(
        GOAL_RESULT,
        {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "settings": {
                "max_batch_size": MAX_BATCH,
                "max_wait_ms": MAX_WAIT_MS,
                "requests": requests,
                "rounds": rounds,
                "statistic": "per-round ratio of req/s at c=32; median, min and max over rounds",
            },
            "bundles": bundles,
            "servers": [entry["name"] for entry in entries],
            "rows": [row for measured_round in measured for row in measured_round],
            "c32_ratio_rounds": ratios,
        },
    )
    print(f"wrote {GOAL_RESULT}")


def spread(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "median": ordered[(len(ordered) - 1) // 2],
        "min": ordered[0],
        "max": ordered[-1],
        "rounds": values,
    }


def noisy_run(entries: list[dict], requests: int, rounds: int, write: bool) -> None:
    """The noisy-neighbour case: `frugalml serve`'s defaults and LitServe on the fp32 PyTorch bundle,
    c=32, each loaded in turn by the light client (aiohttp) and by a CPU-hungry one (httpx) that
    shares the server's cores. Servers and clients swap order every round; ratios are per round."""
    from frugalml import ui

    load_before = os.getloadavg()
    rows: list[dict] = []
    for round_number in range(1, rounds + 1):
        order = entries if round_number % 2 else entries[::-1]
        clients = ("aiohttp", "httpx") if round_number % 2 else ("httpx", "aiohttp")
        for entry in order:
            print(f"{entry['name']} (round {round_number} of {rounds}):", flush=True)
            rows += [{**row, "round": round_number} for row in measure(entry, {32: requests}, clients)]
    summary: dict[str, dict] = {}
    for row in rows:
        key = f"{row['server']}, {row['client']} client"
        for stat in ("rps", "p50_ms", "p99_ms", "client_cpu_ms_per_request"):
            summary.setdefault(key, {}).setdefault(stat, []).append(row[stat])
    summary = {key: {stat: spread(v) for stat, v in stats.items()} for key, stats in summary.items()}
    theirs = entries[-1]["name"]  # LitServe
    at = {(r["round"], r["server"], r["client"]): r for r in rows}
    ratios = {
        f"{stat} {ours['name']} / {theirs}, {client} client": spread(
            [
                round(at[n, ours["name"], client][stat] / at[n, theirs, client][stat], 2)
                for n in range(1, rounds + 1)
                if at[n, theirs, client][stat]
            ]
        )
        for ours in entries[:-1]
        for client in ("aiohttp", "httpx")
        for stat in ("p99_ms", "rps")
    }
    ui.out.print(
        ui.table(
            f"c=32, fp32 PyTorch, light (aiohttp) or CPU-hungry (httpx) client: median (min-max), n={rounds}",
            ["server, client", "req/s", "p50 ms", "p99 ms", "client CPU ms/req"],
            [
                (key, *(f"{v[s]['median']:g} ({v[s]['min']:g}-{v[s]['max']:g})" for s in v))
                for key, v in summary.items()
            ],
        )
    )
    ui.out.print(
        ui.table(
            "ratios, round by round",
            ["comparison", "median", "min", "max", "rounds"],
            [
                (k, v["median"], v["min"], v["max"], " ".join(map(str, v["rounds"])))
                for k, v in ratios.items()
            ],
        )
    )
    if not write:
        return
    write_results(
        NOISY_RESULT,
        {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            # Before: what else the machine ran; after: that plus the bench's own servers and clients.
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "settings": {
                "max_batch_size": MAX_BATCH,
                "max_wait_ms": MAX_WAIT_MS,
                "concurrency": 32,
                "requests": requests,
                "rounds": rounds,
                "statistic": "median, min and max over rounds; ratios taken within a round",
            },
            "servers": [entry["name"] for entry in entries],
            "rows": rows,
            "summary": summary,
            "ratios": ratios,
        },
    )
    print(f"wrote {NOISY_RESULT}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=["litserve", "fastapi", "noop"], help="run a reference server")
    parser.add_argument("--load", nargs=3, metavar=("URL", "CONCURRENCY", "REQUESTS"), help="generate load")
    parser.add_argument(
        "--client", choices=["aiohttp", "httpx"], default="aiohttp", help="the load generator's HTTP client"
    )
    parser.add_argument("--ceiling", metavar="BUNDLE", help="texts/s of the model alone, no HTTP")
    parser.add_argument("bundle", nargs="?", help="bundle folder (with --server)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--quick", action="store_true", help="a few requests per level; writes nothing")
    parser.add_argument(
        "--rounds", type=int, help=f"round-robin rounds ({ROUNDS}; {GOAL_ROUNDS} with --goal)"
    )
    parser.add_argument("--only", help="servers named with any of these comma-separated parts (no JSON)")
    parser.add_argument(
        "--goal", action="store_true", help="c=32 only, default servers and LitServe, ratios per round"
    )
    parser.add_argument(
        "--requests", type=int, help=f"with --noisy: requests per measurement ({REQUESTS[32]})"
    )
    parser.add_argument("--baseline-src", help="with --noisy: also serve frugalml from this src folder")
    parser.add_argument(
        "--noisy",
        action="store_true",
        help=f"c=32, fp32 PyTorch: frugalml, LitServe, light and CPU-hungry clients ({NOISY_ROUNDS} rounds)",
    )
    args = parser.parse_args()
    if args.server == "noop":
        run_noop(args.port)
    elif args.server:
        {"litserve": run_litserve, "fastapi": run_fastapi}[args.server](args.bundle, args.port)
    elif args.load:
        url, concurrency, requests = args.load
        run_load(url, int(concurrency), int(requests), args.client)
    elif args.ceiling:
        run_ceiling(args.ceiling)
    else:
        orchestrate(
            quick=args.quick,
            only=args.only,
            rounds=args.rounds,
            goal=args.goal,
            noisy=args.noisy,
            requests_per_level=args.requests,
            baseline_src=args.baseline_src,
        )


if __name__ == "__main__":
    main()
