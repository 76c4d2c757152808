"""What each part of distillation adds with little labelled data (issue 27), side by side.

    flock /tmp/frugalml-cpu.lock .venv/bin/python bench/distill.py --per-class 20 --draw 0

The data, selection split and LoRA teacher are small-data compress's (bench/compress.py
--per-class): `per-class` texts of each BANKING77 intent to train on, 10 more to select on. One
student is built as `compress` builds its default one (`prune` to half the layers and half the FFN
neurons, then `trim`), and distilled once per variant with compress's default transfer set and
epochs for that data size: logits only, plus the layer states, plus MiniLMv2's attention
relations, plus both; then with the layer states from freshly drawn layers instead of the teacher's
(what starting from the teacher's layers adds), and without the perturbed copies (what the transfer
set adds; epochs as compress chooses them for no copies), and with twice the epochs (what more
optimizer steps add); then with half or all of the copies spliced from two texts (`--splice`, of
the same intent or any) instead of perturbed; then started from the teacher's bottom layers, or
every other layer ending with the last, instead of evenly spaced ones. Each student is scored on
the selection split and the BANKING77 test set beside the teacher. Writes
bench/results/NAME.{json,md} (`--name`, default distill) and prints the table; a variant already
in the results for this draw and teacher is not repeated. `--variant NAME` (repeatable) runs some of them:

    .venv/bin/python bench/distill.py --variant "+ layer states" \
        --variant "+ layer states, twice the epochs" --name distill_steps
"""

from __future__ import annotations

import argparse
import json
import time

from _common import DATA, RESULTS, use_banking77, write_results
from compress import small_draw, small_teacher

VARIANTS = {  # name -> distill() options; copies spliced only where a variant says so
    "logits only": {"hidden": 0.0, "attention": 0.0, "splice": 0.0},
    "+ layer states": {"hidden": 1.0, "attention": 0.0, "splice": 0.0},
    "+ attention relations": {"hidden": 0.0, "attention": 1.0, "splice": 0.0},
    "+ layer states + attention relations": {"hidden": 1.0, "attention": 1.0, "splice": 0.0},
    # The student's layers drawn afresh instead of taken from the teacher, with the default losses.
    "+ layer states, fresh layers": {"hidden": 1.0, "attention": 0.0, "splice": 0.0},
    "+ layer states, labelled texts only": {"hidden": 1.0, "attention": 0.0, "augment_copies": 0},
    "+ layer states, twice the epochs": {
        "hidden": 1.0,
        "attention": 0.0,
        "splice": 0.0,
        "epochs_factor": 2,
    },
    # Some copies join the start of one text to the end of another: of the same intent, or any.
    "+ layer states, same-intent splices": {
        "hidden": 1.0,
        "attention": 0.0,
        "splice": 0.5,
        "splice_within": True,
    },
    "+ layer states, any-text splices": {"hidden": 1.0, "attention": 0.0, "splice": 0.5},
    "+ layer states, any-text splices only": {"hidden": 1.0, "attention": 0.0, "splice": 1.0},
    # Which of the teacher's layers the student starts from (default: evenly spaced, first and last
    # kept); the layer loss still matches them to the evenly spaced teacher layers.
    "+ layer states, bottom layers": {"hidden": 1.0, "attention": 0.0, "splice": 0.0, "keep": "bottom"},
    "+ layer states, every other layer": {"hidden": 1.0, "attention": 0.0, "splice": 0.0, "keep": "odd"},
}
FRESH = "+ layer states, fresh layers"
COLUMNS = ("variant", "dev acc %", "Δ dev pts", "test acc %", "Δ test pts", "agree %", "distill s")


def score(bundle, data) -> float:
    from frugalml.evaluate import evaluate
    from frugalml.runtime import load_predictor

    return evaluate(load_predictor(bundle), data).accuracy


