"""Labelling benchmark on BANKING77: auto-labelling, label-error detection, active learning.

    python bench/labelling.py                   # about 10 minutes on 2 cores (embeddings cached)
    python bench/labelling.py --fine-tune full  # (a) also with full fine-tuning: about 75 minutes

(a) 10 labelled examples per intent + the rest of train as the pool: test accuracy of a `head`
    tune (and with --fine-tune, that method) on seed + accepted auto-labels, beside the same
    tune on the 10-shot seed alone; mean and std over five different seed sets (the draws of one
    row differ by up to 1.4 points). The auto-labels carry `source = auto`, as `frugalml label auto`
    writes them, so tune validates on the human rows only.
(b) precision and coverage of the accepted auto-labels (target 0.95), against the true labels.
    (a) and (b) smooth the embeddings over each text's nearest rows as `label auto` does.
(c) 10 % and 20 % of train labels flipped at random: precision / recall / F1 of the flagged rows,
    beside cleanlab's usual recipe (out-of-fold logistic regression on TF-IDF features).
(d) active learning from 2 labels per intent, 77 more per round: test accuracy vs labels used for
    each strategy and random sampling; labels needed to reach 95 % of the full-data accuracy.

The test set is only ever used for evaluation. Embeddings (frozen MiniLM, the encoder every
labelling command uses by default) are computed once and cached under bench/.home. Writes
bench/results/labelling.json and bench/results/labelling_curves.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from _common import DATA, HOME, RESULTS, write_results

os.environ.setdefault("FRUGALML_HOME", str(HOME))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SEED_PER_INTENT = 10
NOISE_LEVELS = (0.1, 0.2)
AL_START_PER_INTENT = 2
AL_MAX_LABELS = 2310  # 30 per intent
STRATEGIES = ("margin", "entropy", "kcenter", "hybrid", "random")


def main() -> int:
    from frugalml.label.config import AutoLabelConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="active-learning runs per strategy (seeds)")
    parser.add_argument("--rounds", type=int, default=2, help="self-training rounds")
    parser.add_argument("--draws", type=int, default=5, help="10-per-intent seed sets for (a) and (b)")
    parser.add_argument(
        "--fine-tune",
        choices=["lora", "full"],
        help="(a) also tunes this method on the 10-shot seed and on seed + auto-labels (minutes per draw)",
    )
    parser.add_argument("--parts", default="a,c,d", help="parts to run; the others keep their last results")
    parser.add_argument(
        "--neighbours",
        type=int,
        default=AutoLabelConfig().neighbours,
        help="(a) and (b): smoothing neighbours, as `label auto --neighbours` (default: %(default)s)",
    )
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: BANKING77 not found at {DATA}")
        return 0

    from frugalml.data import load_dataset
    from frugalml.label.embeddings import embed

    started = time.perf_counter()
    train = load_dataset(DATA / "train.csv", label_column="category")
    test = load_dataset(DATA / "test.csv", label_column="category")
    names = train.label_names
    index = {label: i for i, label in enumerate(names)}
    y, y_test = (np.array([index[v] for v in d.labels]) for d in (train, test))
    t0 = time.perf_counter()
    x, x_test = embed(train.texts), embed(test.texts)
    embed_seconds = time.perf_counter() - t0

    from frugalml.label.probe import LinearProbe

    full_accuracy = accuracy(LinearProbe(len(names)).fit(x, y), x_test, y_test)
    results = {
        "data": "BANKING77 (train 10,003 / test 3,080, 77 intents)",
        "encoder": "frozen all-MiniLM-L6-v2, mean-pooled, L2-normalized",
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
        "embedding_seconds": round(embed_seconds, 1),
        "full_data_probe_accuracy": full_accuracy,
    }
    previous = (
        json.loads((RESULTS / "labelling.json").read_text()) if (RESULTS / "labelling.json").exists() else {}
    )
    parts = args.parts.split(",")
    results["auto_label"] = (
        bench_auto_label(
            train, test, x, y, x_test, y_test, names, args.rounds, args.draws, args.fine_tune, args.neighbours
        )
        if "a" in parts
        else previous["auto_label"]
    )
    results["label_issues"] = (
        bench_label_issues(train, x, y, names) if "c" in parts else previous["label_issues"]
    )
    results["active_learning"] = (
        bench_active_learning(x, y, x_test, y_test, full_accuracy, args.repeats)
        if "d" in parts
        else previous["active_learning"]
    )
    results["total_seconds"] = round(time.perf_counter() - started, 1)

    RESULTS.mkdir(parents=True, exist_ok=True)
    plot_curves(results["active_learning"], RESULTS / "labelling_curves.png")
    write_results(RESULTS / "labelling.json", results)
    print_tables(results)
    print(
        f"\nwrote {RESULTS / 'labelling.json'} and labelling_curves.png in {results['total_seconds']:.0f} s"
    )
    return 0


def accuracy(probe, x_test: np.ndarray, y_test: np.ndarray) -> float:
    return float((probe.logits(x_test).argmax(axis=1) == y_test).mean())


def per_class_sample(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(
        np.concatenate([rng.choice(np.flatnonzero(y == k), per_class, replace=False) for k in np.unique(y)])
    )


# ------------------------------------------------------------------------- (a) + (b)
def bench_auto_label(train, test, x, y, x_test, y_test, names, rounds, draws, fine_tune, neighbours) -> dict:
    """(a) and (b) on `draws` different 10-per-intent seed sets (a row's draws differ by up to 1.4)."""
    from frugalml.label.neighbours import smooth

    # As `label auto` does on seed + pool: here, every train row.
    smoothed = smooth(x, neighbours)
    runs = [
        auto_label_draw(train, test, smoothed, y, x_test, y_test, names, rounds, seed, fine_tune)
        for seed in range(draws)
    ]
    metrics = {
        "ten_shot_test_accuracy": ("ten_shot_head", "test_accuracy"),
        **{f"{rule}_{k}": (rule, k) for rule in RULES for k in PRECISION_KEYS},
        **{f"{rule}_self_trained_test_accuracy": (rule, "head_tune", "test_accuracy") for rule in RULES},
    }
    if fine_tune:
        metrics["ten_shot_fine_tuned_test_accuracy"] = ("ten_shot_fine_tune", "test_accuracy")
        for rule in RULES:
            metrics[f"{rule}_self_trained_fine_tuned_test_accuracy"] = (rule, "fine_tune", "test_accuracy")
    mean = {}
    for name, path in metrics.items():
        values = [_dig(run, path) for run in runs]
        mean[name] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
    return {
        "draws": draws,
        "seed_rows": runs[0]["seed_rows"],
        "pool_rows": runs[0]["pool_rows"],
        "target_precision": 0.95,
        "neighbours": neighbours,
        "fine_tune": fine_tune,
        "class_weight_on_auto_labels": AUTO_CLASS_WEIGHT,
        "mean": mean,
        "runs": runs,
    }


PRECISION_KEYS = ("estimated_precision", "measured_precision", "coverage")
# (a) tunes on the rows each threshold rule accepts: the Wilson bound (`label auto`'s default) and
# the point estimate (`--point-estimate`: a few more rows at a little less precision).
RULES = {"wilson_z1": 1.0, "point_estimate_z0": 0.0}  # name: z of the precision bound
AUTO_CLASS_WEIGHT = "balanced"  # tune's class_weight on seed + auto-labelled rows


def _dig(tree: dict, path: tuple[str, ...]):
    for key in path:
        tree = tree[key]
    return tree


def auto_label_draw(train, test, x, y, x_test, y_test, names, rounds, seed, fine_tune=None) -> dict:
    from frugalml.data import Dataset
    from frugalml.data.split import AUTO, SOURCE_COLUMN
    from frugalml.label.autolabel import self_train

    seed_rows = per_class_sample(y, SEED_PER_INTENT, seed=seed)
    pool_rows = np.setdiff1d(np.arange(len(y)), seed_rows)
    seed_set = train.subset(seed_rows.tolist())
    out: dict = {"draw": seed, "seed_rows": len(seed_rows), "pool_rows": len(pool_rows)}
    out["ten_shot_head"] = head_tune(seed_set, x_test, y_test, test)
    if fine_tune:
        out["ten_shot_fine_tune"] = method_tune(seed_set, fine_tune, test)

    for label, z in RULES.items():
        t0 = time.perf_counter()
        result = self_train(x[seed_rows], y[seed_rows], x[pool_rows], len(names), 0.95, rounds, z=z)
        seconds = time.perf_counter() - t0
        accepted = result.accepted
        truth = y[pool_rows]
        entry = {
            "rounds": rounds,
            "threshold": result.threshold,
            "estimated_precision": result.estimated_precision,
            "measured_precision": float((result.labels[accepted] == truth[accepted]).mean()),
            "coverage": float(accepted.mean()),
            "accepted": int(accepted.sum()),
            "pool_accuracy_all_rows": float((result.labels == truth).mean()),
            "seconds": round(seconds, 1),
            "history": result.history,
        }
        # Tune on seed + accepted rows, as `frugalml label auto` writes them.
        augmented = Dataset(
            texts=seed_set.texts + [train.texts[i] for i in pool_rows[accepted]],
            labels=seed_set.labels + [names[k] for k in result.labels[accepted]],
            ids=seed_set.ids + [train.ids[i] for i in pool_rows[accepted]],
            # Tune validates on the human rows only.
            extra={SOURCE_COLUMN: ["human"] * len(seed_set) + [AUTO] * int(accepted.sum())},
        )
        # Balanced classes: the seed set has 10 rows per intent, but auto-labelling accepts easy
        # intents far more often than hard ones (accepted_per_class: about 10 to 170 per intent).
        entry["accepted_per_class"] = _spread(np.bincount(result.labels[accepted], minlength=len(names)))
        entry["head_tune"] = head_tune(augmented, x_test, y_test, test, AUTO_CLASS_WEIGHT)
        if fine_tune:
            entry["fine_tune"] = method_tune(augmented, fine_tune, test, AUTO_CLASS_WEIGHT)
        out[label] = entry
    tuned = (
        f"{rule}: head {out[rule]['head_tune']['test_accuracy']:.4f}"
        + (f", {fine_tune} {out[rule]['fine_tune']['test_accuracy']:.4f}" if fine_tune else "")
        for rule in RULES
    )
    print(
        f"(a) draw {seed}: 10-shot {out['ten_shot_head']['test_accuracy']:.4f}; " + "; ".join(tuned),
        flush=True,
    )
    return out


def _spread(counts: np.ndarray) -> dict:
    return {"min": int(counts.min()), "median": float(np.median(counts)), "max": int(counts.max())}


def method_tune(dataset, method: str, test, class_weight: str | None = None) -> dict:
    """frugalml.tune with `method` and its default recipe; accuracy of the tuned model on test."""
    from frugalml.evaluate import evaluate
    from frugalml.runtime.torch_predictor import TorchPredictor
    from frugalml.tune import TuneConfig, tune

    result = tune(dataset, TuneConfig(method=method, class_weight=class_weight))
    report = evaluate(TorchPredictor(result.model, result.tokenizer, result.labels), test)
    return {
        "method": method,
        "train_rows": len(dataset),
        "test_accuracy": report.accuracy,
        "train_seconds": round(result.train_seconds, 1),
        "epoch_kept": min(result.history, key=lambda h: h["val_loss"])["epoch"],  # 0: frozen encoder
        "epochs_run": result.epochs_run,
    }


def head_tune(dataset, x_test, y_test, test, class_weight: str | None = None) -> dict:
    """frugalml.tune's `head` method on `dataset`; test accuracy from the tuned head."""
    from frugalml.runtime.torch_predictor import TorchPredictor
    from frugalml.tune import TuneConfig, tune

    result = tune(dataset, TuneConfig(method="head", class_weight=class_weight))
    head = result.model.classifier
    logits = x_test @ head.weight.detach().numpy().T + head.bias.detach().numpy()
    # The cached embeddings are the tuned model's own pooled vectors: check on a sample.
    sample = TorchPredictor(result.model, result.tokenizer, result.labels).predict_proba(test.texts[:64])
    assert (sample.argmax(axis=1) == logits[:64].argmax(axis=1)).all()
    assert result.labels == sorted(set(result.labels)) and len(result.labels) == logits.shape[1]
    return {
        "train_rows": len(dataset),
        "test_accuracy": float((logits.argmax(axis=1) == y_test).mean()),
        "train_seconds": round(result.train_seconds, 1),
        "head_c": result.history[0]["head_c"],
    }


# ------------------------------------------------------------------------- (c)
def prf(found: np.ndarray, flipped: np.ndarray) -> dict:
    hits = len(np.intersect1d(found, flipped))
    precision = hits / max(len(found), 1)
    recall = hits / len(flipped)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"flagged": len(found), "precision": precision, "recall": recall, "f1": f1}


