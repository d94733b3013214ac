#!/usr/bin/env python3
"""Real-time factor of a running whisper-service, measured from the client.

    python scripts/testing/measure_rtf.py --url http://127.0.0.1:8080 \
        --file ../shared/audio/multilingual.mp3 --repeat 5

For each file, sends ``--repeat`` sequential /transcribe requests (one warm-up first)
and reports the median wall time, the service's own ``processing_seconds`` and the
real-time factor (seconds of processing per second of audio; lower is faster). With
``--jobs``, each /transcribe is followed by the same file through POST /jobs, polled
every 0.2 s until it succeeds (the server needs a job store), and the two paths'
real-time factors and their ratio are reported, measured in the same run. Only talks
to the URL given; stops after repeat x files requests (twice that with --jobs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

JOB_TIMEOUT_SECONDS = 600


def run_job(client: httpx.Client, url: str, path: Path, content: bytes,
            fields: dict[str, str]) -> float:  # fmt: skip
    """Seconds from POST /jobs to seeing the job succeeded."""
    started = time.perf_counter()
    accepted = client.post(f"{url}/jobs", files={"file": (path.name, content)}, data=fields)
    accepted.raise_for_status()
    status_url = accepted.json()["status_url"]
    while time.perf_counter() - started < JOB_TIMEOUT_SECONDS:
        job = client.get(status_url).json()
        if job["status"] == "succeeded":
            return time.perf_counter() - started
        if job["status"] in ("failed", "cancelled"):
            raise RuntimeError(f"job {job['id']} {job['status']}: {job['error']}")
        time.sleep(0.2)
    raise RuntimeError(f"job not done after {JOB_TIMEOUT_SECONDS} s")


def measure(
    url: str, path: Path, repeat: int, fields: dict[str, str], jobs: bool = False
) -> dict[str, float | str]:
    """Median timings of ``repeat`` transcriptions of ``path`` (and jobs, interleaved)."""
    content = path.read_bytes()
    walls, served, job_walls = [], [], []
    duration = 0.0
    with httpx.Client(timeout=600) as client:
        for attempt in range(repeat + 1):
            started = time.perf_counter()
            response = client.post(
                f"{url}/transcribe", files={"file": (path.name, content)}, data=fields
            )
            wall = time.perf_counter() - started
            response.raise_for_status()
            body = response.json()
            duration = float(body["duration"])
            job_wall = run_job(client, url, path, content, fields) if jobs else 0.0
            if attempt:  # the first round warms caches and is not counted
                walls.append(wall)
                served.append(float(body["processing_seconds"]))
                job_walls.append(job_wall)
    wall, processing = statistics.median(walls), statistics.median(served)
    report: dict[str, float | str] = {
        "file": path.name,
        "engine": str(body["engine"]),
        "model": str(body["model"]),
        "audio_seconds": duration,
        "wall_seconds": round(wall, 3),
        "processing_seconds": round(processing, 3),
        "rtf": round(wall / duration, 4),
    }
    if jobs:
        job_wall = statistics.median(job_walls)
        report.update(
            job_wall_seconds=round(job_wall, 3),
            job_rtf=round(job_wall / duration, 4),
            job_over_transcribe=round(job_wall / wall, 3),
        )
    return report


def main() -> int:
    """Parse arguments, measure, print JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--file", action="append", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--field", action="append", default=[], help="form field k=v")
    parser.add_argument("--jobs", action="store_true", help="also time POST /jobs")
    args = parser.parse_args()
    fields = dict(f.split("=", 1) for f in args.field)
    for path in args.file:
        print(json.dumps(measure(args.url.rstrip("/"), path, args.repeat, fields, args.jobs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
