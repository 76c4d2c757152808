"""Data-parallel training with torch.distributed: every worker holds the whole model and trains
on its shard of each batch; DDP averages the gradients, so N workers take the steps one would.

Workers start here as local processes (`torch.multiprocessing`, rendezvous on a free loopback
port) or as Ray Train workers on a Ray cluster (`ray.train.torch.TorchTrainer`). The process group
uses gloo on CPUs and NCCL on CUDA GPUs. Every worker runs the same training function; rank 0's
result is the run's, and only rank 0 writes checkpoints.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from frugalml.devices import resolve_device
from frugalml.errors import FrugalError
from frugalml.models.batching import run_model
from frugalml.tune.config import TuneCompute

Worker = Callable[..., Any]  # fn(*args, device=torch.device): the same on every rank
_RESULT = "result.pt"


def rank_and_size() -> tuple[int, int]:
    """This worker's rank and the number of workers (0 and 1 outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_and_size()[0] == 0


def shard(batch: np.ndarray) -> tuple[np.ndarray, float]:
    """This worker's rows of a batch, and the factor its loss takes so that DDP's average of the
    workers' gradients equals the gradient of the whole batch's loss. A worker left without a row
    (a last batch smaller than the workers) computes one row at factor 0: DDP needs every worker
    to join each step."""
    rank, size = rank_and_size()
    rows = batch[rank::size]
    if len(rows) == 0:
        return batch[:1], 0.0
    return rows, float(size)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The model as training calls it: DDP-wrapped inside a process group, else itself."""
    if rank_and_size()[1] == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_gather(value: Any) -> list[Any]:
    """Every worker's `value`, in rank order."""
    size = rank_and_size()[1]
    if size == 1:
        return [value]
    gathered: list[Any] = [None] * size
    dist.all_gather_object(gathered, value)
    return gathered


def features(model: nn.Module, token_ids: Sequence[Sequence[int]], pad: int) -> np.ndarray:
    """Sentence embeddings of every row; each worker embeds its share and all receive the whole."""
    rank, size = rank_and_size()
    if size == 1:
        return run_model(model, token_ids, pad, pool=True)
    mine = list(token_ids[rank::size])
    part = run_model(model, mine, pad, pool=True) if mine else None
    out: np.ndarray | None = None
    for r, values in enumerate(all_gather(part)):
        if values is None:
            continue
        if out is None:
            out = np.empty((len(token_ids), values.shape[1]), dtype=values.dtype)
        out[r::size] = values
    assert out is not None, "no rows to embed"
    return out


def launch(worker: Worker, args: tuple, compute: TuneCompute, storage: Path) -> Any:
    """Run `worker(*args, device=...)` on `compute.workers` workers; returns rank 0's result.
    `storage`: where Ray Train keeps the run's files (shared by every node of a cluster)."""
    if compute.backend == "ray":
        return _launch_ray(worker, args, compute, storage)
    return _launch_local(worker, args, compute)


def _worker_device(name: str | None, rank: int) -> torch.device:
    device = resolve_device(name)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", rank % torch.cuda.device_count())
    return device


def _backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def _launch_local(worker: Worker, args: tuple, compute: TuneCompute) -> Any:
    import torch.multiprocessing as mp

    resolve_device(compute.device)  # a device that is not here fails now, not in every worker
    threads = max(1, len(os.sched_getaffinity(0)) // compute.workers)
    with tempfile.TemporaryDirectory(prefix="frugalml-ddp-") as folder:
        context = mp.start_processes(
            _local_worker,
            args=(compute.workers, _free_port(), threads, compute.device, worker, args, folder),
            nprocs=compute.workers,
            join=False,
            start_method="spawn",
        )
        try:
            while not context.join():
                pass
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as exc:
            error = Path(folder, "error")
            if error.exists():
                raise FrugalError(error.read_text()) from None
            raise FrugalError(f"a training worker failed: {str(exc).strip().splitlines()[-1]}") from exc
        finally:
            for process in context.processes:  # an interrupted join leaves the others running
                if process.is_alive():
                    process.terminate()
                    process.join()
        return torch.load(Path(folder, _RESULT), weights_only=False)  # written just now by rank 0


def _local_worker(
    rank: int,
    size: int,
    port: int,
    threads: int,
    device_name: str | None,
    worker: Worker,
    args: tuple,
    folder: str,
) -> None:
    torch.set_num_threads(threads)
    device = _worker_device(device_name, rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        _backend(device), init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size
    )
    try:
        result = worker(*args, device=device)
        if rank == 0:
            torch.save(result, Path(folder, _RESULT))
        dist.barrier()
    except FrugalError as exc:
        Path(folder, "error").write_text(str(exc))
        raise
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch_ray(worker: Worker, args: tuple, compute: TuneCompute, storage: Path) -> Any:
    try:
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer
    except ImportError:
        raise FrugalError("--backend ray needs Ray: pip install 'frugalml[ray]'") from None

    started = not ray.is_initialized()
    if started:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private instance on this machine
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if compute.address is None:
            options["_temp_dir"] = tempfile.mkdtemp(prefix="frugalml-ray-", dir="/tmp")
        ray.init(address=compute.address, **options)
    try:
        resources = ray.cluster_resources()
        device = compute.device or "auto"
        use_gpu = device.startswith("cuda") or (device == "auto" and resources.get("GPU", 0) > 0)
        threads = max(1, int(resources.get("CPU", 1)) // compute.workers)
        trainer = TorchTrainer(
            _ray_worker,
            train_loop_config={"worker": worker, "args": args, "threads": threads},
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            scaling_config=ScalingConfig(
                num_workers=compute.workers, use_gpu=use_gpu, resources_per_worker={"CPU": threads}
            ),
            run_config=RunConfig(storage_path=str(storage.resolve()), name=f"tune-{os.getpid()}"),
        )
        result = trainer.fit()
    finally:
        if started:
            ray.shutdown()
    metrics = result.metrics or {}
    if metrics.get("error"):
        raise FrugalError(metrics["error"])
    assert result.checkpoint is not None, "rank 0 reports its result with a checkpoint"
    with result.checkpoint.as_directory() as folder:
        return torch.load(Path(folder, _RESULT), weights_only=False)  # written by rank 0 of this run


def _ray_worker(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    torch.set_num_threads(config["threads"])
    device = ray.train.torch.get_device()
    try:
        result = config["worker"](*config["args"], device=device)
    except FrugalError as exc:
        ray.train.report({"error": str(exc)})
        return
    if not is_main():
        ray.train.report({"error": ""})
        return
    with tempfile.TemporaryDirectory(prefix="frugalml-result-") as folder:
        torch.save(result, Path(folder, _RESULT))
        ray.train.report({"error": ""}, checkpoint=ray.train.Checkpoint.from_directory(folder))
