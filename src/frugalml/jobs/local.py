"""The local backend: each job's supervisor is a detached process on this machine; together they
form a pool that respects CPU slots (FRUGALML_JOB_SLOTS, default the machine's CPU count).

A job waits `queued` until it is the oldest waiting local job and its `cpus` fit in the slots the
running ones leave free; then its supervisor runs its attempts and records the outcome.
"""

from __future__ import annotations

import math
import socket
import time
from functools import partial

from frugalml.errors import FrugalError, first_line
from frugalml.jobs.spec import JobSpec
from frugalml.jobs.store import open_supervised
from frugalml.jobs.supervisor import interrupt_on_sigterm, run_attempts
from frugalml.settings import Settings

SLOT_POLL_SECONDS = 0.25


def check(spec: JobSpec, address: str | None, settings: Settings) -> None:
    """Refuse at submission what this machine cannot run."""
    if address:
        raise FrugalError("--address names a Ray cluster: use it with --backend ray")
    if spec.resources or spec.accelerator_type:
        raise FrugalError("custom resources and accelerator types need --backend ray")
    if spec.cpus > settings.job_slots:
        raise FrugalError(
            f"the job asks for {spec.cpus:g} CPUs and the local pool has {settings.job_slots} slots "
            "(FRUGALML_JOB_SLOTS)"
        )
    if spec.gpus:
        import torch

        present = torch.cuda.device_count()
        if math.ceil(spec.gpus) > present:
            raise FrugalError(f"the job asks for {spec.gpus:g} GPUs and this machine has {present}")


def supervise(job_id: str) -> None:
    """Wait for a slot, run the attempts, record the outcome (`jobs cancel`: SIGTERM)."""
    settings, store, job, spec = open_supervised(job_id)
    with interrupt_on_sigterm():
        try:
            if spec.cpus > settings.job_slots:
                store.finish(job_id, "failed", f"needs {spec.cpus:g} CPUs; the pool has {settings.job_slots}")
                return
            while not store.claim_slot(job_id, settings.job_slots):
                if store.get(job_id)["status"] != "queued":
                    return  # cancelled while it waited
                time.sleep(SLOT_POLL_SECONDS)
            status, code = run_attempts(
                spec, job_id, cwd=job["cwd"], node=socket.gethostname(), emit=partial(store.apply, job_id)
            )
            store.finish(job_id, status, None if status == "succeeded" else f"exit status {code}")
        except KeyboardInterrupt:
            store.finish(job_id, *store.interrupted_outcome(job_id))
        except Exception as exc:
            store.finish(job_id, "failed", first_line(exc))
            raise
