"""The whisper-service command line, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil

from tests.support import (
    HOTWORDS_REFERENCE,
    MODEL_CACHE,
    MULTILINGUAL_START,
    LiveServer,
    assert_begins_like,
    assert_jfk,
    assert_transcript,
)
from tests.support.subtitles import parse_srt_strict, parse_vtt_strict

CLI = str(Path(sys.executable).with_name("whisper-service"))


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WHISPER_")}
    clean.update({"WHISPER_MODEL_CACHE_DIR": str(MODEL_CACHE), **env})
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, env=clean, timeout=300, check=False
    )


def test_transcribe_to_srt(audio_dir: Path) -> None:
    result = run("transcribe", str(audio_dir / "jfk.flac"), "--format", "srt")
    assert result.returncode == 0, result.stderr
    cues = parse_srt_strict(result.stdout)
    assert_jfk(" ".join(c[2] for c in cues))


def test_transcribe_several_files_to_a_folder_with_the_torch_engine(
    audio_dir: Path, tmp_path: Path
) -> None:
    files = [audio_dir / "jfk.flac", audio_dir / "hotwords.mp3"]
    result = run(
        "transcribe",
        *map(str, files),
        "--engine",
        "openai-whisper",
        "--format",
        "vtt",
        "--output-dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    jfk = (tmp_path / "jfk.vtt").read_text()
    assert jfk.startswith("WEBVTT\n")
    assert_jfk(" ".join(c[2] for c in parse_vtt_strict(jfk)))
    hotwords = parse_vtt_strict((tmp_path / "hotwords.vtt").read_text())
    # tiny models hear "comfy eye" for ComfyUI: 4 of 11 words off.
    assert_transcript(" ".join(c[2] for c in hotwords), HOTWORDS_REFERENCE, 0.5)


def test_transcribe_shows_progress_on_long_files(audio_dir: Path) -> None:
    result = run("transcribe", str(audio_dir / "multilingual.mp3"), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert "multilingual.mp3" in result.stderr
    assert "100%" in result.stderr
    assert_begins_like(json.loads(result.stdout)["text"], MULTILINGUAL_START, 0.3)


def test_bad_file_fails_with_its_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    result = run("transcribe", str(bad))
    assert result.returncode == 1
    assert "bad.wav: the file is not a recognised audio or video format" in result.stderr


def test_invalid_configuration_exits_2_naming_the_variable() -> None:
    result = run("config", "show", WHISPER_INFERENCE_WORKERS="0")
    assert result.returncode == 2
    assert "WHISPER_INFERENCE_WORKERS='0'" in result.stderr


def test_serve_with_a_missing_model_fails_before_starting() -> None:
    result = run("serve", "--env", "development", "--model", "medium", "--port", "1")
    assert result.returncode == 2
    assert "medium" in result.stderr
    assert "looked for" in result.stderr


def test_production_refuses_to_serve_without_api_keys(tmp_path: Path) -> None:
    result = run("serve", "--env", "production", "--port", "1")
    assert result.returncode == 2
    assert "WHISPER_AUTH_REQUIRED=true but no API key" in result.stderr
    missing = tmp_path / "absent-keys"
    result = run("serve", "--port", "1", WHISPER_API_KEYS_FILE=str(missing))
    assert result.returncode == 2
    assert f"cannot read {missing}" in result.stderr


def test_config_show_and_models_list() -> None:
    shown = run("config", "show", "--env", "staging")
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["cpu_limit"] == 1
    as_env = run("config", "show", "--format", "env")
    assert "WHISPER_ENGINE=faster-whisper" in as_env.stdout.splitlines()
    models = run("models", "list", "--json")
    names = {m["name"]: m for m in json.loads(models.stdout)}
    assert names["tiny.en"]["available"]
    assert names["base"]["available"]


def test_models_prepare_for_both_engines() -> None:
    result = run("models", "prepare", "--all-engines")
    assert result.returncode == 0, result.stderr
    assert "faster-whisper: tiny.en (ctranslate2)" in result.stdout
    assert "openai-whisper: tiny.en (openai-whisper)" in result.stdout
    (graph,) = [line for line in result.stdout.splitlines() if line.startswith("speaker encoder:")]
    assert Path(graph.split(": ", 1)[1]).is_file()


def test_served_workers_keep_numpys_blas_to_one_thread(default_server: LiveServer) -> None:
    # Its spinning pool took a core from inference (docs/benchmarks.md, jobs across
    # instances); `whisper-service` sets it for every process it starts.
    assert default_server.process is not None
    workers = psutil.Process(default_server.process.pid).children()
    assert workers
    for worker in workers:
        assert worker.environ().get("OPENBLAS_NUM_THREADS") == "1"
