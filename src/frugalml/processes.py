"""Whether a process still runs: how frugalml tells a dead writer or run from a live one."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while a process `pid` exists on this machine (owned by anyone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
