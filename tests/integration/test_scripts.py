"""scripts/testing/ tools against a live server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, LiveServer, assert_transcript

SMOKE_CLIP_REFERENCE = "And so my fellow Americans, ask not"


def run_script(name: str, *args: str, timeout: int) -> subprocess.CompletedProcess[str]:
    """Run scripts/testing/<name> with this interpreter; never raises on its exit code."""
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "testing" / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_measure_rtf_reports_a_plausible_real_time_factor(
    default_server: LiveServer, audio_dir: Path
) -> None:
    result = run_script(
        "measure_rtf.py",
        "--url",
        default_server.url,
        "--file",
        str(audio_dir / "jfk.flac"),
        "--repeat",
        "1",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["file"] == "jfk.flac"
    assert report["audio_seconds"] == 11.0
    assert 0 < report["processing_seconds"] <= report["wall_seconds"]
    # wall_seconds is rounded to ms in the report; the rtf is computed before rounding.
    assert report["rtf"] == pytest.approx(report["wall_seconds"] / 11.0, abs=1e-3)


def test_smoke_passes_against_a_live_server(default_server: LiveServer) -> None:
    result = run_script("smoke.py", default_server.url, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    said = next(line for line in lines if line.startswith("ok: transcription: "))
    # The bundled clip is JFK's first words; what the model makes of them varies.
    assert_transcript(said.removeprefix("ok: transcription: "), SMOKE_CLIP_REFERENCE, 0.3)
    assert lines[-1] == "smoke test passed"


def test_smoke_fails_clearly_without_a_service() -> None:
    result = run_script("smoke.py", "http://127.0.0.1:9", "--ready-timeout", "1", timeout=60)
    assert result.returncode == 1
    assert "SMOKE TEST FAILED" in result.stderr


def test_load_test_reports_throughput_latency_health_and_memory(
    default_server: LiveServer, audio_dir: Path
) -> None:
    assert default_server.process is not None
    result = run_script(
        "load_test.py",
        "--url",
        default_server.url,
        "--pid",
        str(default_server.process.pid),
        "--file",
        str(audio_dir / "jfk.flac"),
        "--long-file",
        str(audio_dir / "en" / "ljspeech_LJ001-0002.wav"),
        "--clients",
        "2",
        "--duration",
        "4",
        "--max-requests",
        "6",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert 1 <= report["completed"] <= 6
    # The long file's client is reported apart; every request has its status.
    long = report["long"]
    assert long["file"] == "ljspeech_LJ001-0002.wav"
    assert long["completed"] >= 1
    assert long["latency"]["n"] == long["completed"]
    assert report["completed"] + long["completed"] <= 6
    assert report["statuses"] == {"200": report["completed"] + long["completed"]}
    assert report["latency"]["n"] == report["completed"]
    assert report["latency"]["p50_ms"] > 0
    assert report["health_live"]["n"] > 0
    assert report["peak_rss_mib"] > 100
    assert report["audio_seconds_per_second"] > 0


def test_load_test_refuses_non_loopback_targets(audio_dir: Path) -> None:
    result = run_script(
        "load_test.py",
        "--url",
        "http://10.1.2.3:8080",
        "--file",
        str(audio_dir / "jfk.flac"),
        timeout=30,
    )
    assert result.returncode != 0
    assert "only loopback addresses" in result.stderr


def test_measure_memory_reports_idle_and_peak() -> None:
    result = run_script(
        "measure_memory.py", "burst", "--env", "development", "--requests", "2",
        "--minutes", "0.5", "--seconds", "60",
        timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["answers"] == ["200", "200"]
    assert 100 < report["idle_mib"] <= report["peak_mib"]
