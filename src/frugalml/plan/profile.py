"""`frugalml profile`: the work a stage needs, measured here on samples of its data.

The stage runs twice as its own process (`frugalml STAGE ARGS`, the data argument swapped for a
random sample of half the sample size, then the whole sample size); a straight line through the
two wall times gives the fixed seconds (start-up, loading the model) and the seconds per row, so
the full data's run time is fixed + per_row × rows. This machine is taken to be the catalogue's
reference machine (or the resource named by `machine`): work_hours = hours here × its speed for
the stage.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from frugalml.data.frames import write_frame
from frugalml.data.io import read_table, write_text_atomic
from frugalml.errors import FrugalError, check_ranges, first_line
from frugalml.plan.spec import Catalog


@dataclass
class ProfileConfig:
    # Rows of the larger sample; the smaller has half as many.
    sample_rows: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        check_ranges("profile", self, {"sample_rows": (self.sample_rows >= 4, "sample_rows >= 4")})


@dataclass
class ProfileResult:
    stage: str
    args: list[str]
    rows: int  # of the full data
    samples: list[dict[str, float]]  # {"rows", "seconds"} of each run
    fixed_seconds: float
    seconds_per_row: float
    machine: str  # the catalogue resource this machine stands for
    speed: float  # its speed for the stage
    work_hours: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def profile_stage(
    stage: str,
    args: list[str],
    *,
    data: str | Path,
    catalog: Catalog,
    machine: str | None = None,
    config: ProfileConfig | None = None,
) -> ProfileResult:
    """Measure `frugalml STAGE ARGS` on two samples of `data` (one of ARGS) and scale to all of it."""
    config = config or ProfileConfig()
    machine = machine or catalog.reference or catalog.resources[0].name
    speed = catalog.resource(machine).speed_for(stage)
    data = str(data)
    if data not in args:
        raise FrugalError(
            f"--data {data}: is none of the stage's arguments {args}; pass the same path to both"
        )
    frame = read_table(data)
    if len(frame) < 4:
        raise FrugalError(f"{data}: {len(frame)} rows; profiling needs at least 4")
    larger = min(config.sample_rows, len(frame))
    sizes = [larger // 2, larger]
    shuffled = frame.sample(frac=1.0, random_state=config.seed).reset_index(drop=True)
    suffix = (
        Path(data).suffix.lower()
        if Path(data).suffix.lower() in (".csv", ".jsonl", ".parquet")
        else ".parquet"
    )
    samples = []
    with tempfile.TemporaryDirectory(prefix="frugalml-profile-") as folder:
        for size in sizes:
            sample = write_frame(shuffled.head(size), Path(folder) / f"sample-{size}{suffix}")
            seconds = _run([stage, *(str(sample) if arg == data else arg for arg in args)])
            samples.append({"rows": size, "seconds": seconds})
    (n1, t1), (n2, t2) = ((s["rows"], s["seconds"]) for s in samples)
    per_row = max((t2 - t1) / (n2 - n1), 0.0)
    fixed = max(t2 - per_row * n2, 0.0)
    hours_here = (fixed + per_row * len(frame)) / 3600
    return ProfileResult(
        stage=stage,
        args=list(args),
        rows=len(frame),
        samples=samples,
        fixed_seconds=fixed,
        seconds_per_row=per_row,
        machine=machine,
        speed=speed,
        work_hours=hours_here * speed,
    )


def _run(argv: list[str]) -> float:
    """Wall seconds of `frugalml ARGV` in a process of its own; its failure is the user's error."""
    command = [sys.executable, "-m", "frugalml", *argv]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else first_line(RuntimeError(f"exit status {done.returncode}"))
        raise FrugalError(f"`frugalml {' '.join(argv[:1])}` failed on the sample: {reason}")
    return seconds


def record_job(path: str | Path, *, name: str, result: ProfileResult) -> None:
    """Add the job to a JOBS.yaml (or update the one of that name, keeping its constraints)."""
    path = Path(path)
    document: dict[str, Any] = {"jobs": []}
    if path.exists():
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {"jobs": []}
        if not isinstance(loaded, dict) or not isinstance(loaded.get("jobs", []), list):
            raise FrugalError(f"{path}: expected a mapping with a `jobs:` list")
        document = loaded
        document.setdefault("jobs", [])
    entry = {
        "name": name,
        "stage": result.stage,
        "work_hours": float(f"{result.work_hours:.6g}"),  # six significant digits: short jobs too
        "args": result.args,
    }
    jobs = document["jobs"]
    for i, job in enumerate(jobs):
        if isinstance(job, dict) and job.get("name") == name:
            jobs[i] = {**job, **entry}
            break
    else:
        jobs.append(entry)
    write_text_atomic(path, yaml.safe_dump(document, sort_keys=False))
