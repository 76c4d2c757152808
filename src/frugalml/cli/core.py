"""Core commands: tune and run (eval and predict: cli/scoring.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from frugalml import ui
from frugalml.cli.options import Device, Json, LabelColumn, TextColumn
from frugalml.errors import FrugalError

if TYPE_CHECKING:
    from frugalml.tune.workflow import TuneSummary


def tune(
    train: Annotated[
        Path,
        typer.Argument(
            help="Labelled training data: texts (CSV, JSONL, Parquet, HF folder) or images (a folder "
            "of class folders, a table with an image path column, a MedMNIST .npz)."
        ),
    ],
    eval: Annotated[Path | None, typer.Option("--eval", help="Labelled test data to report on.")] = None,
    method: Annotated[
        str | None, typer.Option(help="head | lora | ia3 | full | prompt | prefix | adapter (docs/tuning.md)")
    ] = None,
    base: Annotated[
        str | None, typer.Option(help="'minilm' (offline default) or a local HF model folder.")
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            help="Maximum epochs; default by data size (3 for 10k rows, up to 10 for small sets; "
            "images: 30 for 5,000, from 8 to 60)."
        ),
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Encoder learning rate (default: per method).")] = None,
    head_lr: Annotated[float | None, typer.Option(help="Classifier-head learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Training batch size.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for splits, shuffling and initialisation.")] = None,
    class_weight: Annotated[
        str | None,
        typer.Option(
            help="'balanced': every class counts the same in loss, head and validation, however "
            "many rows it has (skewed data, e.g. after `label auto`). Default: every row the same; "
            "for images 'auto' (balanced when the largest class has 1.5 times the smallest's rows)."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Images: cnn | resnet18 | mobilenet_v3_small. Default: cnn up to 64 pixels a side, "
            "resnet18 beyond (docs/vision.md)."
        ),
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option(help="Images: resize every image to this square size (default: the data's own size)."),
    ] = None,
    augment: Annotated[
        str | None,
        typer.Option(
            help="Images: auto | none | steps such as flip,rotate:10,crop:0.85,jitter:0.2 "
            "(auto: gentler for small images; docs/vision.md).",
            show_default="auto",
        ),
    ] = None,
    weights: Annotated[
        Path | None,
        typer.Option(
            help="Images: start from this local weights file (.safetensors or a PyTorch state dict)."
        ),
    ] = None,
    adversarial: Annotated[
        str | None,
        typer.Option(
            help="Train against perturbed word embeddings, for robustness to noisy input: fgm (one "
            "step), pgd (--steps projected steps) or freelb (--steps steps, gradients averaged)."
        ),
    ] = None,
    adv_epsilon: Annotated[
        float | None,
        typer.Option("--epsilon", help="Radius (L2, per example) of the perturbation.", show_default="1.0"),
    ] = None,
    adv_steps: Annotated[
        int | None, typer.Option("--steps", help="Ascent steps of pgd and freelb.", show_default="3")
    ] = None,
    rank: Annotated[
        int | None, typer.Option(help="--method lora: rank of the update matrices.", show_default="16")
    ] = None,
    alpha: Annotated[
        float | None, typer.Option(help="--method lora: scaling alpha.", show_default="32")
    ] = None,
    dropout: Annotated[
        float | None, typer.Option(help="--method lora: dropout on the LoRA input.", show_default="0.05")
    ] = None,
    targets: Annotated[
        str | None,
        typer.Option(
            help="--method lora: all-linear, or module names, comma-separated (e.g. query,value).",
            show_default="all-linear",
        ),
    ] = None,
    dora: Annotated[
        bool, typer.Option("--dora", help="--method lora: DoRA (weight-decomposed LoRA).")
    ] = False,
    rslora: Annotated[
        bool, typer.Option("--rslora", help="--method lora: rsLoRA scaling, alpha / sqrt(rank).")
    ] = False,
    prompt_length: Annotated[
        int | None,
        typer.Option(help="--method prompt: soft prompt vectors before every text.", show_default="20"),
    ] = None,
    prefix_length: Annotated[
        int | None,
        typer.Option(help="--method prefix: trained keys and values per attention layer.", show_default="16"),
    ] = None,
    adapter_reduction: Annotated[
        int | None,
        typer.Option(help="--method adapter: hidden size / bottleneck size.", show_default="16"),
    ] = None,
    adapter_placement: Annotated[
        str | None,
        typer.Option(
            help="--method adapter: pfeiffer (after each FFN) or houlsby (after attention too).",
            show_default="pfeiffer",
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Bundle name (default: the data file's stem).")] = None,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    device: Device = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Data-parallel workers (torch.distributed: gloo on CPUs, NCCL on GPUs).", min=1),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="local: worker processes here; ray: Ray Train workers (pip install 'frugalml\\[ray]')."
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to train on (default: a local Ray instance, stopped after)."),
    ] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option(help="Optimizer steps between checkpoints (0: none).", show_default="200")
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(help="Continue this killed run from its newest checkpoint (same data and settings)."),
    ] = None,
    json: Json = False,
) -> None:
    """Fine-tune a classifier and save it as a registered bundle.

    head (the default) trains only a classifier on the frozen encoder (seconds to a minute); lora,
    ia3 and full also adapt the encoder, starting from that head, with early stopping on a
    validation split. Options left out take frugalml.tune.TuneConfig's and TuneCompute's defaults.
    Fine-tuning checkpoints as it goes: a killed run continues with --resume RUN_ID (the run id is
    in the error, in `--json` output and in the lineage store) and ends as it would have.
    Images (class folders, image-path tables, MedMNIST .npz) train an image model instead, with
    --model, --image-size, --augment and --weights (docs/vision.md).
    """
    ui.quiet_libraries()
    from frugalml.data.images import is_image_data
    from frugalml.tune import TuneCompute, TuneConfig
    from frugalml.tune.workflow import tune_and_register

    image_options = {"--model": model, "--image-size": image_size, "--augment": augment, "--weights": weights}
    if is_image_data(train):
        text_options = {
            "--method": method, "--base": base, "--head-lr": head_lr, "--adversarial": adversarial,
            "--epsilon": adv_epsilon, "--steps": adv_steps, "--rank": rank, "--alpha": alpha,
            "--dropout": dropout, "--targets": targets, "--dora": dora or None, "--rslora": rslora or None,
            "--prompt-length": prompt_length, "--prefix-length": prefix_length,
            "--adapter-reduction": adapter_reduction, "--adapter-placement": adapter_placement,
            "--text-column": text_column, "--label-column": label_column, "--workers": workers,
            "--backend": backend, "--address": address, "--checkpoint-every": checkpoint_every,
            "--resume": resume,
        }  # fmt: skip
        _refuse_options(text_options, f"{train} holds images")
        summary = _tune_images(
            train, eval, name, device, model, image_size, augment, weights, epochs, lr, batch_size, seed,
            class_weight,
        )  # fmt: skip
        _show_tune(summary, json)
        return
    _refuse_options(image_options, f"{train} holds texts")

    compute = TuneCompute(
        **_given(
            device=device,
            workers=workers,
            backend=backend,
            address=address,
            checkpoint_every=checkpoint_every,
        )
    )

    config = TuneConfig(
        **_given(
            method=method,
            base=base,
            epochs=epochs,
            lr=lr,
            head_lr=head_lr,
            batch_size=batch_size,
            seed=seed,
            class_weight=class_weight,
            adversarial=adversarial,
            adv_epsilon=adv_epsilon,
            adv_steps=adv_steps,
            lora_r=rank,
            lora_alpha=alpha,
            lora_dropout=dropout,
            lora_targets=targets,
            lora_variant=_lora_variant(dora, rslora),
            prompt_length=prompt_length,
            prefix_length=prefix_length,
            adapter_reduction=adapter_reduction,
            adapter_placement=adapter_placement,
        )
    )
    summary = tune_and_register(
        train,
        config,
        eval_path=eval,
        name=name,
        columns={"text_column": text_column, "label_column": label_column},
        reporter=ui.RichReporter(),
        compute=compute,
        resume=resume,
    )
    _show_tune(summary, json)


def _refuse_options(given: dict[str, Any], reason: str) -> None:
    named = [option for option, value in given.items() if value is not None]
    if named:
        raise FrugalError(f"{', '.join(named)}: not for this data ({reason})")


def _tune_images(
    train: Path,
    eval: Path | None,
    name: str | None,
    device: str | None,
    model: str | None,
    image_size: int | None,
    augment: str | None,
    weights: Path | None,
    epochs: int | None,
    lr: float | None,
    batch_size: int | None,
    seed: int | None,
    class_weight: str | None,
) -> TuneSummary:
    from frugalml.tune import TuneCompute
    from frugalml.tune.config import ImageTuneConfig
    from frugalml.tune.image_workflow import tune_images_and_register

    given = _given(
        model=model,
        image_size=image_size,
        augment=augment,
        weights=None if weights is None else str(weights),
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
    )
    if class_weight is not None:
        given["class_weight"] = None if class_weight == "none" else class_weight
    config = ImageTuneConfig(**given)
    return tune_images_and_register(
        train,
        config,
        eval_path=eval,
        name=name,
        reporter=ui.RichReporter(),
        compute=TuneCompute(**_given(device=device)),
    )


def _show_tune(summary: TuneSummary, json: bool) -> None:
    if json:
        ui.emit_json(summary.to_json())
        return
    ui.out.print(_tune_table(summary))
    ui.out.print(f"bundle {summary.bundle_id} at {summary.bundle_path}")
    ui.out.print(f"serve it with:  {ui.command_name()} serve {summary.bundle_id}")


def _lora_variant(dora: bool, rslora: bool) -> str | None:
    if dora and rslora:
        raise FrugalError("--dora and --rslora are two LoRA variants: choose one")
    return "dora" if dora else "rslora" if rslora else None


def _given(**options: Any) -> dict[str, Any]:
    """The options the user gave: the config's defaults stand for the rest."""
    return {name: value for name, value in options.items() if value is not None}