def bench_label_issues(train, x, y, names) -> dict:
    from cleanlab.filter import find_label_issues
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    from frugalml.label.issues import find_issues

    tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform(train.texts)
    out = {}
    for noise in NOISE_LEVELS:
        rng = np.random.default_rng(1)
        flipped = rng.choice(len(y), int(noise * len(y)), replace=False)
        noisy = y.copy()
        noisy[flipped] = (y[flipped] + rng.integers(1, len(names), len(flipped))) % len(names)

        t0 = time.perf_counter()
        ours = find_issues(x, noisy, len(names))
        ours_seconds = time.perf_counter() - t0
        default_filter = np.flatnonzero(find_label_issues(noisy, ours.pred_probs))

        t0 = time.perf_counter()
        folds = StratifiedKFold(5, shuffle=True, random_state=0)
        with threadpool_limits(1, user_api="blas"):
            tfidf_probs = cross_val_predict(
                LogisticRegression(max_iter=1000), tfidf, noisy, cv=folds, method="predict_proba"
            )
        recipe = np.flatnonzero(find_label_issues(noisy, tfidf_probs))
        recipe_seconds = time.perf_counter() - t0
        recipe_ranked = np.flatnonzero(find_label_issues(noisy, tfidf_probs, filter_by="low_self_confidence"))
        hits = np.intersect1d(ours.rows, flipped)
        out[f"{int(noise * 100)}%"] = {
            "flipped": len(flipped),
            "frugalml": {
                **prf(ours.rows, flipped),
                "suggested_label_correct": float((ours.suggested[hits] == y[hits]).mean()),
                "probe_c": ours.c,
                "seconds": round(ours_seconds, 1),
            },
            "embeddings_cleanlab_default_filter": prf(default_filter, flipped),
            "tfidf_recipe": {**prf(recipe, flipped), "seconds": round(recipe_seconds, 1)},
            "tfidf_low_self_confidence": prf(recipe_ranked, flipped),
        }
    return out


