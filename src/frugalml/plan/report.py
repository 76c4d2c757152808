"""A plan beside its alternatives, as the `--json` document of `frugalml plan`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from frugalml.plan.heuristic import pack_on_types
from frugalml.plan.problem import Plan, Problem


@dataclass
class Alternative:
    name: str
    cost: float
    makespan_hours: float

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "cost": self.cost, "makespan_hours": self.makespan_hours}


def alternatives(problem: Problem, chosen: Plan) -> list[Alternative]:
    """Every job on its fastest type, every job on its cheapest type (each packed longest first on
    the least-loaded machine), and the chosen plan."""
    rows = []
    for name, job_type in (
        ("all on the fastest type", problem.hours.argmin(axis=1)),
        ("all on the cheapest type", problem.cost.argmin(axis=1)),
    ):
        plan = Plan(problem, pack_on_types(problem, job_type), name, 0.0)
        rows.append(Alternative(name, plan.cost, plan.makespan))
    rows.append(Alternative("chosen plan", chosen.cost, chosen.makespan))
    return rows


def plan_document(
    plan: Plan, *, deadline: float | None, budget: float | None, compared: list[Alternative]
) -> dict[str, Any]:
    objective = plan.cost if deadline is not None else plan.makespan
    gap = (objective - plan.lower_bound) / objective if objective > 0 else 0.0
    return {
        "feasible": True,
        "objective": "cost" if deadline is not None else "makespan",
        "deadline_hours": deadline,
        "budget": budget,
        "cost": plan.cost,
        "makespan_hours": plan.makespan,
        "lower_bound": plan.lower_bound,
        "gap": float(np.clip(gap, 0.0, None)),
        "solver": plan.solver,
        "seconds": plan.seconds,
        "alternatives": [row.to_json() for row in compared],
        "assignments": plan.assignments(),
    }