def fresh_layers(student, context):
    """`student` with its encoder layers drawn afresh as BERT initialises them (embeddings, head and
    pruned-away blocks kept)."""
    import torch

    from frugalml.compress.context import derived_bundle, load_torch, save_torch
    from frugalml.compress.prune import encoder_layers, pruned_entries, rezero

    model, tokenizer = load_torch(student)
    zeroed = pruned_entries(model)
    torch.manual_seed(0)
    std = model.encoder.config.initializer_range
    with torch.no_grad():
        for module in encoder_layers(model).modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0.0, std)
                module.bias.zero_()
            elif isinstance(module, torch.nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
    rezero(zeroed)
    populate = save_torch(model, tokenizer)
    return derived_bundle(
        student, "fresh-layers", populate, context.store, format="torch", precision=student.precision
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-class", type=int, default=20, help="labelled texts per intent")
    parser.add_argument("--draw", type=int, default=0, help="draw (seed) of the labelled texts")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--force", action="store_true", help="rerun variants already in the results")
    parser.add_argument(
        "--variant", action="append", help="a variant to run, by name (repeatable; default: all)"
    )
    parser.add_argument("--name", default="distill", help="results go to bench/results/NAME.{json,md}")
    args = parser.parse_args()
    if not use_banking77():
        return
    import torch

    from frugalml.compress import CompressContext, apply_technique
    from frugalml.compress.defaults import augment_copies, distill_epochs, student_depths
    from frugalml.compress.report import markdown_table
    from frugalml.data import load_dataset
    from frugalml.models import load_bundle_config
    from frugalml.settings import get_settings
    from frugalml.ui import RichReporter, out, quiet_libraries, table

    quiet_libraries()
    torch.set_num_threads(args.threads)
    settings = get_settings()
    fit_path, dev_path = small_draw(load_dataset(DATA / "train.csv"), args.per_class, args.draw)
    fit, dev, test = load_dataset(fit_path), load_dataset(dev_path), load_dataset(DATA / "test.csv")
    teacher = small_teacher(fit_path, dev_path, settings)
    context = CompressContext(store=settings.bundles_dir, train=fit, teacher=teacher, reporter=RichReporter())
    n_teacher = int(load_bundle_config(teacher).encoder["num_hidden_layers"])
    layers = student_depths(n_teacher, 0.0)[0]
    kept = {  # the teacher layers a student starts from, as prune takes them
        "even": layers,
        "bottom": list(range(layers)),
        "odd": list(range(n_teacher - 2 * layers + 1, n_teacher, 2)),
    }
    students: dict[str, object] = {}

    def student_from(keep: str):
        if keep not in students:
            pruned = apply_technique("prune", teacher, context, layers=kept[keep], ffn=0.5)
            students[keep] = apply_technique("trim", pruned, context)
        return students[keep]

    copies = augment_copies(len(fit))
    epochs = distill_epochs(len(fit), copies)
    path = RESULTS / f"{args.name}.json"
    chosen = args.variant or list(VARIANTS)
    unknown = set(chosen) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    document = json.loads(path.read_text()) if path.exists() else {}
    same = (document.get("per_class"), document.get("draw")) == (args.per_class, args.draw)
    if not same or document["teacher"]["id"] != teacher.id:
        document = {
            "benchmark": "distill-losses",
            "per_class": args.per_class,
            "draw": args.draw,
            "teacher": {
                "id": teacher.id,
                "dev_accuracy": score(teacher, dev),
                "test_accuracy": score(teacher, test),
            },
            "student": {
                "layers": layers,
                "ffn": 0.5,
                "trim": True,
                "epochs": epochs,
                "augment_copies": copies,
            },
            "threads": args.threads,
            "runs": [],
        }
    done = {run["variant"] for run in document["runs"]} if not args.force else set()
    for name in chosen:
        if name in done:
            continue
        options = {"augment_copies": copies, **VARIANTS[name]}
        keep = options.pop("keep", "even")
        student = student_from(keep)
        start = fresh_layers(student, context) if name == FRESH else student
        factor = options.pop("epochs_factor", 1)
        options["epochs"] = factor * distill_epochs(len(fit), options["augment_copies"])
        started = time.perf_counter()
        distilled = apply_technique("distill", start, context, **options)
        seconds = time.perf_counter() - started
        run = {
            "variant": name,
            **options,
            **({"kept_layers": kept[keep]} if keep != "even" else {}),
            "dev_accuracy": score(distilled, dev),
            "test_accuracy": score(distilled, test),
            "teacher_agreement": distilled.metrics["teacher_agreement"],
            "distill_seconds": round(seconds, 1),
            "bundle": distilled.id,
        }
        document["runs"] = [r for r in document["runs"] if r["variant"] != name] + [run]
        write_results(path, document)
        print(
            f"{name}: dev {run['dev_accuracy']:.4f} test {run['test_accuracy']:.4f} ({seconds:.0f} s)",
            flush=True,
        )
    rows = table_rows(document)
    (RESULTS / f"{args.name}.md").write_text(markdown_table(COLUMNS, rows))
    out.print(
        table(f"distillation losses, {args.per_class} texts per intent, draw {args.draw}", COLUMNS, rows)
    )


def table_rows(document: dict) -> list[list]:
    teacher = document["teacher"]
    rows = [
        [
            "LoRA teacher (fp32)",
            f"{100 * teacher['dev_accuracy']:.2f}",
            "",
            f"{100 * teacher['test_accuracy']:.2f}",
            "",
            "",
            "",
        ]
    ]
    order = list(VARIANTS)
    for run in sorted(document["runs"], key=lambda r: order.index(r["variant"])):
        rows.append(
            [
                run["variant"],
                f"{100 * run['dev_accuracy']:.2f}",
                f"{100 * (run['dev_accuracy'] - teacher['dev_accuracy']):+.2f}",
                f"{100 * run['test_accuracy']:.2f}",
                f"{100 * (run['test_accuracy'] - teacher['test_accuracy']):+.2f}",
                f"{100 * run['teacher_agreement']:.1f}",
                f"{run['distill_seconds']:.0f}",
            ]
        )
    return rows


if __name__ == "__main__":
    main()