# ------------------------------------------------------------------------- (d)
def bench_active_learning(x, y, x_test, y_test, full_accuracy, repeats) -> dict:
    from frugalml.label.active import suggest
    from frugalml.label.probe import LinearProbe

    n_classes = len(np.unique(y))
    batch = n_classes
    goal = 0.95 * full_accuracy
    curves: dict[str, list[list[float]]] = {s: [] for s in STRATEGIES}
    seconds = dict.fromkeys(STRATEGIES, 0.0)
    for repeat in range(repeats):
        start = per_class_sample(y, AL_START_PER_INTENT, seed=100 + repeat)
        for strategy in STRATEGIES:
            t0 = time.perf_counter()
            labelled = list(start)
            curve = []
            while True:
                probe = LinearProbe(n_classes).fit(x[labelled], y[labelled])
                curve.append(accuracy(probe, x_test, y_test))
                if len(labelled) >= AL_MAX_LABELS:
                    break
                pool = np.setdiff1d(np.arange(len(y)), labelled)
                picked = suggest(
                    strategy,
                    x[pool],
                    batch,
                    proba=probe.predict_proba(x[pool]),
                    x_labelled=x[labelled],
                    seed=repeat * 1000 + len(labelled),
                )
                labelled += pool[picked].tolist()
            curves[strategy].append(curve)
            seconds[strategy] += time.perf_counter() - t0
    sizes = [len(start) + batch * i for i in range(len(curves["random"][0]))]
    out = {
        "batch": batch,
        "start_labels": len(start),
        "goal_accuracy": goal,
        "repeats": repeats,
        "labels": sizes,
        "strategies": {},
    }
    for strategy, runs in curves.items():
        mean = np.mean(runs, axis=0)
        out["strategies"][strategy] = {
            "accuracy": mean.round(4).tolist(),
            "labels_to_goal": labels_to_reach(sizes, mean, goal),
            "seconds": round(seconds[strategy], 1),
        }
    random_needs = out["strategies"]["random"]["labels_to_goal"]
    for entry in out["strategies"].values():
        need = entry["labels_to_goal"]
        entry["fraction_of_random"] = need / random_needs if need and random_needs else None
    return out


