"""Choosing a plan: the cheapest within a deadline, or the fastest within a budget.

`auto` runs the heuristic always and the exact program where it has at most EXACT_MAX_PAIRS
job-machine pairs (unless the heuristic's plan already meets the relaxation's bound), and keeps the
better plan; the lower bound is the better of the two bounds.
For a budget the heuristic bisects on the deadline: the least deadline whose cheapest plan it
finds is within the budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from frugalml.errors import FrugalError
from frugalml.plan.heuristic import cheapest_plan, earliest_finish_plan, lp_relaxation, pack_on_types
from frugalml.plan.milp import n_pairs, solve_milp
from frugalml.plan.problem import Plan, Problem

SOLVERS = ("auto", "milp", "heuristic")
# Past this many (job, machine) pairs `auto` leaves the exact program out.
EXACT_MAX_PAIRS = 5_000
# Past this many `--solver milp` is refused: the program alone would take gigabytes.
MILP_MAX_PAIRS = 500_000
# Bisection on the deadline stops when its bracket is this narrow, relative to its top.
_BISECTION_TOLERANCE = 1e-3


class InfeasiblePlan(FrugalError):
    """No plan meets the deadline or the budget; the message says what the best one achieves."""

    def __init__(self, message: str, fastest_makespan: float | None, cheapest_cost: float | None):
        super().__init__(message)
        self.fastest_makespan = fastest_makespan
        self.cheapest_cost = cheapest_cost


@dataclass
class Fastest:
    makespan: float  # of a plan found
    bound: float  # no plan is faster
    exact: bool


def fastest(problem: Problem, *, solver: str = "auto", time_limit: float = 10.0) -> Fastest:
    """The least makespan of any plan, whatever it costs."""
    machine = earliest_finish_plan(problem)
    makespan = float(np.bincount(machine, weights=_hours(problem, machine)).max())
    _, bound = lp_relaxation(problem, None)
    if _use_exact(problem, None, solver):
        exact = solve_milp(problem, time_limit=time_limit)
        if exact.machine is not None:
            found = float(np.bincount(exact.machine, weights=_hours(problem, exact.machine)).max())
            makespan = min(makespan, found)
            bound = max(bound, exact.bound)
    return Fastest(makespan, min(bound, makespan), makespan - bound <= 1e-6 * makespan)


def plan_for_deadline(
    problem: Problem, deadline: float, *, solver: str = "auto", time_limit: float = 10.0
) -> Plan:
    """The cheapest plan whose machines all finish within `deadline` hours."""
    if deadline <= 0:
        raise FrugalError(f"--deadline must be positive hours, not {deadline:g}")
    started = time.perf_counter()
    _check_solver(solver)
    chosen, proven_infeasible = _cheapest(problem, deadline, solver, time_limit)
    if chosen is None:
        best = fastest(problem, solver=solver, time_limit=time_limit)
        raise InfeasiblePlan(_too_tight(deadline, best, proven_infeasible), best.makespan, None)
    chosen.seconds = time.perf_counter() - started
    return chosen


def _cheapest(problem: Problem, deadline: float, solver: str, time_limit: float) -> tuple[Plan | None, bool]:
    """The cheapest plan found within `deadline` (None if none), and whether none exists."""
    candidates: list[Plan] = []
    shares, bound = lp_relaxation(problem, deadline)
    proven_infeasible = shares is None
    if solver != "milp" and shares is not None:
        machine = cheapest_plan(problem, deadline, shares)
        if machine is not None:
            candidates.append(Plan(problem, machine, "heuristic", bound))
    optimal = bool(candidates) and candidates[0].cost <= bound * (1 + 1e-9)  # meets the bound
    if _use_exact(problem, deadline, solver) and not proven_infeasible and not (optimal and solver == "auto"):
        exact = solve_milp(problem, deadline=deadline, time_limit=time_limit)
        proven_infeasible = exact.status == "infeasible"
        bound = max(bound, exact.bound) if not proven_infeasible else bound
        if exact.machine is not None:
            candidates.append(Plan(problem, exact.machine, f"milp ({exact.status})", bound))
    if not candidates:
        return None, proven_infeasible
    chosen = min(candidates, key=lambda plan: plan.cost)
    chosen.lower_bound = min(bound, chosen.cost)
    return chosen, False


def plan_for_budget(
    problem: Problem, budget: float, *, solver: str = "auto", time_limit: float = 10.0
) -> Plan:
    """The plan with the least makespan whose cost is within `budget` dollars."""
    started = time.perf_counter()
    _check_solver(solver)
    cheapest_cost = float(problem.cost.min(axis=1).sum())
    if budget < cheapest_cost * (1 - 1e-9):
        raise InfeasiblePlan(
            f"no plan costs at most ${budget:,.2f}: the cheapest plan costs ${cheapest_cost:,.2f}",
            None,
            cheapest_cost,
        )
    _, bound = lp_relaxation(problem, None, budget)
    candidates: list[Plan] = []
    if solver != "milp":
        machine, proven = _bisect(problem, budget, bound)
        bound = max(bound, proven)
        candidates.append(Plan(problem, machine, "heuristic", bound))
    if _use_exact(problem, None, solver):
        exact = solve_milp(problem, budget=budget, time_limit=time_limit)
        if exact.machine is not None:
            bound = max(bound, exact.bound)
            candidates.append(Plan(problem, exact.machine, f"milp ({exact.status})", bound))
    if not candidates:  # only where the exact program found nothing in its time
        machine, proven = _bisect(problem, budget, bound)
        candidates.append(Plan(problem, machine, "heuristic", max(bound, proven)))
    chosen = min(candidates, key=lambda plan: (plan.makespan, plan.cost))
    cheaper, _ = _cheapest(problem, chosen.makespan, solver, time_limit)  # as fast, maybe cheaper
    if cheaper is not None and cheaper.makespan <= chosen.makespan and cheaper.cost < chosen.cost:
        chosen = cheaper
    chosen.lower_bound = min(bound, chosen.makespan)
    chosen.seconds = time.perf_counter() - started
    return chosen


def _bisect(problem: Problem, budget: float, bound: float) -> tuple[np.ndarray, float]:
    """The heuristic's plan for the least deadline it meets within `budget`, and the greatest
    deadline the relaxation proves no plan within budget meets."""
    cost = problem.cost
    best = _cheapest_unbounded(problem)
    low, high = bound, float(np.bincount(best, weights=_hours(problem, best)).max())
    proven = bound
    while high - low > _BISECTION_TOLERANCE * high:
        middle = (low + high) / 2
        machine = cheapest_plan(problem, middle)
        if (
            machine is not None
            and cost[np.arange(len(machine)), problem.machine_type[machine]].sum() <= budget
        ):
            best, high = machine, float(np.bincount(machine, weights=_hours(problem, machine)).max())
        else:
            low = middle
            _, least_cost = lp_relaxation(problem, middle)
            if least_cost > budget:
                proven = max(proven, middle)
    return best, proven


def _cheapest_unbounded(problem: Problem) -> np.ndarray:
    return pack_on_types(problem, problem.cost.argmin(axis=1))


def _hours(problem: Problem, machine: np.ndarray) -> np.ndarray:
    return problem.hours[np.arange(len(machine)), problem.machine_type[machine]]


def _check_solver(solver: str) -> None:
    if solver not in SOLVERS:
        raise FrugalError(f"unknown solver {solver!r}: use {', '.join(SOLVERS)}")


def _use_exact(problem: Problem, deadline: float | None, solver: str) -> bool:
    if solver == "heuristic":
        return False
    pairs = n_pairs(problem, deadline)
    if solver == "milp" and pairs > MILP_MAX_PAIRS:
        raise FrugalError(
            f"--solver milp: {pairs:,} job-machine pairs, more than the exact program takes "
            f"({MILP_MAX_PAIRS:,}); use --solver auto or heuristic"
        )
    return solver == "milp" or pairs <= EXACT_MAX_PAIRS


def _too_tight(deadline: float, best: Fastest, proven: bool) -> str:
    if best.exact:
        fastest_text = f"the fastest achievable makespan is {best.makespan:.3g} h"
    else:
        fastest_text = (
            f"the fastest plan found takes {best.makespan:.3g} h (no plan can take under {best.bound:.3g} h)"
        )
    found = "no plan finishes" if proven else "found no plan that finishes"
    return f"{found} within the deadline of {deadline:g} h: {fastest_text}"
