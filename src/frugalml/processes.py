"""Whether a process still runs: how frugalml tells a dead writer or run from a live one."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True while a process `pid` exists on this machine (owned by anyone) and has not ended: a
    zombie (ended, not yet reaped by its parent, e.g. a job supervisor its submitter started) is
    dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:  # Linux: the state follows the parenthesised command name in /proc/PID/stat
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
