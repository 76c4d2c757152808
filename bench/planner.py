"""The planner on simulated workloads: cost against the optimum (or its bound), against "everything
on the fastest type" and "everything on the cheapest type", and planning time.

Workloads of 50, 100, 1,000 and 10,000 jobs (tune, label, eval, compress; lognormal work; some jobs
needing 40 GB or a given accelerator) over the default catalogue (6 types) and over it with three
spot types added (9 types), machine counts scaled with the number of jobs, a 6-hour deadline.
At 50 and 100 jobs the exact MILP runs beside the heuristic. Then the same for a budget (least makespan).

    python bench/planner.py            # prints a table, writes bench/results/planner.json
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time

import numpy as np
from _common import RESULTS, write_results
from rich.console import Console

from frugalml import ui
from frugalml.plan.heuristic import cheapest_plan, lp_relaxation
from frugalml.plan.milp import solve_milp
from frugalml.plan.problem import Plan, build_problem
from frugalml.plan.report import alternatives
from frugalml.plan.solve import plan_for_budget, plan_for_deadline
from frugalml.plan.spec import Catalog, Job, load_catalog

DEADLINE_HOURS = 6.0
STAGE_MIX = {"tune": 0.3, "label": 0.3, "eval": 0.25, "compress": 0.15}
SPOT = {"t4": 0.35, "a10g": 0.35, "a100": 0.4}  # spot price as a share of the on-demand price


def workload(n_jobs: int, seed: int) -> list[Job]:
    rng = random.Random(seed)
    jobs = []
    for j in range(n_jobs):
        stage = rng.choices(list(STAGE_MIX), weights=list(STAGE_MIX.values()))[0]
        work = min(max(rng.lognormvariate(np.log(3.0), 1.0), 0.1), 40.0)
        extra: dict = {}
        if stage == "tune" and rng.random() < 0.2:
            extra["memory_gb"] = 40
        elif stage == "eval" and rng.random() < 0.15:
            extra["accelerators"] = ["cpu"]
            work = min(work, 5.0)
        elif rng.random() < 0.1:
            extra["accelerators"] = ["T4", "L4"]
        jobs.append(Job(name=f"job{j}", stage=stage, work_hours=work, **extra))
    return jobs


def catalog(n_jobs: int, spot: bool) -> Catalog:
    """The default catalogue, counts scaled with the jobs (its counts are for 100), spot types added."""
    rows = []
    for resource in load_catalog().resources:
        count = max(1, round(resource.count * n_jobs / 100))
        rows.append(resource.model_copy(update={"count": count}))
        if spot and resource.name in SPOT:
            update = {
                "name": f"{resource.name}-spot",
                "price_per_hour": round(resource.price_per_hour * SPOT[resource.name], 3),
                "spot": True,
                "preemption_per_hour": 0.05,
                "count": count,
            }
            rows.append(resource.model_copy(update=update))
    return Catalog(resources=tuple(rows), reference="cpu")


def deadline_case(n_jobs: int, spot: bool, seed: int, milp_seconds: float) -> dict:
    resources = catalog(n_jobs, spot)
    problem = build_problem(workload(n_jobs, seed), resources)
    started = time.perf_counter()
    plan = plan_for_deadline(problem, DEADLINE_HOURS, solver="heuristic")
    heuristic_seconds = time.perf_counter() - started
    row = {
        "jobs": n_jobs,
        "types": len(resources.resources),
        "machines": problem.n_machines,
        "cost": plan.cost,
        "makespan_hours": plan.makespan,
        "lp_bound": plan.lower_bound,
        "gap_to_bound": (plan.cost - plan.lower_bound) / plan.cost,
        "heuristic_seconds": heuristic_seconds,
    }
    if milp_seconds > 0:
        started = time.perf_counter()
        exact = solve_milp(problem, deadline=DEADLINE_HOURS, time_limit=milp_seconds)
        row["milp_seconds"] = time.perf_counter() - started
        row["milp_status"] = exact.status
        if exact.machine is not None:
            milp_plan = Plan(problem, exact.machine, "milp", exact.bound)
            row["milp_cost"] = milp_plan.cost
            row["milp_bound"] = exact.bound
            row["gap_to_milp"] = (plan.cost - milp_plan.cost) / milp_plan.cost
            row["gap_to_bound"] = (plan.cost - max(exact.bound, plan.lower_bound)) / plan.cost
    for alternative in alternatives(problem, plan)[:2]:
        key = "fastest" if "fastest" in alternative.name else "cheapest"
        row[f"all_on_{key}_cost"] = alternative.cost
        row[f"all_on_{key}_makespan_hours"] = alternative.makespan_hours
        row[f"saving_vs_all_on_{key}"] = 1 - plan.cost / alternative.cost
    return row


def budget_case(n_jobs: int, seed: int) -> dict:
    problem = build_problem(workload(n_jobs, seed), catalog(n_jobs, spot=False))
    at_deadline = cheapest_plan(problem, DEADLINE_HOURS)
    assert at_deadline is not None
    budget = Plan(problem, at_deadline, "", 0.0).cost  # what the plan for the deadline costs
    started = time.perf_counter()
    plan = plan_for_budget(problem, budget, solver="heuristic")
    return {
        "jobs": n_jobs,
        "budget": budget,
        "makespan_hours": plan.makespan,
        "cost": plan.cost,
        "makespan_bound": plan.lower_bound,
        "gap_to_bound": (plan.makespan - plan.lower_bound) / plan.makespan,
        "seconds": time.perf_counter() - started,
        "lp_cost_at_deadline": lp_relaxation(problem, DEADLINE_HOURS)[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="50,100,1000,10000")
    parser.add_argument("--milp-seconds", type=float, default=60.0, help="time limit of the exact MILP")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    console = Console(width=200)  # the whole table, also where the output is a file
    rows = []
    for spot in (False, True):
        for n_jobs in sizes:
            milp_seconds = args.milp_seconds if n_jobs <= 100 else 0.0
            row = {"catalogue": "default + 3 spot" if spot else "default"}
            rows.append(row | deadline_case(n_jobs, spot, args.seed, milp_seconds))
            print(f"{row['catalogue']}, {n_jobs} jobs: done", flush=True)
    console.print(
        ui.table(
            f"cheapest plan within {DEADLINE_HOURS:g} h",
            [
                "catalogue",
                "jobs",
                "types",
                "machines",
                "cost $",
                "gap to bound %",
                "gap to MILP %",
                "plan s",
                "all on fastest $",
                "saving %",
                "all on cheapest $",
                "its makespan h",
            ],
            [
                (
                    row["catalogue"],
                    row["jobs"],
                    row["types"],
                    row["machines"],
                    row["cost"],
                    100 * row["gap_to_bound"],
                    100 * row["gap_to_milp"] if "gap_to_milp" in row else None,
                    row["heuristic_seconds"],
                    row["all_on_fastest_cost"],
                    100 * row["saving_vs_all_on_fastest"],
                    row["all_on_cheapest_cost"],
                    row["all_on_cheapest_makespan_hours"],
                )
                for row in rows
            ],
        )
    )
    budgets = [budget_case(n_jobs, args.seed) for n_jobs in sizes if n_jobs <= 1000]
    console.print(
        ui.table(
            "fastest plan within the budget the deadline's plan costs",
            ["jobs", "budget $", "makespan h", "bound h", "gap %", "plan s"],
            [
                (
                    row["jobs"],
                    row["budget"],
                    row["makespan_hours"],
                    row["makespan_bound"],
                    100 * row["gap_to_bound"],
                    row["seconds"],
                )
                for row in budgets
            ],
        )
    )
    write_results(
        RESULTS / "planner.json",
        {
            "machine": {
                "arch": platform.machine(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            },
            "deadline_hours": DEADLINE_HOURS,
            "seed": args.seed,
            "deadline": rows,
            "budget": budgets,
        },
    )


if __name__ == "__main__":
    main()
