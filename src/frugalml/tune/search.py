"""`tune --search N`: hyper-parameter search with Optuna (TPE sampler, median pruner).

Each trial is a whole `tune` run with the trial's settings on top of the given config, recorded
in the lineage store like any other. Trials are scored on the validation split the recipe holds
out of the training data (the kept epoch's validation loss of the head that ships; accuracy on a
few hundred rows moves in coarse steps), never on an eval file: that one scores the best trial's
bundle once, after the search. A trial whose validation loss after an epoch is worse than the
median of earlier trials' at that epoch is pruned. The best trial's bundle stays registered; the
others' bundles are removed (their runs stay, with their settings and scores).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from frugalml.errors import FrugalError
from frugalml.evaluate.workflow import evaluate_bundle
from frugalml.lineage import open_store
from frugalml.progress import Reporter
from frugalml.settings import Settings, get_settings
from frugalml.tune.config import TuneCompute, TuneConfig
from frugalml.tune.methods import get_method
from frugalml.tune.workflow import TuneSummary, tune_and_register

# Per method, the setting that sizes what it trains, and the values tried.
SIZE_CHOICES: dict[str, tuple[str, list[int]]] = {
    "lora": ("lora_r", [4, 8, 16, 32]),
    "prefix": ("prefix_length", [4, 8, 16, 32]),
    "prompt": ("prompt_length", [8, 16, 32]),
    "adapter": ("adapter_reduction", [8, 16, 32, 64]),
}
EPOCHS = {"low": 2, "high": 8}


@dataclass(frozen=True)
class Trial:
    number: int
    state: str  # complete | pruned
    params: dict[str, Any]
    val_accuracy: float | None
    val_loss: float | None
    train_seconds: float | None
    bundle_id: str | None  # the best trial's only; the others' bundles are removed


@dataclass(frozen=True)
class SearchSummary:
    """The best trial's tune summary (with the eval file's scores), and every trial."""

    best: TuneSummary
    best_trial: int
    trials: list[Trial]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.best.to_json(),
            "best_trial": self.best_trial,
            "trials": [asdict(t) for t in self.trials],
        }


def default_space(config: TuneConfig) -> dict[str, Any]:
    """The encoder learning rate around the method's default, the epochs, and the method's size."""
    method = get_method(config.method)
    if not method.trains_encoder:  # the head alone: its regularization
        return {"head_c": {"low": 0.003, "high": 1.0, "log": True}}
    space: dict[str, Any] = {
        "lr": {"low": method.encoder_lr / 10, "high": method.encoder_lr * 3, "log": True},
        "epochs": EPOCHS,
    }
    if config.method in SIZE_CHOICES:
        name, values = SIZE_CHOICES[config.method]
        space[name] = values
    return space


def read_space(path: Path) -> dict[str, Any]:
    """A search space file: YAML mapping TuneConfig settings to a list of values (tried as
    choices) or {low, high, log} (a range; integers if both ends are)."""
    try:
        space = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise FrugalError(f"search space {path}: cannot be read ({str(exc).splitlines()[0]})") from None
    if not isinstance(space, dict) or not space:
        raise FrugalError(f"search space {path}: expected a mapping of settings to values or ranges")
    known = {f.name for f in fields(TuneConfig)} - {"method", "base", "seed", "parent"}
    for name, domain in space.items():
        if name not in known:
            raise FrugalError(
                f"search space {path}: unknown setting {name!r}; choose among {', '.join(sorted(known))}"
            )
        ok_range = isinstance(domain, dict) and {"low", "high"} <= set(domain) <= {"low", "high", "log"}
        if not (ok_range or (isinstance(domain, list) and domain)):
            raise FrugalError(
                f"search space {path}: {name} must be a list of values or {{low, high[, log]}}; "
                f"got {domain!r}"
            )
        if ok_range and not domain["low"] < domain["high"]:
            raise FrugalError(
                f"search space {path}: {name} needs low < high; got {domain['low']}, {domain['high']}"
            )
    return space


def search_and_register(
    train_path: str | Path,
    config: TuneConfig,
    trials: int,
    *,
    space: dict[str, Any] | None = None,
    eval_path: str | Path | None = None,
    name: str | None = None,
    columns: dict[str, str | None] | None = None,
    reporter: Reporter | None = None,
    settings: Settings | None = None,
    compute: TuneCompute | None = None,
) -> SearchSummary:
    """Run `trials` tune runs chosen by TPE, keep the best (on validation), score it on `eval_path`."""
    import optuna

    if trials < 1:
        raise FrugalError(f"--search needs at least 1 trial; got {trials}")
    settings = settings or get_settings()
    compute = replace(compute or TuneCompute(), checkpoint_every=0)  # a trial is not resumed
    if compute.workers != 1 or compute.backend != "local":
        raise FrugalError("--search runs its trials in this process: leave --workers and --backend out")
    space = space or default_space(config)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=config.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    summaries: dict[int, TuneSummary] = {}
    stem = name or Path(train_path).stem

    def objective(trial: optuna.Trial) -> float:
        params = {key: _suggest(trial, key, domain) for key, domain in space.items()}
        try:
            trial_config = replace(config, **params)
        except FrugalError as exc:  # a combination the config refuses: no run, the worst score
            raise optuna.TrialPruned(str(exc)) from None

        def on_epoch(epoch: int, val_loss: float) -> None:
            trial.report(val_loss, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")

        summary = tune_and_register(
            train_path,
            trial_config,
            name=f"{stem}-trial{trial.number}",
            columns=columns,
            reporter=reporter,
            settings=settings,
            compute=compute,
            on_epoch=on_epoch,
        )
        summaries[trial.number] = summary
        return float(summary.metrics["val_loss"])

    study.optimize(objective, n_trials=trials, catch=())
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise FrugalError(f"none of the {trials} trials finished (all pruned); run more trials")
    best_number = study.best_trial.number
    lineage = open_store(settings)
    for number, summary in summaries.items():
        if number != best_number:
            lineage.remove_bundle(summary.bundle_id)
    best = summaries[best_number]
    if eval_path is not None:  # the eval file scores the chosen bundle only
        _, report = evaluate_bundle(best.bundle_id, eval_path, columns, settings)
        scores = {"accuracy": report.accuracy, "macro_f1": report.macro_f1, "eval_n": report.n}
        lineage.update_bundle_metrics(best.bundle_id, scores)
        best = replace(best, metrics={**best.metrics, **scores})
    return SearchSummary(
        best=best,
        best_trial=best_number,
        trials=[
            Trial(
                number=t.number,
                state="complete" if t.state == optuna.trial.TrialState.COMPLETE else "pruned",
                params=t.params,
                val_accuracy=summaries[t.number].metrics["val_accuracy"] if t.number in summaries else None,
                val_loss=t.value,
                train_seconds=summaries[t.number].train_seconds if t.number in summaries else None,
                bundle_id=best.bundle_id if t.number == best_number else None,
            )
            for t in study.trials
        ],
    )


def _suggest(trial: Any, key: str, domain: Any) -> Any:
    if isinstance(domain, list):
        return trial.suggest_categorical(key, domain)
    low, high, log = domain["low"], domain["high"], bool(domain.get("log", False))
    if isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool):
        return trial.suggest_int(key, low, high, log=log)
    return trial.suggest_float(key, float(low), float(high), log=log)
