"""Reconcile FRUGALML_HOME with the lineage store after processes died (kill -9, power loss).

A stage records its run as `running` and writes each bundle before registering it, so a process
killed between those steps leaves a `running` row whose process is gone, or a complete bundle
folder that no row names. `check_home` finds both, and half-written temporary folders; with
`fix`, dead runs become `failed`, orphaned bundles are adopted (registered, nothing lost) or
removed, and temporary folders of dead writers are deleted. A job whose supervisor died is
`failed` too, with the attempt it left stopped (any `frugalml jobs` command does the same).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from typing import Any

from frugalml.bundle import TEMP_PREFIX, load_bundle, stale_partials
from frugalml.errors import BundleError, FrugalError
from frugalml.jobs.store import JobStore
from frugalml.lineage import open_store
from frugalml.settings import Settings, get_settings


@dataclass
class HomeReport:
    home: str
    dead_runs: list[str] = field(default_factory=list)  # ids of runs marked failed
    dead_jobs: list[str] = field(default_factory=list)  # ids of jobs whose supervisor died
    adopted: list[str] = field(default_factory=list)  # orphaned bundles now registered
    removed: list[str] = field(default_factory=list)  # orphaned bundles (or broken folders) deleted
    broken: list[str] = field(default_factory=list)  # unregistered folders that are no valid bundle
    partials: list[str] = field(default_factory=list)  # temporary folders of dead writers
    fixed: bool = False

    @property
    def clean(self) -> bool:
        found = (self.dead_runs, self.dead_jobs, self.adopted, self.removed, self.broken, self.partials)
        return not any(found)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "clean": self.clean}


def check_home(settings: Settings | None = None, *, fix: bool = False, orphans: str = "adopt") -> HomeReport:
    """What a dead process left in the home; with `fix`, repair it. `orphans`: 'adopt' or 'remove'."""
    if orphans not in ("adopt", "remove"):
        raise FrugalError(f"orphans takes 'adopt' or 'remove', not {orphans!r}")
    settings = settings or get_settings()
    lineage = open_store(settings, reconcile=False)
    report = HomeReport(home=str(settings.home), fixed=fix)
    report.dead_runs = lineage.fail_dead_runs() if fix else lineage.dead_runs()
    jobs = JobStore(settings, reconcile_runs=False)
    report.dead_jobs = jobs.reconcile() if fix else [row["id"] for row in jobs.dead_jobs()]
    store = settings.bundles_dir
    if not store.is_dir():
        return report
    partials = stale_partials(store)
    report.partials = [p.name for p in partials]
    if fix:
        for temp in partials:
            shutil.rmtree(temp, ignore_errors=True)
    registered = {row["id"] for row in lineage.list_bundles()}
    for folder in sorted(p for p in store.iterdir() if p.is_dir() and not p.name.startswith(TEMP_PREFIX)):
        if folder.name in registered:
            continue
        try:
            bundle = load_bundle(folder)
        except BundleError:
            report.broken.append(folder.name)
            if fix and orphans == "remove":
                shutil.rmtree(folder, ignore_errors=True)
            continue
        if orphans == "adopt":
            report.adopted.append(bundle.id)
            if fix:
                lineage.add_bundle(bundle, data_sha256=bundle.config.get("data_sha256", ""))
        else:
            report.removed.append(bundle.id)
            if fix:
                shutil.rmtree(folder, ignore_errors=True)
    return report
