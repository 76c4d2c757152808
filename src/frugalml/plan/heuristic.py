"""The plan for sizes beyond the exact program: an LP relaxation, rounded, packed and improved.

1. **Relaxation and bound.** Drop the machines and keep each type's pooled hours: the linear
   program "min Σ cost[j,t]·y[j,t] subject to Σ_t y[j,t] = 1, Σ_j hours[j,t]·y[j,t] ≤
   count[t]·deadline, y ≥ 0" (y[j,t] = 0 where the job would overrun the deadline on one machine of
   type t). Every plan is a solution of it, so its optimum is a lower bound on the cost of every
   plan; a basic optimum splits at most one job per type, and HiGHS returns one.
2. **Rounding and packing.** Each job goes to the type holding its largest share; each type's jobs
   are packed longest first onto its least-loaded machine (LPT). Jobs that do not fit go, longest
   first, to the cheapest type with a machine that still has room.
3. **Improvement.** Jobs move to a cheaper type wherever a machine has room for them (best fit),
   until no move saves money.
If this finds nothing, the plan that finishes earliest (below) improved the same way is tried.

For the least makespan: the earliest-completion-time list schedule (jobs longest first, each to the
machine where it would finish first), and the LP "min T subject to Σ_j hours[j,t]·y[j,t] ≤
count[t]·T" with T at least every job's shortest run as its lower bound.
"""

from __future__ import annotations

import heapq

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from frugalml.plan.problem import Problem

_EPS = 1e-9


def lp_relaxation(
    problem: Problem, deadline: float | None, budget: float | None = None
) -> tuple[np.ndarray | None, float]:
    """With `deadline`: the relaxation's shares y (jobs × types) and its cost, a lower bound on every
    plan's cost (None, inf where even the relaxation is infeasible). Without: the shares and the least
    makespan T of the relaxation whose cost is within `budget`, a lower bound on every plan's."""
    n_jobs, n_types = problem.hours.shape
    allowed = np.isfinite(problem.hours)
    if deadline is not None:
        allowed &= problem.hours <= deadline * (1 + _EPS)
    if not allowed.any(axis=1).all():
        return None, np.inf
    jobs, types = np.nonzero(allowed)
    hours = problem.hours[jobs, types]
    cost = hours * problem.price[types]
    n_y = len(jobs)
    columns = np.arange(n_y)
    assign = sparse.csr_array((np.ones(n_y), (jobs, columns)), shape=(n_jobs, n_y))
    capacity = sparse.csr_array((hours, (types, columns)), shape=(n_types, n_y))
    if deadline is not None:
        result = linprog(
            cost,
            A_ub=capacity,
            b_ub=problem.count * deadline,
            A_eq=assign,
            b_eq=np.ones(n_jobs),
            bounds=(0, None),
            method="highs",
        )
    else:
        shortest = float(np.where(allowed, problem.hours, np.inf).min(axis=1).max())
        a_ub = sparse.hstack([capacity, sparse.csr_array(-problem.count.reshape(-1, 1).astype(float))])
        b_ub = np.zeros(n_types)
        if budget is not None:
            a_ub = sparse.vstack([a_ub, sparse.csr_array(np.append(cost, 0.0).reshape(1, -1))])
            b_ub = np.append(b_ub, budget)
        result = linprog(
            np.append(np.zeros(n_y), 1.0),
            A_ub=a_ub.tocsr(),
            b_ub=b_ub,
            A_eq=sparse.hstack([assign, sparse.csr_array((n_jobs, 1))]).tocsr(),
            b_eq=np.ones(n_jobs),
            bounds=[(0, None)] * n_y + [(shortest, None)],
            method="highs",
        )
    if result.status != 0:
        return None, np.inf
    shares = np.zeros((n_jobs, n_types))
    shares[jobs, types] = result.x[:n_y]
    return shares, float(result.fun)


