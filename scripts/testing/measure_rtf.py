#!/usr/bin/env python3
"""Real-time factor of a running whisper-service, measured from the client.

    python scripts/testing/measure_rtf.py --url http://127.0.0.1:8080 \
        --file ../shared/audio/multilingual.mp3 --repeat 5

For each file, sends ``--repeat`` sequential /transcribe requests (one warm-up first)
and reports the median wall time, the service's own ``processing_seconds`` and the
real-time factor (seconds of processing per second of audio; lower is faster). Only
talks to the URL given; stops after repeat x files requests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import httpx


def measure(url: str, path: Path, repeat: int, fields: dict[str, str]) -> dict[str, float | str]:
    """Median timings of ``repeat`` transcriptions of ``path``."""
    content = path.read_bytes()
    walls, served = [], []
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
            if attempt:  # the first request warms caches and is not counted
                walls.append(wall)
                served.append(float(body["processing_seconds"]))
    wall, processing = statistics.median(walls), statistics.median(served)
    return {
        "file": path.name,
        "engine": str(body["engine"]),
        "model": str(body["model"]),
        "audio_seconds": duration,
        "wall_seconds": round(wall, 3),
        "processing_seconds": round(processing, 3),
        "rtf": round(wall / duration, 4),
    }


def main() -> int:
    """Parse arguments, measure, print JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--file", action="append", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--field", action="append", default=[], help="form field k=v")
    args = parser.parse_args()
    fields = dict(f.split("=", 1) for f in args.field)
    for path in args.file:
        print(json.dumps(measure(args.url.rstrip("/"), path, args.repeat, fields)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
