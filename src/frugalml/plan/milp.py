"""The exact plan: a mixed-integer program solved by HiGHS (through scipy.optimize.milp).

One binary x[j, m] per job and machine that may run it: each job on exactly one machine, each
machine's hours within the deadline (or within the makespan variable T). Machines of one type are
interchangeable, so their loads are kept in descending order, which removes the copies of every
plan that differ only in machine numbering. HiGHS stops at `time_limit` seconds and reports the
best plan found with its proven bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from frugalml.plan.problem import Problem

# Relative gap at which HiGHS may stop: the plan is optimal to this fraction of its objective.
MIP_REL_GAP = 1e-6


@dataclass
class MilpResult:
    machine: np.ndarray | None  # the plan, None where none was found
    status: str  # optimal, time_limit or infeasible
    bound: float  # proven lower bound on the objective (cost, or makespan)
    gap: float | None  # (objective − bound) / objective


def n_pairs(problem: Problem, deadline: float | None) -> int:
    """How many binaries the program for `deadline` has, counted without building it."""
    ok = np.isfinite(problem.hours) & (problem.hours <= deadline if deadline is not None else True)
    return int((ok.sum(axis=0) * problem.count).sum())


def pairs(problem: Problem, deadline: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Every (job, machine) that may go together: the type accepts the job, within the deadline."""
    hours = problem.hours[:, problem.machine_type]
    ok = np.isfinite(hours) & (hours <= deadline if deadline is not None else True)
    jobs, machines = np.nonzero(ok)
    return jobs, machines


def solve_milp(
    problem: Problem,
    *,
    deadline: float | None = None,
    budget: float | None = None,
    time_limit: float = 10.0,
) -> MilpResult:
    """With `deadline`: the cheapest plan whose machines all finish by it. Without: the plan with
    the least makespan whose cost is within `budget` (any cost where None)."""
    n_jobs = len(problem.jobs)
    jobs, machines = pairs(problem, deadline)
    if len(np.unique(jobs)) < n_jobs:
        return MilpResult(None, "infeasible", np.inf, None)
    types = problem.machine_type[machines]
    hours = problem.hours[jobs, types]
    cost = hours * problem.price[types]
    n_x = len(jobs)
    makespan_mode = deadline is None
    n_vars = n_x + (1 if makespan_mode else 0)
    columns = np.arange(n_x)

    def matrix(rows: np.ndarray, values: np.ndarray, n_rows: int, extra: np.ndarray | None = None):
        block = sparse.csr_array((values, (rows, columns)), shape=(n_rows, n_x))
        if makespan_mode:
            last = extra if extra is not None else np.zeros(n_rows)
            block = sparse.hstack([block, sparse.csr_array(last.reshape(-1, 1))], format="csr")
        return block

    n_machines = problem.n_machines
    constraints = [
        LinearConstraint(matrix(jobs, np.ones(n_x), n_jobs), 1, 1),  # each job on one machine
        LinearConstraint(  # each machine within the deadline, or within T
            matrix(machines, hours, n_machines, -np.ones(n_machines) if makespan_mode else None),
            -np.inf,
            0 if makespan_mode else deadline,
        ),
    ]
    same_type = np.nonzero(problem.machine_type[:-1] == problem.machine_type[1:])[0]
    if len(same_type):  # load(m) ≥ load(m + 1) among machines of one type
        load = sparse.csr_array((hours, (machines, columns)), shape=(n_machines, n_x))
        order = load[same_type] - load[same_type + 1]
        if makespan_mode:
            order = sparse.hstack([order, sparse.csr_array((len(same_type), 1))], format="csr")
        constraints.append(LinearConstraint(order, 0, np.inf))
    if makespan_mode and budget is not None:
        constraints.append(LinearConstraint(matrix(np.zeros(n_x, int), cost, 1), -np.inf, budget))

    objective = np.zeros(n_vars) if makespan_mode else cost
    integrality = np.ones(n_vars)
    upper = np.ones(n_vars)
    if makespan_mode:
        objective[-1] = 1.0
        integrality[-1] = 0
        upper[-1] = np.inf
    result = milp(
        objective,
        integrality=integrality,
        bounds=Bounds(np.zeros(n_vars), upper),
        constraints=constraints,
        options={"time_limit": time_limit, "mip_rel_gap": MIP_REL_GAP, "disp": False},
    )
    if result.x is None:
        status = "infeasible" if result.status == 2 else "time_limit"
        return MilpResult(None, status, np.inf if status == "infeasible" else 0.0, None)
    chosen = result.x[:n_x] > 0.5
    machine = np.empty(n_jobs, dtype=int)
    machine[jobs[chosen]] = machines[chosen]
    bound = float(getattr(result, "mip_dual_bound", result.fun))
    gap = float(getattr(result, "mip_gap", 0.0))
    return MilpResult(machine, "optimal" if result.status == 0 else "time_limit", bound, max(gap, 0.0))