def cheapest_plan(problem: Problem, deadline: float, shares: np.ndarray | None = None) -> np.ndarray | None:
    """A plan (the machine of each job) whose machines all finish by `deadline`, low in cost;
    None where none was found. `shares`: the relaxation's, where the caller has solved it."""
    if shares is None:
        shares, _ = lp_relaxation(problem, deadline)
    if shares is None:
        return None
    machine = _pack(problem, shares.argmax(axis=1), deadline)
    if machine is None:
        machine = earliest_finish_plan(problem)
        if _loads(problem, machine).max() > deadline * (1 + _EPS):
            return None
    return _improve(problem, machine, deadline)


def pack_on_types(problem: Problem, job_type: np.ndarray) -> np.ndarray:
    """Each job on its given type, packed longest first onto the least-loaded machine (no deadline)."""
    machine = _pack(problem, job_type, np.inf)
    assert machine is not None  # without a deadline every job fits
    return machine


def earliest_finish_plan(problem: Problem) -> np.ndarray:
    """Jobs longest first, each to the machine where it would finish earliest."""
    loads = np.zeros(problem.n_machines)
    machine = np.empty(len(problem.jobs), dtype=int)
    for j in np.argsort(-problem.hours.min(axis=1), kind="stable"):
        finish = loads + problem.hours[j, problem.machine_type]
        m = int(np.argmin(finish))
        machine[j] = m
        loads[m] = finish[m]
    return machine


def _loads(problem: Problem, machine: np.ndarray) -> np.ndarray:
    hours = problem.hours[np.arange(len(machine)), problem.machine_type[machine]]
    return np.bincount(machine, weights=hours, minlength=problem.n_machines)


def _pack(problem: Problem, job_type: np.ndarray, deadline: float) -> np.ndarray | None:
    limit = deadline * (1 + _EPS)
    machine = np.full(len(job_type), -1)
    loads = np.zeros(problem.n_machines)
    overflow = []
    for t in range(len(problem.resources)):
        mine = np.nonzero(job_type == t)[0]
        first = int(problem.first_machine[t])
        heap = [(0.0, first + k) for k in range(int(problem.count[t]))]
        for j in mine[np.argsort(-problem.hours[mine, t], kind="stable")]:
            load, m = heap[0]
            if load + problem.hours[j, t] <= limit:
                machine[j] = m
                loads[m] = load + problem.hours[j, t]
                heapq.heapreplace(heap, (loads[m], m))
            else:
                overflow.append(j)
    cost = problem.cost
    for j in sorted(overflow, key=lambda j: -problem.hours[j].min()):
        for t in np.argsort(cost[j], kind="stable")[: int(np.isfinite(cost[j]).sum())]:
            span = slice(int(problem.first_machine[t]), int(problem.first_machine[t] + problem.count[t]))
            m = span.start + int(np.argmin(loads[span]))
            if loads[m] + problem.hours[j, t] <= limit:
                machine[j] = m
                loads[m] += problem.hours[j, t]
                break
        if machine[j] < 0:  # no type has room for it
            return None
    return machine


def _improve(problem: Problem, machine: np.ndarray, deadline: float) -> np.ndarray:
    """Move jobs to cheaper types while a machine there has room (the fullest that fits)."""
    limit = deadline * (1 + _EPS)
    machine = machine.copy()
    cost = problem.cost
    loads = _loads(problem, machine)
    for _ in range(5):
        now = cost[np.arange(len(machine)), problem.machine_type[machine]]
        saving = now - cost.min(axis=1)
        moved = False
        for j in np.argsort(-saving, kind="stable"):
            if saving[j] <= 0:
                break
            current_type = problem.machine_type[machine[j]]
            for t in np.argsort(cost[j], kind="stable"):
                if cost[j, t] >= cost[j, current_type] - _EPS:
                    break
                start = int(problem.first_machine[t])
                span = loads[start : start + int(problem.count[t])]
                room = span + problem.hours[j, t] <= limit
                if room.any():
                    m = start + int(np.argmax(np.where(room, span, -np.inf)))
                    loads[machine[j]] -= problem.hours[j, current_type]
                    loads[m] += problem.hours[j, t]
                    machine[j] = m
                    moved = True
                    break
        if not moved:
            break
    return machine
