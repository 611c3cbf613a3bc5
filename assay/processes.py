"""Whether a recorded process is still the one that was recorded.

A pid alone does not say that: pids are reused, and a state folder copied with `cp -a` carries the pid
files of the original's servers. What identifies a process here is its pid and its start time (read
from /proc on Linux), recorded together, compared together.
"""

from __future__ import annotations

import os
from pathlib import Path


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def started_at(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch, to the clock tick), or None where it does
    not exist or /proc cannot say."""
    boot = _boot_time()
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if boot is None:
        return None
    # Field 22 (starttime, in clock ticks since boot) counted after the command name, which may hold spaces.
    fields = stat[stat.rindex(")") + 2:].split()
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def alive(pid: int) -> bool:
    """The process exists and is not a zombie this process has yet to reap."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_same_process(pid: int, recorded_start: float | None, tolerance: float = 1.0) -> bool:
    """`pid` is alive and is the process that started at `recorded_start` (not a later one given the
    same pid). Without a recorded start time, or where /proc is missing, only liveness can be judged."""
    if not alive(pid):
        return False
    if recorded_start is None:
        return True
    now_start = started_at(pid)
    return now_start is None or abs(now_start - recorded_start) <= tolerance


def started_before(pid: int, moment: float, tolerance: float = 1.0) -> bool:
    """`pid` is alive and started no later than `moment`: it can be the process that recorded
    something at `moment`; a process started after it cannot."""
    if not alive(pid):
        return False
    now_start = started_at(pid)
    return now_start is None or now_start <= moment + tolerance
