"""HealthMonitor: samples the process in the background and judges each figure.

Checks: CPU (of the container's CPU limit), memory (of the container's memory
limit), the model (loaded; age of the last successful inference), the event loop
(lag of a background timer: the API's own responsiveness without calling itself over
HTTP) and free space in the temp directory. Each check is healthy, degraded or
unhealthy with a reason; the overall status is the worst. Requests read the last
sample and never wait for one. A rolling window keeps trends (mean, p95, max).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import psutil
import structlog

from whisper_service.config import Settings
from whisper_service.observability import metrics
from whisper_service.serving.resources import CGROUP_ROOT, available_cpus, memory_limit_bytes

log = structlog.get_logger(__name__)

LOOP_PROBE_INTERVAL_SECONDS = 0.25


class Status(IntEnum):
    """Ordered so that the overall status is max() of the checks."""

    HEALTHY = 0
    DEGRADED = 1
    UNHEALTHY = 2

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict on its latest figure."""

    name: str
    status: Status
    value: float | None
    unit: str
    degraded_at: float | None
    unhealthy_at: float | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        """JSON shape of the check."""
        return {
            "status": str(self.status),
            "value": None if self.value is None else round(self.value, 4),
            "unit": self.unit,
            "threshold": {"degraded": self.degraded_at, "unhealthy": self.unhealthy_at},
            "message": self.message,
        }


def judge_high(
    name: str,
    value: float,
    unit: str,
    degraded: float | None,
    unhealthy: float | None,
    what: str,
) -> CheckResult:
    """A figure that is bad when high (CPU, memory, lag)."""
    if unhealthy is not None and value >= unhealthy:
        status, message = Status.UNHEALTHY, f"{what} {value:.3g}{unit} ≥ {unhealthy:g}{unit}"
    elif degraded is not None and value >= degraded:
        status, message = Status.DEGRADED, f"{what} {value:.3g}{unit} ≥ {degraded:g}{unit}"
    else:
        status, message = Status.HEALTHY, f"{what} {value:.3g}{unit}"
    return CheckResult(name, status, value, unit, degraded, unhealthy, message)


def judge_low(
    name: str, value: float, unit: str, degraded: float, unhealthy: float, what: str
) -> CheckResult:
    """A figure that is bad when low (free disk)."""
    if value <= unhealthy:
        status, message = Status.UNHEALTHY, f"{what} {value:.0f} {unit} ≤ {unhealthy:g} {unit}"
    elif value <= degraded:
        status, message = Status.DEGRADED, f"{what} {value:.0f} {unit} ≤ {degraded:g} {unit}"
    else:
        status, message = Status.HEALTHY, f"{what} {value:.0f} {unit}"
    return CheckResult(name, status, value, unit, degraded, unhealthy, message)


class Window:
    """Timestamped samples of one figure over the last ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._samples: deque[tuple[float, float]] = deque()

    def add(self, value: float, now: float) -> None:
        """Record a sample and forget those older than the window."""
        self._samples.append((now, value))
        while self._samples and self._samples[0][0] < now - self.seconds:
            self._samples.popleft()

    def trend(self) -> dict[str, float] | None:
        """Mean, p95 and max over the window (None before the first sample)."""
        values = sorted(v for _, v in self._samples)
        if not values:
            return None
        p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
        return {
            "mean": round(sum(values) / len(values), 4),
            "p95": round(p95, 4),
            "max": round(values[-1], 4),
            "samples": len(values),
        }


class CpuSampler:
    """CPU use as a percentage of the CPUs the container may use.

    Prefers cgroup v2 ``cpu.stat`` (the whole container, every gunicorn worker); falls
    back to the host's figure from psutil.
    """

    def __init__(self, root: Path = CGROUP_ROOT) -> None:
        self._stat = root / "cpu.stat"
        self._cpus = available_cpus(root)
        self._last: tuple[float, float] | None = None
        psutil.cpu_percent(None)  # primes psutil's own delta

    def _usage_seconds(self) -> float | None:
        try:
            for line in self._stat.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / 1e6
        except OSError:
            return None
        return None

    def sample(self) -> float:
        """Percent (0-100) since the previous call."""
        usage, now = self._usage_seconds(), time.monotonic()
        if usage is None:
            return float(psutil.cpu_percent(None))
        previous, self._last = self._last, (now, usage)
        if previous is None or now <= previous[0]:
            return 0.0
        busy = (usage - previous[1]) / (now - previous[0])
        return min(100.0, 100.0 * busy / self._cpus)


def memory_used_bytes(root: Path = CGROUP_ROOT) -> int:
    """Memory the container uses (cgroup v2 ``memory.current`` or v1 usage), else the
    host's used memory."""
    for name in ("memory.current", "memory/memory.usage_in_bytes", "memory.usage_in_bytes"):
        try:
            return int((root / name).read_text().strip())
        except (OSError, ValueError):
            continue
    vm = psutil.virtual_memory()
    return int(vm.total - vm.available)


