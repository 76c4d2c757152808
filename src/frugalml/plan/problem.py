"""The planning problem as arrays: each job's hours and cost on each resource type, and the plan.

A job runs whole on one machine of one type and takes `work_hours / speed(stage)` hours there.
On a machine that can be preempted at a rate of λ per hour, a job that restarts from its beginning
after each preemption takes (e^{λt} − 1) / λ hours on average: t·(1 + λt/2 + …), the expected
re-runs included. Machines run their jobs one after another, in the order of the jobs file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from frugalml.plan.spec import Catalog, Job, Resource

# e^{λt} beyond this exponent: the job would practically never finish on that machine.
_MAX_EXPONENT = 30.0


def expected_hours(hours: np.ndarray, preemption_per_hour: float) -> np.ndarray:
    """Expected run time of jobs of `hours` that restart from scratch after each preemption."""
    if preemption_per_hour == 0:
        return hours
    exponent = np.minimum(preemption_per_hour * hours, _MAX_EXPONENT)
    return np.where(exponent >= _MAX_EXPONENT, np.inf, np.expm1(exponent) / preemption_per_hour)


@dataclass
class Problem:
    """Jobs × resource types. `hours[j, t]` is inf where type t does not accept job j."""

    jobs: list[Job]
    resources: list[Resource]
    hours: np.ndarray
    price: np.ndarray
    count: np.ndarray
    machine_type: np.ndarray = field(init=False)  # the type of each machine, machines numbered 0..M-1
    first_machine: np.ndarray = field(init=False)  # the number of each type's machine 0

    def __post_init__(self) -> None:
        self.machine_type = np.repeat(np.arange(len(self.resources)), self.count)
        self.first_machine = np.concatenate([[0], np.cumsum(self.count)[:-1]]).astype(int)

    @property
    def cost(self) -> np.ndarray:
        """`cost[j, t]`: what job j costs on type t (inf where not accepted)."""
        with np.errstate(invalid="ignore"):
            return np.where(np.isfinite(self.hours), self.hours * self.price, np.inf)

    @property
    def n_machines(self) -> int:
        return len(self.machine_type)


def build_problem(jobs: list[Job], catalog: Catalog) -> Problem:
    resources = list(catalog.resources)
    hours = np.full((len(jobs), len(resources)), np.inf)
    for t, resource in enumerate(resources):
        accepted = np.array([resource.accepts(job) for job in jobs], dtype=bool)
        plain = np.array([job.work_hours / resource.speed_for(job.stage) for job in jobs])
        hours[:, t] = np.where(accepted, expected_hours(plain, resource.preemption_rate), np.inf)
    return Problem(
        jobs=jobs,
        resources=resources,
        hours=hours,
        price=np.array([r.price_per_hour for r in resources], dtype=float),
        count=np.array([r.count for r in resources], dtype=int),
    )


@dataclass
class Plan:
    """Which machine runs each job (`machine[j]`, numbered over all types), and how it was found.

    `lower_bound` bounds the objective from below: the cost when planning for a deadline, the
    makespan when planning for a budget."""

    problem: Problem
    machine: np.ndarray
    solver: str
    lower_bound: float
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def job_type(self) -> np.ndarray:
        return self.problem.machine_type[self.machine]

    @property
    def job_hours(self) -> np.ndarray:
        return self.problem.hours[np.arange(len(self.machine)), self.job_type]

    @property
    def cost(self) -> float:
        return float((self.job_hours * self.problem.price[self.job_type]).sum())

    def loads(self) -> np.ndarray:
        return np.bincount(self.machine, weights=self.job_hours, minlength=self.problem.n_machines)

    @property
    def makespan(self) -> float:
        return float(self.loads().max())

    def assignments(self) -> list[dict[str, Any]]:
        problem = self.problem
        finish = np.zeros(problem.n_machines)
        rows = []
        for j, (machine, hours) in enumerate(
            zip(self.machine.tolist(), self.job_hours.tolist(), strict=True)
        ):
            t = int(problem.machine_type[machine])
            rows.append(
                {
                    "job": problem.jobs[j].name,
                    "resource": problem.resources[t].name,
                    "machine": machine - int(problem.first_machine[t]),
                    "start_hours": float(finish[machine]),
                    "hours": hours,
                    "cost": hours * float(problem.price[t]),
                }
            )
            finish[machine] += hours
        return rows
