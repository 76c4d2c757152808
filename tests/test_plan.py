"""The planner against brute force on small instances; every plan checked by an independent checker;
infeasible deadlines and budgets; bad JOBS.yaml and CATALOG.yaml files."""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from frugalml.errors import FrugalError
from frugalml.plan.problem import Plan, build_problem
from frugalml.plan.solve import InfeasiblePlan, fastest, plan_for_budget, plan_for_deadline
from frugalml.plan.spec import Catalog, Job, load_catalog, load_jobs

STAGES = ["tune", "label", "eval"]


def random_instance(seed: int) -> tuple[list[dict], list[dict]]:
    """Up to 6 jobs over 2-3 resource types of 1-2 machines: few enough to try every assignment."""
    rng = random.Random(seed)
    resources = []
    for t in range(rng.randint(2, 3)):
        resource = {
            "name": f"r{t}",
            "accelerator": rng.choice(["none", "gpu-a", "gpu-b"]),
            "speed": {"default": rng.uniform(0.5, 4), "tune": rng.uniform(0.5, 10)},
            "price_per_hour": round(rng.uniform(0.1, 5), 2),
            "count": rng.randint(1, 2),
            "memory_gb": rng.choice([16, 40, 80]),
            "spot": rng.random() < 0.3,
        }
        if resource["spot"] and rng.random() < 0.5:
            resource["preemption_per_hour"] = rng.uniform(0.01, 0.3)
        resources.append(resource)
    jobs = []
    for j in range(rng.randint(3, 6)):
        job: dict = {"name": f"job{j}", "stage": rng.choice(STAGES), "work_hours": rng.uniform(0.5, 8)}
        if rng.random() < 0.3:
            job["accelerators"] = [rng.choice(resources)["name"]]
        if rng.random() < 0.3:
            job["memory_gb"] = rng.choice([8, 30])
        jobs.append(job)
    return jobs, resources


def parse(jobs: list[dict], resources: list[dict]) -> tuple[list[Job], Catalog]:
    catalog = Catalog.model_validate({"resources": resources})
    return [Job.model_validate(job) for job in jobs], catalog


def run_hours(job: dict, resource: dict) -> float:
    """The semantics, written again from the issue's text: work / speed(stage), and on a spot
    machine preempted at rate λ the expected time of restarting from scratch, (e^{λt} − 1) / λ."""
    speed = resource["speed"].get(job["stage"], resource["speed"]["default"])
    hours = job["work_hours"] / speed
    rate = resource.get("preemption_per_hour", 0.05 if resource.get("spot") else 0.0)
    return hours if rate == 0 else math.expm1(rate * hours) / rate


def accepts(job: dict, resource: dict) -> bool:
    allowed = "accelerators" not in job or {resource["name"], resource["accelerator"]} & set(
        job["accelerators"]
    )
    return bool(allowed) and job.get("memory_gb", 0) <= resource["memory_gb"]


def check_plan(
    jobs: list[dict], resources: list[dict], assignments: list[dict], deadline: float | None
) -> tuple:
    """Independent checker of a returned plan: every job once, on a resource that accepts it, on a
    machine that exists; hours and costs as the semantics say; machines run jobs one after another
    within the deadline. Returns (cost, makespan)."""
    by_name = {r["name"]: r for r in resources}
    assert sorted(a["job"] for a in assignments) == sorted(job["name"] for job in jobs)
    loads: dict[tuple, list] = {}
    cost = 0.0
    for job, a in zip(jobs, assignments, strict=True):
        assert a["job"] == job["name"]
        resource = by_name[a["resource"]]
        assert accepts(job, resource)
        assert 0 <= a["machine"] < resource["count"]
        hours = run_hours(job, resource)
        assert a["hours"] == pytest.approx(hours)
        assert a["cost"] == pytest.approx(hours * resource["price_per_hour"])
        loads.setdefault((a["resource"], a["machine"]), []).append((a["start_hours"], hours))
        cost += a["cost"]
    for runs in loads.values():
        end = 0.0
        for start, hours in sorted(runs):
            assert start >= end - 1e-9  # one after another
            end = start + hours
    makespan = max(sum(h for _, h in runs) for runs in loads.values())
    if deadline is not None:
        assert makespan <= deadline * (1 + 1e-6)
    return cost, makespan