class HealthMonitor:
    """Background sampler and judge. ``model_state`` returns (loaded, seconds since the
    last successful inference or None)."""

    def __init__(
        self,
        settings: Settings,
        model_state: Callable[[], tuple[bool, float | None]],
        cgroup_root: Path = CGROUP_ROOT,
    ) -> None:
        self.settings = settings
        self._model_state = model_state
        self._root = cgroup_root
        self._cpu = CpuSampler(cgroup_root)
        self._memory_limit = memory_limit_bytes(cgroup_root)
        self._tempdir = Path(tempfile.gettempdir())
        window = settings.health_window_seconds
        self._windows = {name: Window(window) for name in ("cpu", "memory", "event_loop")}
        self._loop_lag = 0.0
        self._checks: dict[str, CheckResult] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.sampled_at: float | None = None

    def start(self) -> None:
        """Sample once now, then keep sampling in background tasks."""
        self.sample()
        self._tasks = [
            asyncio.create_task(self._sample_forever()),
            asyncio.create_task(self._probe_loop_forever()),
        ]

    async def stop(self) -> None:
        """Stop the background tasks."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_sample_interval_seconds)
            try:
                self.sample()
            except Exception:  # a failed sample must not end the monitor
                log.exception("health_sample_failed")

    async def _probe_loop_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LOOP_PROBE_INTERVAL_SECONDS)
            self._loop_lag = max(0.0, loop.time() - before - LOOP_PROBE_INTERVAL_SECONDS)
            self._windows["event_loop"].add(self._loop_lag, time.monotonic())

    def sample(self) -> None:
        """Take every figure now and judge it (cheap: file reads and psutil)."""
        s, now = self.settings, time.monotonic()
        cpu = self._cpu.sample()
        memory_percent = 100.0 * memory_used_bytes(self._root) / self._memory_limit
        self._windows["cpu"].add(cpu, now)
        self._windows["memory"].add(memory_percent, now)
        free_mib = shutil.disk_usage(self._tempdir).free / 2**20
        loaded, age = self._model_state()
        if loaded:
            age_text = "no inference yet" if age is None else f"last inference {age:.0f} s ago"
            model = CheckResult(
                "model", Status.HEALTHY, age, "s", None, None, f"model loaded; {age_text}"
            )
        else:
            model = CheckResult(
                "model", Status.UNHEALTHY, None, "s", None, None, "model not loaded"
            )
        self._checks = {
            "cpu": judge_high(
                "cpu",
                cpu,
                "%",
                s.health_cpu_degraded_percent,
                s.health_cpu_unhealthy_percent,
                "CPU use",
            ),
            "memory": judge_high(
                "memory",
                memory_percent,
                "%",
                s.health_memory_degraded_percent,
                s.health_memory_unhealthy_percent,
                f"memory use of the {self._memory_limit / 2**20:.0f} MiB limit",
            ),
            "model": model,
            "event_loop": judge_high(
                "event_loop",
                self._loop_lag,
                "s",
                s.health_loop_lag_degraded_seconds,
                s.health_loop_lag_unhealthy_seconds,
                "event-loop lag",
            ),
            "disk": judge_low(
                "disk",
                free_mib,
                "MiB",
                s.health_disk_free_degraded_mib,
                s.health_disk_free_unhealthy_mib,
                f"free space in {self._tempdir}",
            ),
        }
        for name, check in self._checks.items():
            metrics.HEALTH_STATUS.labels(name).set(int(check.status))
        self.sampled_at = time.time()

    @property
    def checks(self) -> dict[str, CheckResult]:
        """The latest verdicts."""
        return dict(self._checks)

    @property
    def status(self) -> Status:
        """The worst check."""
        return max((c.status for c in self._checks.values()), default=Status.HEALTHY)

    @property
    def memory_critical(self) -> bool:
        """Memory use at or above the unhealthy threshold: new work risks an OOM kill."""
        memory = self._checks.get("memory")
        return memory is not None and memory.status is Status.UNHEALTHY

    def report(self) -> dict[str, Any]:
        """Every check with its value, thresholds, message and trend."""
        checks = {}
        for name, check in self._checks.items():
            data = check.as_dict()
            if name in self._windows:
                data["trend"] = self._windows[name].trend()
            checks[name] = data
        return {
            "status": str(self.status),
            "sampled_at": self.sampled_at,
            "window_seconds": self.settings.health_window_seconds,
            "checks": checks,
        }
