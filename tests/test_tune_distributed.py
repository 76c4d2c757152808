"""Data-parallel tuning: 2 torch.distributed workers (gloo on CPU) take the steps one worker
takes, locally and through Ray Train; only rank 0 checkpoints; a GPU run where there is one."""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np
import pytest
import torch
from conftest import make_rows, write_csv

from frugalml.data import load_dataset
from frugalml.tune import TuneCompute, TuneConfig, tune
from frugalml.tune.checkpoint import checkpoints, read_checkpoint
from frugalml.tune.loop import Checkpointing


@pytest.fixture(scope="module")
def still_base(tiny_base, tmp_path_factory):
    """The tiny BERT without dropout in the encoder (the head keeps its own), for runs that should
    take the same steps."""
    from transformers import AutoModel, AutoTokenizer

    folder = tmp_path_factory.mktemp("still-bert")
    model = AutoModel.from_pretrained(tiny_base, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_base).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp-data")
    return {
        "train": load_dataset(write_csv(folder / "train.csv", make_rows(30, seed=1))),
        "test": load_dataset(write_csv(folder / "test.csv", make_rows(20, seed=2))),
    }


def _config(base, **overrides) -> TuneConfig:
    options = {"method": "full", "base": str(base), "epochs": 2, "batch_size": 8, "lr": 5e-3, **overrides}
    return TuneConfig(**options)


def _accuracy(result, dataset) -> float:
    from frugalml.runtime.torch_predictor import TorchPredictor

    probabilities = TorchPredictor(result.model, result.tokenizer, result.labels).predict_proba(dataset.texts)
    return float(np.mean(np.array(result.labels)[probabilities.argmax(1)] == np.array(dataset.labels)))


def _assert_same_steps(one, two) -> None:
    """Each epoch lowers the validation loss by the same amount (within 10 %) with 2 workers as
    with 1: at a learning rate this small the models stay close, so a worker that trained on
    other rows than its shard, or gradients that were not averaged, would show."""
    assert two.epochs_run == one.epochs_run == 2
    start = one.history[0]["val_loss"]
    assert two.history[0]["val_loss"] == start  # the same frozen encoder and warm-started head
    for a, b in zip(one.history[1:], two.history[1:], strict=True):
        gain_one, gain_two = start - a["val_loss"], start - b["val_loss"]
        assert gain_one > 0 and abs(gain_two - gain_one) < 0.1 * gain_one, (a, b)


SMALL_STEPS = {"lr": 1e-5, "head_lr": 1e-5, "warmup": 0.0}


@pytest.mark.slow  # starts worker processes: 30-80 s on 2 shared cores
def test_two_gloo_workers_take_the_steps_of_one(still_base, data, tmp_path):
    one = tune(data["train"], _config(still_base, **SMALL_STEPS))
    folder = tmp_path / "checkpoints"
    two = tune(
        data["train"],
        _config(still_base, **SMALL_STEPS),
        compute=TuneCompute(workers=2, device="cpu"),
        checkpointing=Checkpointing(folder, every=5, run_id="r2"),
    )
    _assert_same_steps(one, two)
    # Rank 0 alone writes, with both workers' random states.
    saved = [read_checkpoint(path) for path in checkpoints(folder)]
    assert [s["global_step"] for s in saved] == [15, 20] and all(len(s["random"]) == 2 for s in saved)


@pytest.mark.slow  # starts worker processes: 30-80 s on 2 shared cores
def test_two_workers_with_dropout_reach_one_workers_accuracy(tiny_base, data):
    one = tune(data["train"], _config(tiny_base))
    two = tune(data["train"], _config(tiny_base), compute=TuneCompute(workers=2))
    assert _accuracy(one, data["test"]) >= 0.9
    assert _accuracy(two, data["test"]) >= _accuracy(one, data["test"]) - 0.05  # within noise


@pytest.mark.slow  # starts worker processes: 30-80 s on 2 shared cores
def test_a_user_error_in_a_worker_is_one_clear_error(tiny_base, data):
    from frugalml.errors import FrugalError

    with pytest.raises(FrugalError, match="diverged"):  # an absurd learning rate
        tune(data["train"], _config(tiny_base, lr=1e6, head_lr=1e6), compute=TuneCompute(workers=2))


@pytest.mark.slow
def test_two_ray_train_workers_on_a_local_ray_instance(still_base, data, tmp_path):
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=temp,
        runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", ""), "HF_HUB_OFFLINE": "1"}},
    )
    try:
        two = tune(
            data["train"],
            _config(still_base, **SMALL_STEPS),
            compute=TuneCompute(workers=2, backend="ray", device="cpu"),
            storage=tmp_path / "ray",
        )
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    assert list((tmp_path / "ray").glob("tune-*")) == []  # the result was taken and its files removed
    _assert_same_steps(tune(data["train"], _config(still_base, **SMALL_STEPS)), two)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_tuning_on_a_gpu_ships_a_cpu_model(tiny_base, data):
    result = tune(data["train"], _config(tiny_base), compute=TuneCompute(device="cuda"))
    assert next(result.model.parameters()).device.type == "cpu"
    assert _accuracy(result, data["test"]) >= 0.9


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs 2 CUDA GPUs; this machine has fewer")
def test_two_nccl_workers_on_two_gpus(tiny_base, data):
    result = tune(data["train"], _config(tiny_base), compute=TuneCompute(device="cuda", workers=2))
    assert _accuracy(result, data["test"]) >= 0.9
