"""The shipped image's figures (docs/deployment.md, "The image, measured"): its size
unpacked and as a registry stores it (``docker save | gzip``), the time from `docker
run` to /health/ready, the gunicorn worker's resident memory inside the container
against the same service started on this machine (`whisper-service serve`, the same
preset and settings), and the container's peak memory under the hostile load of
scripts/testing/measure_memory.py against its limit.

    python benchmarks/image.py [--image whisper-service:test] [--starts 3]
        [--output .benchmarks/image.json]

Builds nothing: run `make image` (or the container tests) first.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.report import write_report  # noqa: E402
from tests.support import AUDIO, LiveServer  # noqa: E402
from tests.support.containers import IMAGE, Container, docker, memory_burst  # noqa: E402

MIB = 2**20


def registry_bytes(image: str) -> int:
    """Bytes of ``docker save IMAGE | gzip`` (default level), counted as it streams."""
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    assert save.stdout is not None
    counter = _Counter()
    with gzip.GzipFile(fileobj=counter, mode="wb", compresslevel=6) as out:  # gzip's own default
        while chunk := save.stdout.read(1 << 20):
            out.write(chunk)
    if save.wait() != 0:
        raise RuntimeError("docker save failed")
    return counter.count


class _Counter:
    """A write-only file that only counts."""

    def __init__(self) -> None:
        self.count = 0

    def write(self, data: bytes) -> int:
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def worker_rss(root_pid: int) -> int:
    """Resident bytes of the gunicorn worker: the largest process under the master."""
    children = psutil.Process(root_pid).children(recursive=True)
    return max(child.memory_info().rss for child in children)


def transcribe_once(url: str, headers: dict[str, str]) -> None:
    """One request, so that both measure a worker that has served."""
    with (AUDIO / "jfk.flac").open("rb") as fp:
        response = httpx.post(f"{url}/transcribe", files={"file": fp}, headers=headers, timeout=120)
    response.raise_for_status()


def container_figures(image: str, starts: int) -> dict[str, Any]:
    """Seconds to ready (each start) and the worker's RSS after one request."""
    ready, rss = [], 0
    for _ in range(starts):
        container = Container(image)
        try:
            ready.append(container.run())
            transcribe_once(container.url, container.headers)
            time.sleep(2)
            rss = worker_rss(int(container.state()["Pid"]))
        finally:
            container.remove()
    return {"ready_seconds": ready, "ready_median": statistics.median(ready), "rss": rss}


def host_worker_rss(tmp: Path) -> int:
    """The same preset served on this machine (`whisper-service serve`)."""
    key = "0123456789abcdef0123456789abcdef"
    server = LiveServer(tmp, APP_ENV="production", WHISPER_API_KEYS=key,
                        WHISPER_CPU_THREADS="0", WHISPER_JOBS_STORE="")  # fmt: skip
    server.start()
    try:
        transcribe_once(server.url, {"Authorization": f"Bearer {key}"})
        time.sleep(2)
        assert server.process is not None
        return worker_rss(server.process.pid)
    finally:
        server.stop()


def hostile_load(image: str) -> dict[str, Any]:
    """Eight 30-minute uploads at once against a container; its cgroup's peak. Goodput
    admission off: it would refuse most of them before they hold memory."""
    burst = memory_burst(image, seconds=60, env={"WHISPER_GOODPUT_ADMISSION": "false"})
    return {
        "answers": burst.answers,
        "process_tree_peak_mib": burst.tree_peak_mib,
        "cgroup_peak_mib": round(burst.cgroup_peak_bytes / MIB),
        "limit_mib": round(burst.limit_bytes / MIB),
        "oom_killed": burst.state["OOMKilled"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=os.environ.get("WHISPER_TEST_IMAGE", IMAGE))
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--output", type=Path, default=REPO / ".benchmarks" / "image.json")
    args = parser.parse_args()
    (inspected,) = json.loads(docker("image", "inspect", args.image).stdout)
    tmp = Path(tempfile.mkdtemp(prefix="whisper-image-benchmark-"))
    started = container_figures(args.image, args.starts)
    report = {
        "image": args.image,
        "size_mib": round(inspected["Size"] / MIB),
        "registry_gzip_mib": round(registry_bytes(args.image) / MIB),
        "ready_seconds": [round(s, 2) for s in started["ready_seconds"]],
        "ready_median_seconds": round(started["ready_median"], 2),
        "worker_rss_container_mib": round(started["rss"] / MIB),
        "worker_rss_host_mib": round(host_worker_rss(tmp) / MIB),
        "hostile_load": hostile_load(args.image),
    }
    write_report(args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
