"""BANKING77 compression benchmark: every `frugalml compress` candidate against the fp32 PyTorch
teacher, measured side by side on this machine (2 threads per candidate, each in a fresh process).

    flock /tmp/frugalml-cpu.lock .venv/bin/python bench/compress.py     # compress's defaults

`--techniques`, `--layers`, `--ffn`, `--heads`, `--distill-epochs`, `--augment` and `--splice` set
what they name; compress chooses whatever is not given (from the data size and the budget), as for
a user.
The run with the defaults is recorded as `--name compress_defaults`, the hand-picked one under the
default name.

Selection split: 10 % of the BANKING77 train set (stratified, seed 0), held out before anything
trains. Teacher: the best `full` or `lora` MiniLM bundle trained on the other 90 % ("fit") and
registered in bench/.home (best by its validation accuracy); if there is none, one is trained
(`full`, 3 epochs, about 14 min). Neither its encoder nor its head has seen the selection split
(tune refits the head on every row it is given, its own validation rows included, so the split
must be held out from tune itself). The candidates are built from the fit rows and selected on
the selection split. The test set is only reported, never used to choose anything.

Writes bench/results/NAME.json, NAME.md (the table) and NAME.png (accuracy against latency, marker
area = bytes on disk), NAME being `--name` (default: compress), and prints the table.

Small-data mode, defaults only (issue 27):

    nice .venv/bin/python bench/compress.py --per-class 20 --draws 0,1,2

draws `--per-class` labelled texts of each intent from the train set (seed = the draw) and 10 more
of each, held out, to select on; the teacher is a LoRA tune on the drawn rows; `compress` runs with
its defaults (the settings it chooses from the data size). Each run adds its row to
bench/results/compress_small.{json,md}: the selected candidate against the fp32 teacher. A run
narrowed with `--techniques` (to compare techniques on the same teacher) or given `--splice` goes
under its own `--name`, so that it does not replace a draw's defaults row:

    nice .venv/bin/python bench/compress.py --per-class 20 --techniques onnx,int8,emb4,int4 \
        --name compress_int4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _common import DATA, HOME, RESULTS, in_repo, machine, use_banking77, write_results

GOAL = {"size_ratio": 10.0, "throughput_ratio": 4.0, "max_drop": 1.0}
DEV_PER_CLASS = 10  # held-out texts per intent to select on, in small-data mode


def find_teacher(lineage, train_sha256: str, methods: tuple[str, ...] = ("full", "lora")):
    """The best registered bundle of one of `methods` trained on exactly this file, or None."""
    from frugalml.bundle import load_bundle

    rows = [
        r
        for r in lineage.list_bundles()
        if r["method"] in methods
        and r["format"] == "torch"
        and r["data_sha256"] == train_sha256
        and not r["parent_id"]  # a tune, not a compress candidate built from one
    ]
    rows = [r for r in rows if Path(r["path"]).is_dir()]
    if not rows:
        return None
    best = max(rows, key=lambda r: (r["metrics"].get("val_accuracy", 0), r["created_at"]))
    return load_bundle(best["path"])


def train_teacher(fit_path: Path, settings):
    from frugalml.bundle import load_bundle
    from frugalml.tune import TuneConfig
    from frugalml.tune.workflow import tune_and_register
    from frugalml.ui import RichReporter

    print("no full/lora teacher registered in bench/.home: training one (full, 3 epochs)", flush=True)
    summary = tune_and_register(
        fit_path,
        TuneConfig(method="full", epochs=3),
        eval_path=DATA / "test.csv",
        name="banking77-full-teacher",
        reporter=RichReporter(),
        settings=settings,
    )
    return load_bundle(summary.bundle_path)


def selection_split(train, fraction: float = 0.1, seed: int = 0) -> tuple[Path, Path]:
    """fit.csv and dev.csv: a stratified split of the training file, made before the teacher trains."""
    from frugalml.data import stratified_split

    fit, dev = stratified_split(train, fraction, seed)
    paths = (HOME / "data" / f"banking77_fit_{seed}.csv", HOME / "data" / f"banking77_dev_{seed}.csv")
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    for part, path in zip((fit, dev), paths, strict=True):
        part.to_frame()[["text", "label"]].to_csv(path, index=False)
    return paths


def small_draw(train, per_class: int, draw: int) -> tuple[Path, Path]:
    """fit.csv: `per_class` texts of each intent; dev.csv: DEV_PER_CLASS others of each."""
    frame = train.to_frame()[["text", "label"]].sample(frac=1.0, random_state=draw)
    fit = frame.groupby("label").head(per_class)
    dev = frame.drop(fit.index).groupby("label").head(DEV_PER_CLASS)
    stem = HOME / "data" / f"banking77_{per_class}pc_draw{draw}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = (stem.with_name(stem.name + "_fit.csv"), stem.with_name(stem.name + "_dev.csv"))
    for part, path in zip((fit, dev), paths, strict=True):
        part.to_csv(path, index=False)
    return paths


def small_teacher(fit_path: Path, dev_path: Path, settings, method: str = "lora"):
    """The `method` bundle tuned on exactly `fit_path` (tuned now if there is none)."""
    from frugalml.bundle import load_bundle
    from frugalml.hashing import sha256_path
    from frugalml.lineage import open_store
    from frugalml.tune import TuneConfig
    from frugalml.tune.workflow import tune_and_register
    from frugalml.ui import RichReporter

    found = find_teacher(open_store(settings), sha256_path(fit_path), (method,))
    if found is not None:
        return found
    summary = tune_and_register(
        fit_path,
        TuneConfig(method=method),
        eval_path=dev_path,
        name=fit_path.stem.removesuffix("_fit") + f"-{method}",
        reporter=RichReporter(),
        settings=settings,
    )
    return load_bundle(summary.bundle_path)


SMALL_COLUMNS = (
    "texts/intent",
    "draw",
    "teacher",
    "search",
    "selected",
    "size MB",
    "× smaller",
    "× throughput (b=32)",
    "teacher test %",
    "Δ test pts",
    "Δ dev pts",
    "goal",
)


def small_row(run: dict) -> list:
    from frugalml.compress.techniques import DEFAULT_TECHNIQUES

    s, t = run["selected"], run["baseline"]
    return [
        run["per_class"],
        run["draw"],
        run.get("teacher_method", "lora"),
        search_label(run, DEFAULT_TECHNIQUES),
        s["recipe"],
        f"{s['size_bytes'] / 1e6:.1f}",
        f"{s['size_ratio']:.1f}",
        f"{s['throughput_ratio']:.2f}",
        f"{100 * t['test_accuracy']:.2f}",
        f"{100 * (s['test_accuracy'] - t['test_accuracy']):+.2f}",
        f"{-s['accuracy_drop']:+.2f}",
        "met" if run["goal_met"] else "not met",
    ]


def search_label(run: dict, default_techniques: tuple[str, ...]) -> str:
    """What the run's search was: compress's defaults, or what it was narrowed or given."""
    given = [] if run.get("techniques") == list(default_techniques) else [",".join(run["techniques"])]
    if run.get("splice") is not None:
        given.append(f"splice {run['splice']}")
    return "; ".join(given) or "defaults"


def small_data(
    per_class: int,
    draws: list[int],
    threads: int,
    given: dict,
    teacher_method: str,
    name: str,
) -> None:
    """Compress a LoRA teacher tuned on `per_class` texts per intent, with compress's defaults
    but for the settings `given` (`techniques` narrows the search, `splice` sets distillation's
    spliced share; the run records both), into bench/results/NAME.{json,md}."""
    from frugalml.compress import CompressConfig, compress_and_register
    from frugalml.compress.report import markdown_table
    from frugalml.data import load_dataset
    from frugalml.settings import get_settings
    from frugalml.ui import RichReporter, out, table

    settings = get_settings()
    train, test = load_dataset(DATA / "train.csv"), load_dataset(DATA / "test.csv")
    path = RESULTS / f"{name}.json"
    document = json.loads(path.read_text()) if path.exists() else {"benchmark": "compress-small", "runs": []}
    for draw in draws:
        started = time.perf_counter()
        fit_path, dev_path = small_draw(train, per_class, draw)
        teacher = small_teacher(fit_path, dev_path, settings, teacher_method)
        print(f"draw {draw}: teacher {teacher.id} ({teacher.method}, {per_class} per intent)", flush=True)
        config = CompressConfig(threads=threads, keep="all", **given)  # defaults otherwise
        result = compress_and_register(
            teacher.id, fit_path, dev_path, config, reporter=RichReporter(), settings=settings
        ).to_json()
        test_accuracy([result["baseline"], *result["candidates"]], test, threads)
        selected = result["selected"]
        run = {
            "per_class": per_class,
            "draw": draw,
            "teacher": teacher.id,
            "teacher_method": teacher.method,
            "splits": {"fit": str(fit_path), "selection": str(dev_path), "test": str(DATA / "test.csv")},
            "machine": machine(threads),
            "techniques": list(config.techniques),
            "splice": config.splice,  # None: distill's default
            "wall_seconds": round(time.perf_counter() - started, 1),
            "goal_met": goal_met(selected)
            and selected["test_accuracy"] >= result["baseline"]["test_accuracy"] - GOAL["max_drop"] / 100,
            "rows": rows(result),
            **result,
        }
        document["runs"] = [
            r for r in document["runs"] if (r["per_class"], r["draw"]) != (per_class, draw)
        ] + [run]
        document["runs"].sort(key=lambda r: (-r["per_class"], r["draw"]))
        document["goal"] = GOAL
        write_results(path, document)
        table_rows = [small_row(r) for r in document["runs"]]
        (RESULTS / f"{name}.md").write_text(markdown_table(SMALL_COLUMNS, table_rows))
        out.print(table(f"BANKING77, {per_class} texts per intent, draw {draw}", COLUMNS, rows(result)))
        out.print(
            table("small-data runs: the selected candidate vs the fp32 teacher", SMALL_COLUMNS, table_rows)
        )


def test_accuracy(entries: list[dict], test, threads: int) -> None:
    """Add `test_accuracy` and `test_macro_f1` to each entry whose bundle is on disk."""
    from frugalml.bundle import load_bundle
    from frugalml.evaluate import evaluate
    from frugalml.runtime import load_predictor

    for entry in entries:
        if Path(entry["bundle_path"]).is_dir():
            report = evaluate(load_predictor(load_bundle(entry["bundle_path"]), threads=threads), test)
            entry["test_accuracy"], entry["test_macro_f1"] = report.accuracy, report.macro_f1


COLUMNS = (
    "variant",
    "format",
    "size MB",
    "× smaller",
    "p50 ms (b=1)",
    "× faster (b=1)",
    "texts/s (b=32)",
    "× throughput (b=32)",
    "dev acc %",
    "Δ dev pts",
    "test acc %",
    "Δ test pts",
    "agree %",
    "peak RSS MB",
)


def rows(result: dict) -> list[list]:
    teacher = result["baseline"]
    selected = result["selected"]["bundle_id"]
    out = []
    for e in [teacher, *result["candidates"]]:
        name = "fp32 PyTorch teacher" if e is teacher else e["recipe"]
        if e["bundle_id"] == selected and e is not teacher:
            name += "  ← selected"
        test = e.get("test_accuracy")
        out.append(
            [
                name,
                f"{e['format']} {e['precision']}",
                f"{e['size_bytes'] / 1e6:.1f}",
                f"{e['size_ratio']:.2f}",
                f"{e['p50_ms']:.2f}",
                f"{e['latency_ratio']:.2f}",
                f"{e['batch32_per_s']:.0f}",
                f"{e['throughput_ratio']:.2f}",
                f"{100 * e['accuracy']:.2f}",
                f"{-e['accuracy_drop']:+.2f}",
                "" if test is None else f"{100 * test:.2f}",
                "" if test is None else f"{100 * (test - teacher['test_accuracy']):+.2f}",
                f"{100 * e['agreement']:.1f}",
                f"{e['peak_rss_mb']:.0f}",
            ]
        )
    return out


def remeasure(rounds: int, threads: int, name: str) -> None:
    """Measure the bundles of the last run again, `rounds` times round-robin, and keep medians.

    Building takes most of a run; measuring is what a busy spell spoils. Round-robin, so that a
    busy spell hits every bundle alike, and medians, so that one outlier does not count.
    """
    from frugalml.compress.measure import measure_in_subprocess
    from frugalml.compress.report import markdown_table
    from frugalml.compress.result import speed_ratios
    from frugalml.compress.search import pareto_mask, select_candidate
    from frugalml.data import load_dataset

    document = json.loads((RESULTS / f"{name}.json").read_text())
    entries = [document["baseline"], *document["candidates"]]
    dev = load_dataset(in_repo(document["splits"]["selection"]))
    runs: dict[str, list[dict]] = {e["bundle_id"]: [] for e in entries}
    for round_number in range(rounds):
        for e in entries:
            print(f"round {round_number + 1}/{rounds}: {e['recipe']}", flush=True)
            runs[e["bundle_id"]].append(measure_in_subprocess(in_repo(e["bundle_path"]), dev, threads))
    for e in entries:
        for key in ("p50_ms", "p90_ms", "batch32_per_s"):
            e[key] = float(np.median([r[key] for r in runs[e["bundle_id"]]]))
            e[f"{key}_runs"] = [round(r[key], 3) for r in runs[e["bundle_id"]]]
    teacher = document["baseline"]
    for e in entries:
        e.update(speed_ratios(e, teacher))
    # Front and selection again with the new latencies (the library's own rules).
    accuracy, size, latency = ([e[k] for e in entries] for k in ("accuracy", "size_bytes", "p50_ms"))
    for e, on_front in zip(entries, pareto_mask(accuracy, size, latency), strict=True):
        e["pareto"] = bool(on_front)
    document["pareto"] = [e["bundle_id"] for e in entries if e["pareto"]]
    chosen = select_candidate(accuracy, size, latency, teacher["accuracy"], document["max_drop"])
    document["selected"] = entries[chosen]
    document["goal"]["met"] = goal_met(document["selected"])
    inference_env = runs[teacher["bundle_id"]][0]["inference_env"]  # as `frugalml serve` runs models
    document["remeasured"] = {
        "rounds": rounds,
        "threads": threads,
        "statistic": "median",
        "inference_env": inference_env,
    }
    document["rows"] = rows(document)
    save(document, name)
    print(markdown_table(COLUMNS, document["rows"]))


def goal_met(selected: dict) -> bool:
    return (
        selected["size_ratio"] >= GOAL["size_ratio"]
        and selected["throughput_ratio"] >= GOAL["throughput_ratio"]
        and selected["accuracy_drop"] <= GOAL["max_drop"]
    )


def save(document: dict, name: str) -> None:
    """NAME.json, the markdown table and the plot, from one results document."""
    from frugalml.compress.report import markdown_table, plot

    write_results(RESULTS / f"{name}.json", document)
    (RESULTS / f"{name}.md").write_text(markdown_table(COLUMNS, document["rows"]))
    plot(document, RESULTS / f"{name}.png")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--techniques", help="comma-separated; default: compress's defaults")
    parser.add_argument("--layers", help="student depths, comma-separated; default: chosen by compress")
    parser.add_argument("--heads", type=float, help="fraction of heads kept per layer")
    parser.add_argument("--ffn", help="fractions of FFN neurons kept per layer, comma-separated")
    parser.add_argument("--distill-epochs", type=int)
    parser.add_argument("--augment", type=int, help="perturbed copies per training text")
    parser.add_argument("--splice", type=float, help="share of those copies spliced from two texts")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-drop", type=float, default=GOAL["max_drop"])
    parser.add_argument(
        "--remeasure", type=int, metavar="ROUNDS", help="only measure the last run's bundles again"
    )
    parser.add_argument(
        "--name",
        help="results go to bench/results/NAME.{json,md,png} (default: compress, small-data mode "
        "compress_small)",
    )
    parser.add_argument("--per-class", type=int, help="small-data mode: labelled texts per intent")
    parser.add_argument("--draws", default="0", help="small-data mode: draws (seeds), comma-separated")
    parser.add_argument("--teacher", default="lora", help="small-data mode: the teacher's tuning method")
    args = parser.parse_args()
    name = args.name or ("compress_small" if args.per_class else "compress")
    if not use_banking77():
        return
    from frugalml.ui import quiet_libraries

    quiet_libraries()
    if args.remeasure:
        remeasure(args.remeasure, args.threads, name)
        return
    if args.per_class:
        import torch

        torch.set_num_threads(args.threads)
        given: dict = {"techniques": tuple(args.techniques.split(","))} if args.techniques else {}
        if args.splice is not None:
            given["splice"] = args.splice
        draws = [int(d) for d in args.draws.split(",")]
        small_data(args.per_class, draws, args.threads, given, args.teacher, name)
        return
    import torch

    from frugalml.compress import CompressConfig, compress_and_register
    from frugalml.data import load_dataset
    from frugalml.hashing import sha256_path
    from frugalml.lineage import open_store
    from frugalml.settings import get_settings
    from frugalml.ui import RichReporter, out, table

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    settings = get_settings()
    train, test = load_dataset(DATA / "train.csv"), load_dataset(DATA / "test.csv")
    fit_path, dev_path = selection_split(train)
    teacher = find_teacher(open_store(settings), sha256_path(fit_path)) or train_teacher(fit_path, settings)
    print(f"teacher: {teacher.id} ({teacher.name}, method {teacher.method})", flush=True)

    given = {  # the settings given on the command line; compress chooses the others
        "techniques": args.techniques and tuple(args.techniques.split(",")),
        "layers": args.layers and tuple(int(k) for k in args.layers.split(",")),
        "heads": args.heads,
        "ffn": args.ffn and tuple(float(f) for f in args.ffn.split(",")),
        "distill_epochs": args.distill_epochs,
        "augment_copies": args.augment,
        "splice": args.splice,
    }
    config = CompressConfig(
        max_drop=args.max_drop,
        threads=args.threads,
        keep="all",  # the benchmark reports every variant
        **{key: value for key, value in given.items() if value is not None},
    )
    result = compress_and_register(
        teacher.id, fit_path, dev_path, config, reporter=RichReporter(), settings=settings
    ).to_json()
    test_accuracy([result["baseline"], *result["candidates"]], test, args.threads)

    document = {
        "benchmark": "compress",
        "data": "BANKING77: candidates built from the train set minus the selection split",
        "machine": machine(args.threads),
        "teacher": {"bundle_id": teacher.id, "name": teacher.name, "method": teacher.method},
        "splits": {"fit": str(fit_path), "selection": str(dev_path), "test": str(DATA / "test.csv")},
        "config": dict(vars(args)),
        "goal": {**GOAL, "met": goal_met(result["selected"])},
        "wall_seconds": round(time.perf_counter() - started, 1),
        "columns": list(COLUMNS),
        "rows": rows(result),
        **result,
    }
    save(document, name)
    out.print(
        table(
            f"BANKING77 compression vs the fp32 PyTorch teacher ({args.threads} threads)",
            COLUMNS,
            rows(result),
        )
    )
    out.print(
        f"baseline drift over the measuring phase: p50 {100 * result['drift']['p50_ms']:+.0f}%, "
        f"batch-32 throughput {100 * result['drift']['batch32_per_s']:+.0f}% (large values: a busy machine)"
    )
    selected, met = result["selected"], document["goal"]["met"]
    out.print(
        f"selected {selected['recipe']}: {selected['size_ratio']:.1f}x smaller, "
        f"{selected['throughput_ratio']:.1f}x batch-32 throughput, "
        f"{selected['latency_ratio']:.1f}x faster at batch 1, {-selected['accuracy_drop']:+.2f} dev points, "
        f"{100 * (selected['test_accuracy'] - result['baseline']['test_accuracy']):+.2f} test points; "
        f"goal (>= 10x smaller, >= 4x throughput, <= 1 point) {'met' if met else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
