"""`frugalml tune`: one run, or a search over its settings (--search N)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from frugalml import ui
from frugalml.cli.options import Device, Json, LabelColumn, TextColumn, given
from frugalml.cli.tune_images import IMAGE_OPTIONS, SHARED_OPTIONS, options_given, refuse_options, tune_images
from frugalml.errors import FrugalError

if TYPE_CHECKING:
    from frugalml.tune import TuneCompute, TuneConfig
    from frugalml.tune.search import SearchSummary
    from frugalml.tune.workflow import TuneSummary


def tune(
    ctx: typer.Context,
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
    robust: Annotated[
        bool,
        typer.Option(
            "--robust",
            help="Train for noisy input with the recipe bench/methods.py measured best against typos "
            "(now: --noise typos:0.1 --noise-copies 2 --rank 32); options given explicitly win.",
        ),
    ] = False,
    noise: Annotated[
        str | None,
        typer.Option(
            help="Also train on noisy copies of the training rows (not the validation rows): "
            "typos[:RATE] or words[:RATE], as `eval --perturb`."
        ),
    ] = None,
    noise_copies: Annotated[
        int | None, typer.Option(help="Noisy copies of each training row, with --noise.", show_default="1")
    ] = None,
    noise_share: Annotated[
        float | None,
        typer.Option(
            help="Instead of copies: each epoch, this share of the training rows gets fresh --noise.",
        ),
    ] = None,
    rank: Annotated[
        int | None, typer.Option(help="--method lora: rank of the update matrices.", show_default="16")
    ] = None,
    alpha: Annotated[
        float | None, typer.Option(help="--method lora: scaling alpha.", show_default="2 x rank")
    ] = None,
    dropout: Annotated[
        float | None, typer.Option(help="--method lora: dropout on the LoRA input.", show_default="0.05")
    ] = None,
    targets: Annotated[
        str | None,
        typer.Option(
            help="--method lora: all-linear, or module names, comma-separated (e.g. query,value); "
            "--method ia3: module names (output.dense ones scale their input).",
            show_default="lora: all-linear; ia3: key,value,output.dense",
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
        typer.Option(help="--method prompt: soft prompt vectors before every text.", show_default="8"),
    ] = None,
    prefix_length: Annotated[
        int | None,
        typer.Option(help="--method prefix: trained keys and values per attention layer.", show_default="16"),
    ] = None,
    prefix_mlp: Annotated[
        int | None,
        typer.Option(
            help="--method prefix: train the prefixes through an MLP of this hidden width "
            "(reparameterisation), merged into plain prefixes in the bundle.",
            show_default="0: none",
        ),
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
    parent: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Continue from this registered bundle (id or folder): its encoder and method weights "
            "carry over, its head rows start the labels both have.",
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
    search: Annotated[
        int | None,
        typer.Option(
            help="Search the settings with N Optuna trials (TPE, median pruning), each a tune run; "
            "the best on the validation split is kept (never chosen on --eval).",
            min=1,
        ),
    ] = None,
    search_space: Annotated[
        Path | None,
        typer.Option(
            help="YAML: setting -> list of values, or {low, high, log}. Default: lr around the "
            "method's, epochs 2-8, and rank / prefix or prompt length / reduction factor.",
        ),
    ] = None,
    json: Json = False,
) -> None:
    """Fine-tune a classifier and save it as a registered bundle.

    head (the default) trains only a classifier on the frozen encoder (seconds to a minute); lora,
    ia3 and full also adapt the encoder, starting from that head, with early stopping on a
    validation split. Options left out take frugalml.tune.TuneConfig's and TuneCompute's defaults.
    Fine-tuning checkpoints as it goes: a killed run continues with --resume RUN_ID (the run id is
    in the error, in `--json` output and in the lineage store) and ends as it would have.
    With --search N, N runs try other settings and the best on the validation split is kept.
    Images (class folders, image-path tables, MedMNIST .npz) train an image model instead, with
    --model, --image-size, --augment and --weights (docs/vision.md).
    """
    ui.quiet_libraries()
    from frugalml.data.images import is_image_data
    from frugalml.tune import TuneCompute, TuneConfig
    from frugalml.tune.workflow import tune_and_register

    given_flags = options_given(ctx)
    if is_image_data(train):
        refuse_options(
            [flag for option, flag in given_flags.items() if option not in IMAGE_OPTIONS | SHARED_OPTIONS],
            f"{train} holds images",
        )
        summary = tune_images(
            train, eval, name, device, model, image_size, augment, weights, epochs, lr, batch_size, seed,
            class_weight,
        )  # fmt: skip
        _show_tune(summary, json)
        return
    refuse_options(
        [flag for option, flag in given_flags.items() if option in IMAGE_OPTIONS], f"{train} holds texts"
    )

    compute = TuneCompute(
        **given(
            device=device,
            workers=workers,
            backend=backend,
            address=address,
            checkpoint_every=checkpoint_every,
        )
    )

    config = TuneConfig(
        **given(
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
            parent=parent,
            noise=noise,
            noise_copies=noise_copies,
            noise_share=noise_share,
            robust=robust or None,
            lora_r=rank,
            lora_alpha=alpha,
            lora_dropout=dropout,
            lora_targets=targets if method != "ia3" else None,
            ia3_targets=targets if method == "ia3" else None,
            lora_variant=_lora_variant(dora, rslora),
            prompt_length=prompt_length,
            prefix_length=prefix_length,
            prefix_mlp=prefix_mlp,
            adapter_reduction=adapter_reduction,
            adapter_placement=adapter_placement,
        )
    )
    columns = {"text_column": text_column, "label_column": label_column}
    if search is not None or search_space is not None:
        if resume is not None:
            raise FrugalError("--resume continues one run; a --search starts its own")
        _search(train, config, compute, search or 10, search_space, eval, name, columns, json)
        return
    summary = tune_and_register(
        train,
        config,
        eval_path=eval,
        name=name,
        columns=columns,
        reporter=ui.RichReporter(),
        compute=compute,
        resume=resume,
    )
    _show_tune(summary, json)


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


def _search(
    train: Path,
    config: TuneConfig,
    compute: TuneCompute,
    trials: int,
    space_file: Path | None,
    eval_path: Path | None,
    name: str | None,
    columns: dict[str, str | None],
    json: bool,
) -> None:
    from frugalml.tune.search import read_space, search_and_register

    result = search_and_register(
        train,
        config,
        trials,
        space=read_space(space_file) if space_file is not None else None,
        eval_path=eval_path,
        name=name,
        columns=columns,
        reporter=ui.RichReporter(),
        compute=compute,
    )
    if json:
        ui.emit_json(result.to_json())
        return
    ui.out.print(_trials_table(result))
    ui.out.print(_tune_table(result.best))
    ui.out.print(
        f"best: trial {result.best_trial}, bundle {result.best.bundle_id} at {result.best.bundle_path}"
    )


def _trials_table(result: SearchSummary) -> object:
    names = sorted({k for t in result.trials for k in t.params})
    rows = [
        [
            f"{t.number}{' (best)' if t.number == result.best_trial else ''}",
            t.state,
            *(t.params.get(n) for n in names),
            t.val_accuracy,
            t.val_loss,
            None if t.train_seconds is None else f"{t.train_seconds:.1f} s",
        ]
        for t in result.trials
    ]
    columns = ["trial", "state", *names, "val accuracy", "val loss", "train time"]
    return ui.table("search (validation split)", columns, rows)
