"""What a process costs in memory, measured one way wherever frugalml reports it."""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB: the most physical memory it has held at once
    (its own, children not included).

    On Linux it is the kernel's high-water mark of the process's address space (VmHWM), which
    starts afresh at exec. getrusage's ru_maxrss carries over exec, so a process started by a large
    parent would report the parent's peak; it is the fallback where /proc is missing.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, else kB