def labels_to_reach(sizes: list[int], accuracy: np.ndarray, goal: float) -> float | None:
    """Labels at which the (linearly interpolated) curve first reaches `goal`; None if it never does."""
    above = np.flatnonzero(accuracy >= goal)
    if len(above) == 0:
        return None
    i = above[0]
    if i == 0:
        return float(sizes[0])
    a0, a1 = accuracy[i - 1], accuracy[i]
    return float(sizes[i - 1] + (goal - a0) / (a1 - a0) * (sizes[i] - sizes[i - 1]))


def plot_curves(active: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for strategy, entry in active["strategies"].items():
        style = "--" if strategy == "random" else "-"
        ax.plot(active["labels"], entry["accuracy"], style, label=strategy)
    ax.axhline(active["goal_accuracy"], color="grey", lw=0.8, ls=":", label="95 % of full-data accuracy")
    ax.set_xlabel("labels used")
    ax.set_ylabel("test accuracy")
    ax.set_title(
        f"BANKING77 active learning (frozen MiniLM + linear probe, mean of {active['repeats']} runs)"
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_tables(r: dict) -> None:
    a = r["auto_label"]
    m = a["mean"]

    def pm(name: str) -> str:
        return f"{m[name]['mean']:.4f} ± {m[name]['std']:.4f}"

    print(
        f"\n(a) test accuracy, 10 labels per intent ({a['seed_rows']} rows), pool {a['pool_rows']} rows, "
        f"mean ± std over {a['draws']} seed sets"
    )
    method = a.get("fine_tune")
    print(f"  {'head tune on 10-shot seed':50s} {pm('ten_shot_test_accuracy')}")
    if method:
        print(f"  {f'{method} tune on 10-shot seed':50s} {pm('ten_shot_fine_tuned_test_accuracy')}")
    for rule in RULES:
        print(
            f"  {f'head tune on seed + auto-labels ({rule})':50s} {pm(f'{rule}_self_trained_test_accuracy')}"
        )
        if method:
            name = f"{method} tune on seed + auto-labels ({rule})"
            print(f"  {name:50s} {pm(f'{rule}_self_trained_fine_tuned_test_accuracy')}")
    print(f"  full-data probe (reference)          {r['full_data_probe_accuracy']:.4f}")
    print("\n(b) accepted auto-labels at target precision 0.95")
    print("  threshold rule          estimated         measured          coverage")
    for name, rule in (("Wilson bound (default)", "wilson_z1"), ("point estimate", "point_estimate_z0")):
        print(f"  {name:22s}  " + "  ".join(pm(f"{rule}_{k}") for k in PRECISION_KEYS))
    print("\n(c) label-error detection (flagged rows vs flipped rows)")
    print("  noise  method                               precision  recall  F1")
    for noise, e in r["label_issues"].items():
        for key, name in (
            ("frugalml", "frugalml (MiniLM probe, self-confidence)"),
            ("embeddings_cleanlab_default_filter", "MiniLM probe, cleanlab default filter"),
            ("tfidf_recipe", "TF-IDF + LR, cleanlab default (recipe)"),
            ("tfidf_low_self_confidence", "TF-IDF + LR, self-confidence filter"),
        ):
            m = e[key]
            print(f"  {noise:5s}  {name:40s} {m['precision']:.4f}   {m['recall']:.4f}  {m['f1']:.4f}")
    al = r["active_learning"]
    print(
        f"\n(d) labels to reach {al['goal_accuracy']:.4f} test accuracy (95 % of full data), "
        f"from {al['start_labels']}, +{al['batch']} per round, mean of {al['repeats']} runs"
    )
    for strategy, e in al["strategies"].items():
        need = e["labels_to_goal"]
        frac = e["fraction_of_random"]
        print(
            f"  {strategy:8s} {need if need is None else round(need):>6}"
            f"   {'' if frac is None else f'{frac:.2f} x random'}"
        )


if __name__ == "__main__":
    sys.exit(main())
