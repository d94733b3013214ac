"""One long recording as a job on 1, 2 and 3 instances (docs/benchmarks.md, "Jobs across
instances"), on Google's Pub/Sub and Firestore emulators and gcp-storage-emulator,
the way tests/integration/test_distributed_jobs.py runs them.

Each instance has one inference thread, so two cores can show scaling. Wall time is
the client's: POST /jobs to the poll that sees ``succeeded``. The overhead of a unit
is its delivery (from ``job_delivery_started`` to ``job_unit_done`` in the logs:
fetching its audio, the batches, checkpoints, progress transactions) against the same
windows transcribed in-process by the raw engine.

    python benchmarks/jobs_scaling.py [--instances 1 2 3] [--rounds 3] [--files gcs|directory]
"""

from __future__ import annotations

import os

# As `whisper-service` does for the instances: the in-process side must not pay for
# numpy's spinning BLAS pool either (set before numpy loads).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import contextlib
import statistics
import sys
import time
import uuid
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.report import write_report  # noqa: E402
from tests.support import AUDIO, LONG_AUDIO, MODEL_CACHE, LiveServer, manifest  # noqa: E402
from tests.support.balancer import Balancer  # noqa: E402
from tests.support.google_emulators import PROJECT, GcpEmulators  # noqa: E402
from tests.support.storage_emulator import Emulator  # noqa: E402
from whisper_service.audio import SAMPLE_RATE, decode_audio  # noqa: E402

TOKEN = "bench-push-token-for-the-emulator-0123"  # noqa: S105 - the emulator's stand-in
INSTANCE = {
    "APP_ENV": "development",
    "WHISPER_CPU_THREADS": "1",
    "WHISPER_INFERENCE_WORKERS": "1",
    "WHISPER_JOBS_BATCH_SIZE": "1",
    # Fixed 30 s units: the same plan whatever real-time factor an instance measured.
    "WHISPER_JOBS_UNIT_MAX_AUDIO_SECONDS": "30",
    "WHISPER_LOG_FORMAT": "json",
    "WHISPER_LOG_LEVEL": "INFO",
}
TWENTY_MINUTES = 20 * 60
POLL_SECONDS = 0.5


