"""`python -m frugalml.jobs JOB_ID`: the detached process that sees one job through its backend."""

import sys

from frugalml.jobs.backends import BACKENDS
from frugalml.jobs.store import JobStore

job_id = sys.argv[1]
BACKENDS[JobStore().get(job_id)["backend"]].supervise(job_id)