def brute_force(jobs: list[dict], resources: list[dict]) -> list[tuple[float, float]]:
    """(cost, makespan) of every assignment of jobs to machines."""
    machines = [(r, k) for r in resources for k in range(r["count"])]
    options = [[i for i, (r, _) in enumerate(machines) if accepts(job, r)] for job in jobs]
    results = []
    for choice in itertools.product(*options):
        loads = [0.0] * len(machines)
        cost = 0.0
        for job, i in zip(jobs, choice, strict=True):
            hours = run_hours(job, machines[i][0])
            loads[i] += hours
            cost += hours * machines[i][0]["price_per_hour"]
        results.append((cost, max(loads)))
    return results


def usable(seed: int) -> tuple[list[dict], list[dict]] | None:
    jobs, resources = random_instance(seed)
    if not all(any(accepts(job, r) for r in resources) for job in jobs):
        return None
    return jobs, resources


INSTANCES = [seed for seed in range(40) if usable(seed)][:25]


def attempt(problem, deadline: float, solver: str) -> Plan | InfeasiblePlan:
    try:
        return plan_for_deadline(problem, deadline, solver=solver)
    except InfeasiblePlan as exc:
        return exc


@pytest.mark.parametrize("seed", INSTANCES)
def test_deadline_plans_match_brute_force(seed):
    jobs, resources = random_instance(seed)
    outcomes = brute_force(jobs, resources)
    fastest_makespan = min(m for _, m in outcomes)
    problem = build_problem(*parse(jobs, resources))
    for factor in (0.9, 1.0, 1.3, 2.5):
        deadline = fastest_makespan * factor
        feasible = [c for c, m in outcomes if m <= deadline * (1 + 1e-9)]
        for solver in ("milp", "auto", "heuristic"):
            plan = attempt(problem, deadline, solver)
            if isinstance(plan, InfeasiblePlan):
                assert f"{plan.fastest_makespan:.3g} h" in str(plan)
                if solver == "heuristic":  # a plan it found: no faster than the fastest
                    assert plan.fastest_makespan >= fastest_makespan * (1 - 1e-9)
                else:  # the exact program proves infeasibility and finds the fastest plan
                    assert not feasible, (solver, factor)
                    assert plan.fastest_makespan == pytest.approx(fastest_makespan)
                continue
            assert feasible, (solver, factor)
            cost, _ = check_plan(jobs, resources, plan.assignments(), deadline)
            assert cost == pytest.approx(plan.cost)
            optimum = min(feasible)
            assert plan.lower_bound <= optimum * (1 + 1e-6)  # a bound holds for every solver
            if solver == "heuristic":
                assert cost >= optimum * (1 - 1e-9)
            else:
                assert cost == pytest.approx(optimum, rel=1e-5)


@pytest.mark.parametrize("seed", INSTANCES[:12])
def test_budget_plans_match_brute_force(seed):
    jobs, resources = random_instance(seed)
    outcomes = brute_force(jobs, resources)
    cheapest = min(c for c, _ in outcomes)
    problem = build_problem(*parse(jobs, resources))
    for factor in (1.0, 1.2, 2.0):
        budget = cheapest * factor
        optimum = min(m for c, m in outcomes if c <= budget * (1 + 1e-9))
        for solver in ("auto", "heuristic"):
            plan = plan_for_budget(problem, budget, solver=solver)
            cost, makespan = check_plan(jobs, resources, plan.assignments(), None)
            assert cost <= budget * (1 + 1e-6)
            assert plan.lower_bound <= optimum * (1 + 1e-6)
            if solver == "auto":  # the exact program runs at this size
                assert makespan == pytest.approx(optimum, rel=1e-5)
            else:
                assert makespan >= optimum * (1 - 1e-9)


