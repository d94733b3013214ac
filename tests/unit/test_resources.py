"""CPU and memory limits read from cgroup files (v2 and v1 layouts)."""

from __future__ import annotations

import os
from pathlib import Path

from whisper_service.serving.resources import (
    available_cpus,
    cgroup_cpu_quota,
    cgroup_memory_limit,
    memory_limit_bytes,
)


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_cgroup_v2_quota_and_memory(tmp_path: Path) -> None:
    write(tmp_path, "cpu.max", "150000 100000")
    write(tmp_path, "memory.max", str(2 * 1024**3))
    assert cgroup_cpu_quota(tmp_path) == 1.5
    assert cgroup_memory_limit(tmp_path) == 2 * 1024**3
    # 1.5 CPUs of quota round up to 2 threads, but never above the affinity mask.
    assert available_cpus(tmp_path) == min(2, len(os.sched_getaffinity(0)))


def test_cgroup_v2_unlimited(tmp_path: Path) -> None:
    write(tmp_path, "cpu.max", "max 100000")
    write(tmp_path, "memory.max", "max")
    assert cgroup_cpu_quota(tmp_path) is None
    assert cgroup_memory_limit(tmp_path) is None
    assert available_cpus(tmp_path) == len(os.sched_getaffinity(0))


def test_cgroup_v1(tmp_path: Path) -> None:
    write(tmp_path, "cpu/cpu.cfs_quota_us", "100000")
    write(tmp_path, "cpu/cpu.cfs_period_us", "100000")
    write(tmp_path, "memory/memory.limit_in_bytes", str(512 * 1024**2))
    assert cgroup_cpu_quota(tmp_path) == 1.0
    assert available_cpus(tmp_path) == 1
    assert cgroup_memory_limit(tmp_path) == 512 * 1024**2
    assert memory_limit_bytes(tmp_path) == 512 * 1024**2


def test_cgroup_v1_unlimited_markers(tmp_path: Path) -> None:
    write(tmp_path, "cpu/cpu.cfs_quota_us", "-1")
    write(tmp_path, "cpu/cpu.cfs_period_us", "100000")
    write(tmp_path, "memory/memory.limit_in_bytes", str(9223372036854771712))
    assert cgroup_cpu_quota(tmp_path) is None
    assert cgroup_memory_limit(tmp_path) is None


def test_no_cgroup_files_means_the_host(tmp_path: Path) -> None:
    assert available_cpus(tmp_path) == len(os.sched_getaffinity(0))
    assert memory_limit_bytes(tmp_path) > 0