def _tune_table(summary: TuneSummary) -> object:
    metrics = summary.metrics
    rows = [
        ("method", summary.method),
        ("model", summary.base if summary.task != "text-classification" else None),
        ("test accuracy", metrics.get("accuracy")),
        ("test macro-F1", metrics.get("macro_f1")),
        ("test ROC AUC", metrics.get("roc_auc")),
        ("validation accuracy", metrics.get("val_accuracy")),
        ("validation ROC AUC", metrics.get("val_auc")),
        ("trainable parameters", f"{summary.trainable_params:,} of {summary.total_params:,}"),
        ("adapter weights", ui.human_bytes(summary.adapter_bytes) if summary.adapter_bytes else None),
        ("epochs run", summary.epochs_run),
        ("workers", summary.workers if summary.workers > 1 else None),
        ("resumed from step", summary.resumed_from_step),
        ("train wall time", f"{summary.train_seconds:.1f} s"),
        ("peak memory (RSS)", f"{summary.peak_rss_mb:.0f} MB"),
        ("bundle size", ui.human_bytes(summary.size_bytes)),
    ]
    return ui.table("tune", ["key", "value"], [r for r in rows if r[1] is not None])


def run(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML file.")],
    force: Annotated[bool, typer.Option(help="Re-run every step, ignoring the cache.")] = False,
    json: Json = False,
) -> None:
    """Run a pipeline; steps whose inputs are unchanged are reused from the cache."""
    ui.quiet_libraries()
    from frugalml.pipeline import run_pipeline

    def show(step) -> None:
        state = "cached" if step.cached else "done"
        ui.err.print(f"[bold]step {step.id}[/] ({step.kind}): {state}")

    result = run_pipeline(pipeline, reporter=ui.RichReporter(), force=force, on_step=show)
    if json:
        ui.emit_json(
            {
                "name": result.name,
                "steps": [
                    {"id": s.id, "kind": s.kind, "cached": s.cached, "outputs": s.outputs}
                    for s in result.steps
                ],
            }
        )
        return
    rows = []
    for s in result.steps:
        metrics = s.outputs.get("metrics", s.outputs)
        rows.append(
            (
                s.id,
                s.kind,
                "cached" if s.cached else "ran",
                s.outputs.get("bundle_id"),
                metrics.get("accuracy"),
                metrics.get("macro_f1"),
            )
        )
    ui.out.print(
        ui.table(f"pipeline {result.name}", ["id", "kind", "status", "bundle", "accuracy", "macro-F1"], rows)
    )
    last_bundle = next(
        (s.outputs["bundle_id"] for s in reversed(result.steps) if "bundle_id" in s.outputs), None
    )
    if last_bundle:
        ui.out.print(f"serve the result with:  {ui.command_name()} serve {last_bundle}")