def test_a_budget_below_the_cheapest_plan_names_its_cost():
    jobs, resources = random_instance(INSTANCES[0])
    cheapest = min(c for c, _ in brute_force(jobs, resources))
    problem = build_problem(*parse(jobs, resources))
    with pytest.raises(InfeasiblePlan, match=rf"cheapest plan costs \${cheapest:,.2f}"):
        plan_for_budget(problem, cheapest * 0.9)


def test_the_fastest_makespan_is_exact_at_small_sizes():
    jobs, resources = random_instance(INSTANCES[1])
    best = fastest(build_problem(*parse(jobs, resources)))
    assert best.exact
    assert best.makespan == pytest.approx(min(m for _, m in brute_force(jobs, resources)))


def test_spot_machines_take_their_expected_reruns():
    jobs = [{"name": "a", "stage": "tune", "work_hours": 10.0}]
    resources = [
        {"name": "spot", "speed": 2.0, "price_per_hour": 1, "count": 1, "memory_gb": 8, "spot": True},
        {
            "name": "flaky",
            "speed": 2.0,
            "price_per_hour": 1,
            "count": 1,
            "memory_gb": 8,
            "preemption_per_hour": 0.5,
        },
        {"name": "steady", "speed": 2.0, "price_per_hour": 1, "count": 1, "memory_gb": 8},
    ]
    hours = build_problem(*parse(jobs, resources)).hours[0]
    assert hours[0] == pytest.approx(math.expm1(0.05 * 5) / 0.05)  # the default rate of a spot row
    assert hours[1] == pytest.approx(math.expm1(0.5 * 5) / 0.5)
    assert hours[2] == 5.0


def test_the_default_catalogue_loads_and_plans_a_mixed_workload():
    catalog = load_catalog()
    names = [r.name for r in catalog.resources]
    assert names == ["cpu", "t4", "l4", "a10g", "a100", "h100"] and catalog.reference == "cpu"
    jobs = [Job(name=f"j{i}", stage=STAGES[i % 3], work_hours=1 + i % 7) for i in range(60)]
    problem = build_problem(jobs, catalog)
    plan = plan_for_deadline(problem, 2.0, time_limit=2.0)
    assert plan.makespan <= 2.0 + 1e-9
    assert plan.lower_bound <= plan.cost
    all_on_fastest = float(problem.cost[np.arange(60), problem.hours.argmin(axis=1)].sum())
    assert plan.cost < all_on_fastest


def write(tmp_path: Path, name: str, document: object) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document) if not isinstance(document, str) else document)
    return path


GOOD_RESOURCE = {
    "name": "gpu",
    "accelerator": "T4",
    "speed": 4,
    "price_per_hour": 1,
    "count": 1,
    "memory_gb": 16,
}
GOOD_JOB = {"name": "a", "stage": "tune", "work_hours": 1}


