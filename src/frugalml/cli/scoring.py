"""Scoring commands: eval (metrics and pictures of a bundle on labelled data) and predict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from frugalml import ui
from frugalml.cli.core import _given
from frugalml.cli.options import Device, Json, LabelColumn, TextColumn
from frugalml.errors import FrugalError


def eval_command(
    bundle: Annotated[str, typer.Argument(help="Bundle id (or unique prefix) or folder.")],
    data: Annotated[
        Path,
        typer.Argument(
            help="Labelled data of the bundle's task to evaluate on (a MedMNIST .npz: its test split)."
        ),
    ],
    confusion: Annotated[Path | None, typer.Option(help="Write a confusion-matrix PNG here.")] = None,
    wrong: Annotated[
        Path | None,
        typer.Option(help="Image models: write a PNG grid of the most confidently wrong images here."),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Inputs per model call.")] = None,
    perturb: Annotated[
        str | None,
        typer.Option(
            help="Also score on noisy copies of the texts, beside the clean score: typos[:RATE] "
            "(swapped, dropped, doubled or keyboard-neighbour letters) or words[:RATE] (dropped, "
            "repeated or moved words); RATE is the share of letters or words touched (default 0.1)."
        ),
    ] = None,
    perturb_seed: Annotated[
        int | None, typer.Option(help="Seed of the noise: the same seed, the same noisy texts.")
    ] = None,
    device: Device = None,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    json: Json = False,
) -> None:
    """Accuracy, macro-F1, ROC AUC and per-class scores of a bundle on labelled data.

    With --perturb, the same scores on seeded noisy copies of the texts and the drop from clean.
    Options left out take frugalml.evaluate.EvalConfig's defaults.
    """
    ui.quiet_libraries()
    from frugalml.evaluate import EvalConfig, plot_confusion
    from frugalml.evaluate.workflow import evaluate_bundle

    config = EvalConfig(
        **_given(batch_size=batch_size, device=device, perturb=perturb, perturb_seed=perturb_seed)
    )
    columns = {"text_column": text_column, "label_column": label_column}
    confusion, wrong = _png_path(confusion), _png_path(wrong)
    loaded, report = evaluate_bundle(bundle, data, columns, config=config, wrong=wrong)
    if confusion:
        plot_confusion(report, confusion)
    if json:
        ui.emit_json(
            {
                "bundle_id": loaded.id,
                **report.summary(),
                "per_class": report.per_class,
                "confusion_png": str(confusion) if confusion else None,
                **({"wrong_png": str(wrong)} if wrong else {}),
            }
        )
        return
    rows = [
        (label, s["precision"], s["recall"], s["f1-score"], int(s["support"]))
        for label, s in report.per_class.items()
    ]
    ui.out.print(ui.table(f"per class ({loaded.id})", ["label", "precision", "recall", "f1", "n"], rows))
    summary = report.summary()
    overall = {
        "n": report.n,
        "accuracy": report.accuracy,
        "macro-F1": report.macro_f1,
        "ROC AUC": report.roc_auc if report.unit == "images" else None,
        f"{report.unit}/s": summary[f"{report.unit}_per_second"],
    }
    shown = {k: v for k, v in overall.items() if v is not None}
    ui.out.print(ui.table("overall", list(shown), [tuple(shown.values())]))
    if report.perturbed is not None:
        noisy = report.perturbed
        ui.out.print(
            ui.table(
                f"robustness ({report.perturb}, seed {config.perturb_seed})",
                ["texts", "accuracy", "macro-F1"],
                [
                    ("clean", report.accuracy, report.macro_f1),
                    ("perturbed", noisy.accuracy, noisy.macro_f1),
                    ("drop", report.accuracy - noisy.accuracy, report.macro_f1 - noisy.macro_f1),
                ],
            )
        )
    if confusion:
        ui.out.print(f"confusion matrix: {confusion}")
    if wrong:
        ui.out.print(f"most confidently wrong images: {wrong}")


def _png_path(path: Path | None) -> Path | None:
    """`path`, with .png added unless it ends so; a folder is refused."""
    if path is None:
        return None
    path = path if path.suffix.lower() == ".png" else path.with_name(path.name + ".png")
    if path.is_dir():
        raise FrugalError(f"{path}: is a folder; name the PNG file to write")
    return path


def predict(
    bundle: Annotated[str, typer.Argument(help="Bundle id (or unique prefix) or folder.")],
    texts: Annotated[
        list[str], typer.Argument(help="One or more texts to classify (image files, for an image model).")
    ],
    device: Device = None,
    json: Json = False,
) -> None:
    """Classify texts, or image files, given on the command line."""
    ui.quiet_libraries()
    from frugalml.bundle import IMAGE_TASK
    from frugalml.devices import parse_device
    from frugalml.lineage import open_store, resolve_bundle
    from frugalml.runtime import load_predictor
    from frugalml.runtime.predictor import top_predictions

    device = parse_device(device)
    blank = [str(i) for i, text in enumerate(texts, 1) if not text.strip()]
    if blank:  # as in data files: an empty text has no label to give
        raise FrugalError(f"text {', '.join(blank)} is empty")
    loaded = resolve_bundle(bundle, open_store())
    inputs: list[Any] = list(texts)
    if loaded.task == IMAGE_TASK:
        from frugalml.data.images import image_array, open_image
        from frugalml.models.vision import load_image_config

        channels = load_image_config(loaded).channels
        inputs = [image_array(open_image(Path(file), file), channels) for file in texts]
    predictor = load_predictor(loaded, device=device)
    predictions = top_predictions(predictor.labels, predictor.predict_proba(inputs))
    if json:
        ui.emit_json(
            [{"text": t, "label": p.label, "score": p.score} for t, p in zip(texts, predictions, strict=True)]
        )
        return
    ui.out.print(
        ui.table(
            "predictions",
            ["text", "label", "score"],
            [(t, p.label, p.score) for t, p in zip(texts, predictions, strict=True)],
        )
    )
