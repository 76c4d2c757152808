"""`frugalml plan` and `frugalml profile`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from frugalml import ui
from frugalml.cli.options import Json
from frugalml.errors import FrugalError

# Rows of the plan table shown to people; --json has them all.
_SHOWN_ROWS = 40


def plan(
    jobs: Annotated[Path, typer.Argument(help="JOBS.yaml: `jobs:` list of {name, stage, work_hours, ...}.")],
    catalog: Annotated[
        Path | None,
        typer.Option(help="CATALOG.yaml: `resources:` list (default: frugalml's, list prices to edit)."),
    ] = None,
    deadline: Annotated[
        float | None, typer.Option(help="Hours every machine must finish within: plan the cheapest.")
    ] = None,
    budget: Annotated[float | None, typer.Option(help="Dollars the plan may cost: plan the fastest.")] = None,
    solver: Annotated[
        str,
        typer.Option(help="auto (exact MILP at ordinary sizes and the heuristic), milp or heuristic."),
    ] = "auto",
    time_limit: Annotated[float, typer.Option(help="Seconds the exact MILP may take.")] = 10.0,
    execute: Annotated[
        bool, typer.Option(help="Submit each job (its `args` from JOBS.yaml) on its planned resource.")
    ] = False,
    backend: Annotated[
        str, typer.Option(help="With --execute: local (this machine's CPU slots) or ray.")
    ] = "local",
    address: Annotated[str | None, typer.Option(help="With --execute --backend ray: the cluster.")] = None,
    json: Json = False,
) -> None:
    """Place jobs on the cheapest resources that meet a deadline (or the fastest within a budget).

    A job runs whole on one machine for work_hours / speed(stage) hours (spot: plus expected re-runs).

    Each machine runs its jobs one after another. Infeasible: exit status 2, naming what is achievable.

    --execute submits the plan's jobs through the local or Ray job backend (see `frugalml jobs`).
    """
    from frugalml.plan.problem import build_problem
    from frugalml.plan.report import alternatives, plan_document
    from frugalml.plan.solve import InfeasiblePlan, plan_for_budget, plan_for_deadline
    from frugalml.plan.spec import load_catalog, load_jobs

    if (deadline is None) == (budget is None):
        raise FrugalError("give exactly one of --deadline HOURS and --budget USD")
    resources = load_catalog(catalog)
    problem = build_problem(load_jobs(jobs, resources, str(catalog or "the default catalogue")), resources)
    try:
        if deadline is not None:
            chosen = plan_for_deadline(problem, deadline, solver=solver, time_limit=time_limit)
        else:
            assert budget is not None
            chosen = plan_for_budget(problem, budget, solver=solver, time_limit=time_limit)
    except InfeasiblePlan as exc:
        if json:
            ui.emit_json(
                {
                    "feasible": False,
                    "message": str(exc),
                    "fastest_makespan_hours": exc.fastest_makespan,
                    "cheapest_cost": exc.cheapest_cost,
                }
            )
        raise
    compared = alternatives(problem, chosen)
    document = plan_document(chosen, deadline=deadline, budget=budget, compared=compared)
    if execute:
        from frugalml.plan.execute import submit_plan

        document["submitted"] = submit_plan(chosen, backend=backend, address=address)
    if json:
        ui.emit_json(document)
        return
    rows = [
        (a["job"], a["resource"], a["machine"], a["start_hours"], a["hours"], a["cost"])
        for a in document["assignments"]
    ]
    title = f"plan ({len(rows)} jobs)" + (
        f", first {_SHOWN_ROWS}: --json has all" if len(rows) > _SHOWN_ROWS else ""
    )
    ui.out.print(
        ui.table(title, ["job", "resource", "machine", "start h", "hours", "cost $"], rows[:_SHOWN_ROWS])
    )
    by_deadline = deadline is not None
    limit = deadline if deadline is not None else budget
    assert limit is not None

    def within(row) -> str:
        value = row.makespan_hours if by_deadline else row.cost
        return "yes" if value <= limit * (1 + 1e-9) else "no"

    ui.out.print(
        ui.table(
            "alternatives",
            ["name", "cost $", "makespan h", f"within the {'deadline' if by_deadline else 'budget'}"],
            [(row.name, row.cost, row.makespan_hours, within(row)) for row in compared],
        )
    )
    unit = "$" if by_deadline else "h"
    ui.out.print(
        f"solver {chosen.solver}, {document['seconds']:.2f} s; "
        f"lower bound {document['lower_bound']:,.4g} {unit}, gap {100 * document['gap']:.3g} %"
    )
    if execute:
        submitted = [(s["job"], s["resource"], s["job_id"]) for s in document["submitted"]]
        ui.out.print(ui.table(f"submitted ({backend})", ["name", "resource", "id"], submitted))


def profile(
    stage: Annotated[
        str, typer.Argument(help="The stage command to measure: tune, eval, compress, label ...")
    ],
    args: Annotated[
        list[str] | None,
        typer.Argument(help="The stage's own arguments, after `--`; one of them is the --data file."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="The data file among the stage's arguments; its samples take its place."),
    ] = None,
    sample_rows: Annotated[
        int | None, typer.Option(help="Rows of the larger sample (the smaller has half).", show_default="200")
    ] = None,
    catalog: Annotated[Path | None, typer.Option(help="CATALOG.yaml (default: frugalml's).")] = None,
    machine: Annotated[
        str | None,
        typer.Option(
            help="The catalogue resource this machine stands for (default: the catalogue's reference)."
        ),
    ] = None,
    jobs: Annotated[Path | None, typer.Option(help="Add (or update) the job in this JOBS.yaml.")] = None,
    name: Annotated[
        str | None, typer.Option(help="The job's name in JOBS.yaml (default: the stage).")
    ] = None,
    json: Json = False,
) -> None:
    """Measure a stage on two small samples of its data here and write its work_hours.

    Example: frugalml profile tune --data train.csv --jobs jobs.yaml -- train.csv --method lora
    """
    from frugalml.plan.profile import ProfileConfig, profile_stage, record_job
    from frugalml.plan.spec import load_catalog

    if data is None:
        raise FrugalError("name the stage's data file with --data (it must be one of the stage's arguments)")
    config = ProfileConfig(**({"sample_rows": sample_rows} if sample_rows is not None else {}))
    result = profile_stage(
        stage, list(args or []), data=str(data), catalog=load_catalog(catalog), machine=machine, config=config
    )
    if jobs is not None:
        record_job(jobs, name=name or stage, result=result)
    if json:
        ui.emit_json(result.to_json() | {"jobs_file": str(jobs) if jobs else None})
        return
    ui.out.print(
        ui.table(
            f"frugalml {stage} on samples of {data}",
            ["rows", "seconds"],
            [(int(s["rows"]), s["seconds"]) for s in result.samples],
        )
    )
    ui.out.print(
        f"{result.fixed_seconds:.1f} s fixed + {1000 * result.seconds_per_row:.2f} ms per row "
        f"× {result.rows:,} rows on {result.machine} (speed {result.speed:g}): "
        f"work_hours {result.work_hours:.4g}" + (f", written to {jobs}" if jobs else "")
    )
