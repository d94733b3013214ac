"""HealthMonitor plumbing: verdicts, windows, cgroup CPU, the overall status."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from whisper_service.config import load_settings
from whisper_service.serving.health import (
    CpuSampler,
    HealthMonitor,
    Status,
    Window,
    judge_high,
    judge_low,
    memory_used_bytes,
)


def test_judge_high_and_low() -> None:
    assert judge_high("m", 50, "%", 80, 92, "memory").status is Status.HEALTHY
    degraded = judge_high("m", 85, "%", 80, 92, "memory")
    assert degraded.status is Status.DEGRADED
    assert degraded.message == "memory 85% ≥ 80%"
    assert judge_high("m", 95, "%", 80, 92, "memory").status is Status.UNHEALTHY
    assert judge_high("c", 100, "%", 90, None, "cpu").status is Status.DEGRADED  # no unhealthy
    assert judge_low("d", 100, "MiB", 1024, 256, "free").status is Status.UNHEALTHY
    assert judge_low("d", 500, "MiB", 1024, 256, "free").status is Status.DEGRADED
    assert judge_low("d", 5000, "MiB", 1024, 256, "free").status is Status.HEALTHY


def test_window_forgets_old_samples_and_reports_trends() -> None:
    window = Window(seconds=10)
    for t in range(20):
        window.add(float(t), now=float(t))
    trend = window.trend()
    assert trend is not None
    assert trend["samples"] == 11  # t = 9..19
    assert trend["max"] == 19.0
    assert trend["mean"] == 14.0
    assert trend["p95"] == 19.0
    assert Window(10).trend() is None


def test_cgroup_cpu_usage_is_a_share_of_the_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("200000 100000\n")
    stat = tmp_path / "cpu.stat"
    stat.write_text("usage_usec 1000000\nuser_usec 1\n")
    sampler = CpuSampler(tmp_path)
    assert sampler.sample() == 0.0  # first call primes
    stat.write_text("usage_usec 1000000000000\n")  # far more than 2 CPUs could do
    assert sampler.sample() == 100.0


def test_cgroup_memory(tmp_path: Path) -> None:
    (tmp_path / "memory.current").write_text("123456\n")
    assert memory_used_bytes(tmp_path) == 123456
    assert memory_used_bytes(tmp_path / "absent") > 0  # host fallback


def test_overall_status_is_the_worst_and_model_state_counts(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text(str(1000))
    (tmp_path / "memory.current").write_text(str(950))
    settings = load_settings(health_memory_degraded_percent=80, health_memory_unhealthy_percent=90)
    loaded = [False]
    monitor = HealthMonitor(settings, lambda: (loaded[0], None), cgroup_root=tmp_path)
    monitor.sample()
    checks = monitor.checks
    assert checks["model"].status is Status.UNHEALTHY
    assert checks["memory"].value == pytest.approx(95.0)
    assert monitor.memory_critical
    assert monitor.status is Status.UNHEALTHY
    loaded[0] = True
    (tmp_path / "memory.current").write_text(str(100))
    monitor.sample()
    assert not monitor.memory_critical
    assert monitor.checks["model"].status is Status.HEALTHY
    report = monitor.report()
    assert report["checks"]["memory"]["trend"]["samples"] == 2


def test_event_loop_lag_is_measured_in_the_background() -> None:
    async def scenario() -> float:
        monitor = HealthMonitor(load_settings(), lambda: (True, 1.0))
        monitor.start()
        await asyncio.sleep(0.3)
        time.sleep(0.4)  # noqa: ASYNC251 - blocking the loop is what this test measures
        await asyncio.sleep(0.3)
        monitor.sample()
        await monitor.stop()
        trend = monitor.report()["checks"]["event_loop"]["trend"]
        return float(trend["max"])

    # A 0.4 s block delays the 0.25 s probe timer by at least 0.4 - 0.25 s.
    assert asyncio.run(scenario()) >= 0.15 - 0.01
