"""Jobs: any stage command plus its resources, run by a backend (local pool or Ray), retried with
back-off, recorded in the lineage store. `from frugalml.jobs import JobSpec, submit`."""

from frugalml.jobs.control import cancel, describe, follow, list_jobs, submit, wait
from frugalml.jobs.spec import JOB_COMMANDS, JobSpec

__all__ = ["JOB_COMMANDS", "JobSpec", "cancel", "describe", "follow", "list_jobs", "submit", "wait"]
