"""What the container really grants this process: CPUs and memory.

Cloud Run (and any cgroup-limited container) reports the host's cores through
``os.cpu_count()``; sizing thread pools from that oversubscribes the CPU quota and
makes latency worse, so every thread count in the service starts from here.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPU quota in cores (cgroup v2 ``cpu.max`` or v1 CFS quota); None if unlimited."""
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        if quota == "max" or not period:
            return None
        return int(quota) / int(period)
    quota_v1 = _read(root / "cpu" / "cpu.cfs_quota_us") or _read(root / "cpu.cfs_quota_us")
    period_v1 = _read(root / "cpu" / "cpu.cfs_period_us") or _read(root / "cpu.cfs_period_us")
    if quota_v1 is None or period_v1 is None or int(quota_v1) <= 0:
        return None
    return int(quota_v1) / int(period_v1)


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """Whole CPUs this process may use: the smallest of affinity, cgroup quota and host count."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def cgroup_memory_limit(root: Path = CGROUP_ROOT) -> int | None:
    """Memory limit in bytes from cgroup v2 ``memory.max`` or v1; None when unlimited."""
    v2 = _read(root / "memory.max")
    if v2 is not None:
        return None if v2 == "max" else int(v2)
    v1 = _read(root / "memory" / "memory.limit_in_bytes") or _read(root / "memory.limit_in_bytes")
    if v1 is None:
        return None
    limit = int(v1)
    # cgroup v1 reports "unlimited" as a huge page-aligned number.
    return None if limit >= 1 << 60 else limit


def memory_limit_bytes(root: Path = CGROUP_ROOT) -> int:
    """The container memory limit when one is set, else the host's physical memory."""
    import psutil

    limit = cgroup_memory_limit(root)
    total = int(psutil.virtual_memory().total)
    return min(limit, total) if limit is not None else total
