"""`frugalml jobs submit|list|show|logs|wait|cancel`."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from frugalml import ui
from frugalml.cli.options import Json
from frugalml.errors import FrugalError

app = typer.Typer(
    help="Run stage commands as jobs (local process pool or Ray), retried, logged and costed.",
    no_args_is_help=True,
)
JobRef = Annotated[str, typer.Argument(help="Job id or unique prefix.")]


@app.command("submit", context_settings={"allow_interspersed_args": False})
def jobs_submit(
    argv: Annotated[
        list[str],
        typer.Argument(help="The stage command line, after `--`: e.g. -- tune train.csv --method lora."),
    ],
    backend: Annotated[str, typer.Option(help="local (a process pool here) or ray.")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: start a local Ray and stop it after).")
    ] = None,
    cpus: Annotated[float | None, typer.Option(help="CPUs the job takes (default 1).")] = None,
    gpus: Annotated[float | None, typer.Option(help="GPUs the job takes (default 0).")] = None,
    resource: Annotated[
        list[str] | None,
        typer.Option(help="Custom Ray resource, NAME or NAME=AMOUNT (amount 1 if left out); repeatable."),
    ] = None,
    accelerator_type: Annotated[
        str | None, typer.Option(help="Ray accelerator type the node must have, e.g. L4, A100.")
    ] = None,
    retries: Annotated[int | None, typer.Option(help="Attempts after a failed one (default 0).")] = None,
    name: Annotated[str | None, typer.Option(help="A name to list it by (default: the command).")] = None,
    estimated_hours: Annotated[float | None, typer.Option(help="Expected run time, for the cost.")] = None,
    price_per_hour: Annotated[float | None, typer.Option(help="The machine's price in $ per hour.")] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the job to end; exit 1 if it failed.")
    ] = False,
    json: Json = False,
) -> None:
    """Submit a stage command (tune, eval, compress, label, predict, run, profile) as a job and print
    its id. Relative paths in the command are read from this folder."""
    from frugalml.jobs import JobSpec, describe, submit
    from frugalml.jobs import wait as wait_for

    options: dict[str, Any] = {
        "name": name,
        "cpus": cpus,
        "gpus": gpus,
        "accelerator_type": accelerator_type,
        "retries": retries,
        "estimated_hours": estimated_hours,
        "price_per_hour": price_per_hour,
    }
    spec = JobSpec(
        argv=list(argv),
        resources=_resources(resource or []),
        **{key: value for key, value in options.items() if value is not None},
    )
    job_id = submit(spec, backend=backend, address=address)
    job = wait_for(job_id) if wait else describe(job_id)
    if json:
        ui.emit_json(job)
    elif wait:
        _show(job)
    else:
        ui.out.print(job_id)
    if wait and job["status"] != "succeeded":
        raise typer.Exit(1)


def _resources(given: list[str]) -> dict[str, float]:
    resources: dict[str, float] = {}
    for item in given:
        name, _, amount = item.partition("=")
        try:
            resources[name] = float(amount) if amount else 1.0
        except ValueError:
            raise FrugalError(f"--resource {item!r}: the amount after '=' is a number") from None
    return resources


@app.command("list")
def jobs_list(json: Json = False) -> None:
    """Every job, oldest first."""
    from frugalml.jobs import list_jobs

    jobs = list_jobs()
    if json:
        ui.emit_json(jobs)
        return
    rows = [
        (
            j["job_id"],
            j["name"],
            j["status"],
            j["backend"],
            " ".join(j["argv"]),
            len(j["attempts"]),
            j["submitted_at"][:19].replace("T", " "),  # to the second, UTC
            j["seconds"],
            j["bundle"],
        )
        for j in jobs
    ]
    columns = [
        "id",
        "name",
        "status",
        "backend",
        "command",
        "attempts",
        "submitted (UTC)",
        "seconds",
        "bundle",
    ]
    ui.out.print(ui.table("jobs", columns, rows))


@app.command("show")
def jobs_show(job: JobRef, json: Json = False) -> None:
    """A job's status, attempts, timings, log path, the bundle it produced and its cost."""
    from frugalml.jobs import describe

    found = describe(job)
    if json:
        ui.emit_json(found)
    else:
        _show(found)


def _show(job: dict[str, Any]) -> None:
    keys = ["status", "name", "backend", "address", "argv", "cpus", "gpus", "resources", "accelerator_type"]
    keys += ["submitted_at", "started_at", "finished_at", "seconds", "node", "bundle", "log_path", "error"]
    keys += ["estimated_cost", "actual_cost"]
    rows = [
        (key, " ".join(job[key]) if key == "argv" else job[key]) for key in keys if job[key] not in (None, {})
    ]
    ui.out.print(ui.table(f"job {job['job_id']}", ["key", "value"], rows))
    attempts = [
        (a["attempt"], a["status"], a["exit_code"], a["node"], a["started_at"], a["seconds"], a["log_path"])
        for a in job["attempts"]
    ]
    columns = ["attempt", "status", "exit code", "node", "started", "seconds", "log"]
    ui.out.print(ui.table("attempts", columns, attempts))


@app.command("logs")
def jobs_logs(
    job: JobRef,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
    attempt: Annotated[int | None, typer.Option(help="Only this attempt's log (default: all).")] = None,
) -> None:
    """A job's output (stdout and stderr of its command), attempt after attempt."""
    from frugalml.jobs import follow as follow_log

    for text in follow_log(job, attempt=attempt, keep_following=follow):
        sys.stdout.write(text)
        sys.stdout.flush()


@app.command("wait")
def jobs_wait(
    job: JobRef,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds (exit 2).")] = None,
    json: Json = False,
) -> None:
    """Wait for a job to end; exit 1 unless it succeeded."""
    from frugalml.jobs import wait

    found = wait(job, timeout=timeout)
    if json:
        ui.emit_json(found)
    else:
        _show(found)
    if found["status"] != "succeeded":
        raise typer.Exit(1)


@app.command("cancel")
def jobs_cancel(job: JobRef, json: Json = False) -> None:
    """Cancel a job: a queued one never starts, a running one's command is stopped."""
    from frugalml.jobs import cancel

    found = cancel(job)
    if json:
        ui.emit_json(found)
    else:
        ui.out.print(f"job {found['job_id']}: {found['status']}")
