"""How many cores this process may use: what ``service.workers: auto`` resolves to.

The CPU affinity mask bounds it (``taskset``, a cpuset cgroup), and so does a CFS quota
(``cpu.max`` in cgroup v2, ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` in v1), which is how a
Kubernetes CPU limit reaches the container. A quota is rounded down, as Go's automaxprocs does:
two workers under a 1.5-core limit would spend their time throttled. Never less than one.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

_CGROUP = Path("/sys/fs/cgroup")


def _quota_v2(root: Path) -> float | None:
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


def _quota_v1(root: Path) -> float | None:
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:  # -1: no quota
        return None
    return quota / period


def cpu_quota(root: Path = _CGROUP) -> float | None:
    """The cgroup's CPU quota in cores, None when there is none."""
    quota = _quota_v2(root)
    return quota if quota is not None else _quota_v1(root)


def allowed_cores(root: Path = _CGROUP) -> int:
    """The cores this process may keep busy: its affinity mask, bounded by the cgroup quota."""
    cores = len(os.sched_getaffinity(0))
    quota = cpu_quota(root)
    if quota is not None:
        cores = min(cores, math.floor(quota))
    return max(1, cores)


def resolve_workers(setting: int | str, root: Path = _CGROUP) -> int:
    """``service.workers``: a number as it is, ``auto`` the cores allowed."""
    return allowed_cores(root) if setting == "auto" else int(setting)
