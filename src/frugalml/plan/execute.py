"""`frugalml plan --execute`: submit each job of a plan through a job backend, on its planned type.

On Ray each catalogue row is a custom resource of the same name that the nodes of that type
declare (`ray start --resources '{"t4": 1}'`), so a job asking for one unit of it runs on such a
node. The local backend has no resource types: it runs every job on this machine's CPU slots, and
the plan's hours and price still give each job its estimated cost.
"""

from __future__ import annotations

from typing import Any

from frugalml.errors import FrugalError
from frugalml.plan.problem import Plan


def submit_plan(plan: Plan, *, backend: str, address: str | None = None) -> list[dict[str, Any]]:
    """Submit every job of `plan`; returns {"job", "job_id", "resource"} for each. Every job's
    specification is checked before the first is submitted."""
    problem = plan.problem
    missing = [job.name for job in problem.jobs if job.args is None]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise FrugalError(
            f"--execute runs each job's stage with its `args` from JOBS.yaml; these jobs have none: {shown}"
        )
    if backend == "ray" and not address:
        # Without an address each job starts a Ray instance of its own, whose one node declares no
        # catalogue row: every job would be submitted and then fail to be placed.
        raise FrugalError(
            "--execute --backend ray needs --address: the cluster whose nodes declare the catalogue's "
            "rows as custom resources (e.g. ray start --resources '{\"t4\": 1}')"
        )
    from frugalml.jobs import JobSpec, submit

    specs = []
    for job, row in zip(problem.jobs, plan.assignments(), strict=True):
        resource = problem.resources[[r.name for r in problem.resources].index(row["resource"])]
        specs.append(
            JobSpec(
                argv=[job.stage, *(job.args or ())],
                name=job.name,
                estimated_hours=row["hours"],
                price_per_hour=resource.price_per_hour,
                resources={} if backend == "local" else {resource.name: 1.0},
            )
        )
    return [
        {
            "job": spec.name,
            "job_id": submit(spec, backend=backend, address=address),
            "resource": row["resource"],
        }
        for spec, row in zip(specs, plan.assignments(), strict=True)
    ]
