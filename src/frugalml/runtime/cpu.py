"""CPU that other processes keep busy: whether more intra-op threads for a model call would find
free cores."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

STAT = Path("/proc/stat")
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user, nice, system, irq, softirq, steal (guest time is in user)


def _machine_busy_s() -> float | None:
    """CPU seconds every process has used on the cores this process may run on (Linux's
    /proc/stat, its per-core lines: under a cpuset, cores outside it are not neighbours); None
    elsewhere."""
    try:
        ours = {f"cpu{core}" for core in os.sched_getaffinity(0)}
        busy = 0
        for line in STAT.read_text().splitlines():
            fields = line.split()
            if fields and fields[0] in ours:
                busy += sum(int(fields[1 + i]) for i in BUSY_FIELDS)
        return busy / os.sysconf("SC_CLK_TCK")
    except (AttributeError, OSError, IndexError, ValueError):  # no sched_getaffinity: not Linux
        return None


def _own_busy_s() -> float:
    times = os.times()
    return times.user + times.system


class Neighbours:
    """Cores that other processes kept busy, on average since the previous reading at least
    `min_interval_s` ago: the machine's CPU time (/proc/stat) less this process's, over that
    interval. A moving measure, not an instant one: a neighbour that wants CPU (a load generator
    on the same cores) shows, a thread caught mid-switch does not."""

    def __init__(self, min_interval_s: float = 0.1):
        self.min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._last = (time.monotonic(), _machine_busy_s(), _own_busy_s())
        self._cores: float | None = None if self._last[1] is None else 0.0

    def busy_cores(self) -> float | None:
        """None where the machine's CPU time cannot be read (not Linux)."""
        with self._lock:
            at = time.monotonic()
            then, machine_then, own_then = self._last
            if machine_then is None:
                return None
            if at - then < self.min_interval_s:  # most calls: the last reading, no file read
                return self._cores
            machine, own = _machine_busy_s(), _own_busy_s()
            if machine is None:
                return None
            self._cores = max(0.0, ((machine - machine_then) - (own - own_then)) / (at - then))
            self._last = (at, machine, own)
            return self._cores