def concatenation(path: Path) -> Path:
    """The shared English recordings one after another (0.5 s apart), over and over,
    until 20 minutes: 16 kHz 16-bit mono."""
    pieces = [decode_audio(AUDIO / LONG_AUDIO, max_seconds=600).samples]
    pieces += [decode_audio(e.path, max_seconds=600).samples
               for e in manifest() if e.language == "en"]  # fmt: skip
    gap = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    out: list[np.ndarray] = []
    total = 0
    while total < TWENTY_MINUTES * SAMPLE_RATE:
        for piece in pieces:
            out += [piece, gap]
            total += len(piece) + len(gap)
    pcm = (np.clip(np.concatenate(out), -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm.tobytes())
    return path


@contextlib.contextmanager
def cluster(count: int, gcp: GcpEmulators, gcs: Emulator, logs: Path, files: str) -> Iterator[Any]:
    """``count`` instances behind one push subscription, as in the distributed tests;
    job files in the GCS emulator (``files="gcs"``) or a directory they all share."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    gcs.client().create_bucket(name)
    shared = logs / "files"
    shared.mkdir(mode=0o700, exist_ok=True)
    topic = f"projects/{PROJECT}/topics/{name}"
    env = {
        **gcp.env(), **INSTANCE,
        "STORAGE_EMULATOR_HOST": gcs.url, "WHISPER_MODEL_CACHE_DIR": str(MODEL_CACHE),
        "WHISPER_JOBS_STORE": "firestore", "WHISPER_FIRESTORE_COLLECTION": name,
        "WHISPER_JOBS_FILES": f"gs://{name}/jobs" if files == "gcs" else str(shared),
        "WHISPER_JOBS_QUEUE": "pubsub",
        "WHISPER_PUBSUB_TOPIC": topic, "WHISPER_PUBSUB_DEAD_LETTER_TOPIC": f"{topic}-dead-letter",
        "WHISPER_PUBSUB_PUSH_TOKEN": TOKEN,
    }  # fmt: skip
    instances = [LiveServer(logs, **env) for _ in range(count)]
    balancer = Balancer([i.port for i in instances])
    gcp.create_subscriptions(
        name,
        f"{balancer.url}/internal/jobs/units?token={TOKEN}",
        f"{balancer.url}/internal/jobs/dead-letters?token={TOKEN}",
        5,
    )
    try:
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(lambda s: s.start(), instances))
        yield instances, name
    finally:
        for instance in instances:
            instance.stop()
        balancer.stop()


def run_job(url: str, path: Path) -> tuple[float, dict[str, Any]]:
    """Seconds from POST /jobs to the poll that sees it succeeded, and the job."""
    started = time.perf_counter()
    with path.open("rb") as audio:
        accepted = httpx.post(f"{url}/jobs", files={"file": (path.name, audio)},
                              data={"language": "en"}, timeout=120).json()  # fmt: skip
    while True:
        job: dict[str, Any] = httpx.get(f"{url}/jobs/{accepted['id']}", timeout=30).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            break
        # Polling costs the instances CPU (a Firestore read and a view each): on two
        # cores a tight loop would slow what it measures. Resolution: half a second.
        time.sleep(POLL_SECONDS)
    seconds = time.perf_counter() - started
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job['id']} ended {job['status']}: {job['error']}")
    return seconds, job


def unit_seconds(instances: list[LiveServer], job_id: str) -> dict[int, float]:
    """Each unit's delivery time from its instance's log (the delivery that stored it)."""
    started: dict[int, datetime] = {}
    found: dict[int, float] = {}
    for instance in instances:
        for event in instance.log_events():
            if event.get("job_id") != job_id or event.get("piece") in (None, "plan"):
                continue
            unit, at = int(str(event["piece"])), datetime.fromisoformat(str(event["time"]))
            if event["message"] == "job_delivery_started":
                started[unit] = at
            elif event["message"] == "job_unit_done" and unit in started:
                found[unit] = (at - started[unit]).total_seconds()
    return found


def in_process_seconds(units: list[dict[str, Any]], audio: np.ndarray) -> dict[int, float]:
    """The same windows, unit by unit, through the raw engine in this process."""
    from whisper_service.config import load_settings
    from whisper_service.engines.base import TranscribeOptions
    from whisper_service.serving.startup import load_model

    settings = load_settings(app_env="development", cpu_threads=1,
                             model_cache_dir=str(MODEL_CACHE))  # fmt: skip
    engine = load_model(settings).engine
    options = TranscribeOptions(language="en", beam_size=settings.default_beam_size)
    seconds = {}
    for number, unit in enumerate(units):
        piece = audio[int(unit["start"] * SAMPLE_RATE) : int(np.ceil(unit["end"] * SAMPLE_RATE))]
        took = 0.0
        for window in unit["windows"]:  # one window per batch, as the instances ran them
            span = [(window["start"] - unit["start"], window["end"] - unit["start"])]
            began = time.perf_counter()
            engine.transcribe_windows(piece, span, options, None)
            took += time.perf_counter() - began
        seconds[number] = took
    return seconds


def measure(counts: list[int], work: Path, files: str, rounds: int) -> dict[str, Any]:
    """Wall time (median of ``rounds``) per file and instance count, speedups, and the
    unit overhead."""
    recordings = {
        "radio_127s": AUDIO / LONG_AUDIO,
        "concat_20min": concatenation(work / "20min.wav"),
    }
    gcp, gcs = GcpEmulators(work), Emulator(work / "gcs.log")
    report: dict[str, Any] = {"files": files, "wall_s": {}, "runs_s": {}, "speedup": {}}
    try:
        for count in counts:
            logs = work / f"n{count}"
            logs.mkdir(exist_ok=True)
            with cluster(count, gcp, gcs, logs, files) as (instances, _):
                run_job(instances[0].url, AUDIO / "jfk.flac")  # warm every path once
                for label, path in recordings.items():
                    runs = [run_job(instances[0].url, path) for _ in range(rounds)]
                    walls = [seconds for seconds, _ in runs]
                    report["wall_s"].setdefault(label, {})[count] = round(
                        statistics.median(walls), 2
                    )
                    report["runs_s"].setdefault(label, {})[count] = [round(w, 2) for w in walls]
                    print(f"{label} on {count}: {walls}", file=sys.stderr)
                    if count == 1 and label == "concat_20min":
                        report["unit_overhead"] = overhead(instances, runs[-1][1], path)
    finally:
        gcp.stop()
        gcs.process.terminate()
    for label, walls in report["wall_s"].items():
        report["speedup"][label] = {n: round(walls[counts[0]] / w, 2) for n, w in walls.items()}
    return report


def overhead(instances: list[LiveServer], job: dict[str, Any], path: Path) -> dict[str, Any]:
    """Unit deliveries on one instance vs the same windows in-process (the plan made
    again here: VAD and grouping are deterministic, and the job's own plan is deleted
    when it ends)."""
    from whisper_service.jobs.chunking import plan_units, plan_windows

    audio = decode_audio(path, max_seconds=3600).samples
    units = plan_units(
        plan_windows(audio, "vad"), float(INSTANCE["WHISPER_JOBS_UNIT_MAX_AUDIO_SECONDS"])
    )
    if len(units) != job["units"]["total"]:
        raise RuntimeError(f"planned {len(units)} units here, the job had {job['units']}")
    delivered = unit_seconds(instances, job["id"])
    direct = in_process_seconds([u.model_dump() for u in units], audio)
    both = sorted(set(delivered) & set(direct))
    ratios = [delivered[u] / direct[u] for u in both if direct[u] > 0]
    return {
        "units": len(both),
        "delivery_s_total": round(sum(delivered[u] for u in both), 2),
        "in_process_s_total": round(sum(direct[u] for u in both), 2),
        "ratio_total": round(sum(delivered[u] for u in both) / sum(direct[u] for u in both), 3),
        "ratio_median_unit": round(statistics.median(ratios), 3),
        "job_wall_vs_in_process": round(job_wall(job) / sum(direct.values()), 3),
    }


def job_wall(job: dict[str, Any]) -> float:
    started = datetime.fromisoformat(job["started_at"])
    return (datetime.fromisoformat(job["finished_at"]) - started).total_seconds()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each job; the median")
    parser.add_argument("--output", type=Path, default=REPO / ".benchmarks" / "jobs_scaling.json")
    parser.add_argument(
        "--files",
        choices=["gcs", "directory"],
        default="gcs",
        help="job files in gcp-storage-emulator, or a directory the instances share",
    )
    args = parser.parse_args()
    work = Path("/tmp/whisper-bench/jobs-scaling")  # noqa: S108
    work.mkdir(parents=True, exist_ok=True)
    report = measure(args.instances, work, args.files, args.rounds)
    write_report(args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
