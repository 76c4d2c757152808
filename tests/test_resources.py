"""Peak memory as frugalml reports it: the process's own peak resident set."""

from __future__ import annotations

import json
import subprocess
import sys

MB = 2**20

PEAK_BEFORE_AND_AFTER_200MB = """
import json
from frugalml.resources import peak_rss_mb
before = peak_rss_mb()
blob = b"x" * (200 * 2**20)  # written, so every page is resident
print(json.dumps([before, peak_rss_mb()]))
"""


def _run(code: str) -> list[float]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_peak_rss_is_positive_and_grows_with_an_allocation():
    before, after = _run(PEAK_BEFORE_AND_AFTER_200MB)
    assert 1 < before < 1000
    assert after - before >= 190


def test_a_child_reports_its_own_peak_not_its_large_parents():
    from frugalml.resources import peak_rss_mb

    blob = b"x" * (400 * MB)  # the parent holds 400 MB while it starts the child
    assert peak_rss_mb() >= 400
    before, _ = _run(PEAK_BEFORE_AND_AFTER_200MB)
    del blob
    assert before < 200