@pytest.mark.parametrize(
    ("jobs", "resources", "message"),
    [
        (
            {"jobs": [{**GOOD_JOB, "gpus": 1}]},
            [GOOD_RESOURCE],
            r"jobs\.yaml: jobs\[0\] \(a\)\.gpus: unknown key",
        ),
        (
            {"jobs": [{**GOOD_JOB, "work_hours": -2}]},
            [GOOD_RESOURCE],
            r"jobs\[0\] \(a\)\.work_hours: .*greater than 0",
        ),
        ({"jobs": [{**GOOD_JOB, "accelerators": ["V100"]}]}, [GOOD_RESOURCE], r"'V100' is no resource name"),
        ({"jobs": [{**GOOD_JOB, "memory_gb": 40}]}, [GOOD_RESOURCE], r"no resource in .* accepts it"),
        ({"jobs": [GOOD_JOB, GOOD_JOB]}, [GOOD_RESOURCE], r"jobs\[1\]\.name: 'a' appears twice"),
        ({"jobs": []}, [GOOD_RESOURCE], r"jobs: .*at least 1"),
        ({"tasks": [GOOD_JOB]}, [GOOD_RESOURCE], r"tasks: unknown key"),
        ("jobs: [oops", [GOOD_RESOURCE], r"jobs\.yaml: not valid YAML"),
        ({"jobs": [{"name": "a", "stage": "tune"}]}, [GOOD_RESOURCE], r"work_hours: Field required"),
        (
            {"jobs": [GOOD_JOB]},
            [{**GOOD_RESOURCE, "cost": 1}],
            r"catalog\.yaml: resources\[0\] \(gpu\)\.cost: unknown",
        ),
        (
            {"jobs": [GOOD_JOB]},
            [{**GOOD_RESOURCE, "speed": {"tune": 3}}],
            r"speed: a map of speeds needs a `default`",
        ),
        (
            {"jobs": [GOOD_JOB]},
            [{**GOOD_RESOURCE, "count": 0}],
            r"resources\[0\] \(gpu\)\.count: .*greater than or equal to 1",
        ),
        ({"jobs": [GOOD_JOB]}, [{**GOOD_RESOURCE, "price_per_hour": -1}], r"price_per_hour"),
        ({"jobs": [GOOD_JOB]}, [{**GOOD_RESOURCE, "speed": "fast"}], r"speed: must be a number, or a map"),
        ({"jobs": ["tune-a"]}, [GOOD_RESOURCE], r"jobs\[0\]: Input should be a valid dictionary"),
        (
            {"jobs": [{**GOOD_JOB, "accelerators": []}]},
            [GOOD_RESOURCE],
            r"accelerators: an empty list allows no",
        ),
    ],
)
def test_bad_files_are_one_clear_error(tmp_path, jobs, resources, message):
    catalog_path = write(tmp_path, "catalog.yaml", {"resources": resources})
    jobs_path = write(tmp_path, "jobs.yaml", jobs)
    with pytest.raises(FrugalError, match=message) as caught:
        load_jobs(jobs_path, load_catalog(catalog_path))
    assert "\n" not in str(caught.value)


def test_a_missing_file_and_an_unknown_reference_are_named(tmp_path):
    with pytest.raises(FrugalError, match=r"nothere\.yaml: no such file"):
        load_catalog(tmp_path / "nothere.yaml")
    path = write(tmp_path, "catalog.yaml", {"resources": [GOOD_RESOURCE], "reference": "cpu"})
    with pytest.raises(FrugalError, match=r"reference: 'cpu' is no resource"):
        load_catalog(path)


def test_the_heuristic_stays_near_its_bound_on_a_larger_workload():
    """500 mixed jobs on 10x the default catalogue: the plan meets the deadline and is within 1 % of
    the LP bound (bench/planner.py measures the same at up to 10,000 jobs)."""
    rng = random.Random(7)
    catalog = load_catalog()
    catalog = catalog.model_copy(
        update={"resources": tuple(r.model_copy(update={"count": r.count * 5}) for r in catalog.resources)}
    )
    jobs = [
        Job(
            name=f"j{i}",
            stage=rng.choice(["tune", "label", "eval", "compress"]),
            work_hours=min(rng.lognormvariate(1.0, 1.0), 40.0),
            memory_gb=40 if rng.random() < 0.1 else None,
        )
        for i in range(500)
    ]
    problem = build_problem(jobs, catalog)
    plan = plan_for_deadline(problem, 6.0, solver="heuristic")
    assert plan.makespan <= 6.0 * (1 + 1e-9)
    assert plan.lower_bound <= plan.cost <= plan.lower_bound * 1.01


def test_the_exact_solver_refuses_a_program_too_large_to_hold():
    catalog = Catalog.model_validate({"resources": [{**GOOD_RESOURCE, "count": 1_000}]})
    jobs = [Job(name=f"j{i}", stage="tune", work_hours=1.0) for i in range(600)]
    with pytest.raises(FrugalError, match=r"--solver milp: 600,000 job-machine pairs"):
        plan_for_deadline(build_problem(jobs, catalog), 10.0, solver="milp")
