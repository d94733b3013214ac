"""Speaker diarization: how right, and what it costs (docs/benchmarks.md, "Speaker
diarization").

- Diarization error rate (missed + false alarm + confusion over the reference speech,
  best one-to-one mapping, no collar, overlap scored: pyannote.metrics' definition,
  ``tests/support/speakers.py``) on the AMI meeting excerpt with its RTTM and on
  concatenations of different shared voices, with the number of speakers found.
- The ten AMI excerpts (``diarization/ami``): per excerpt and pooled over those with
  10 s of reference speech or more, the DER with overlap scored and not scored, each
  part, and how often the speaker count is within one; pooled apart for the excerpts
  the settings were chosen on (trn00-trn04) and the others (trn05-trn09).
- Known speakers: the three-voice concatenation named from reference clips.
- Channel mode on ``stereo_diarization.wav``: the WER of each channel's text.
- Cost on this CPU, the production engine (faster-whisper float32, one thread, as each
  of production's inference workers): diarization alone, and transcribe + diarize
  against the plain transcription, interleaved, median of 3.
- Memory: RSS the encoder and clustering libraries add at startup, and after
  diarizing 30 minutes.

    python benchmarks/diarization.py [--output .benchmarks/diarization.json]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as `whisper-service` sets it

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.report import write_report  # noqa: E402
from tests.support import AUDIO, LONG_AUDIO, MODEL_CACHE, word_error_rate  # noqa: E402
from tests.support.speakers import (  # noqa: E402
    Labelled,
    ami_excerpts,
    bush,
    confusion_rate,
    diarization_error_rate,
    error_seconds,
    load,
    meeting,
    three_speakers,
    two_speakers,
)
from whisper_service.audio import SAMPLE_RATE, decode_audio  # noqa: E402
from whisper_service.diarization import DiarizeOptions, diarize, label_turns  # noqa: E402
from whisper_service.diarization.speakers import (  # noqa: E402
    KnownSpeaker,
    embed_speech,
    voice_embedding,
    warm_up,
)

ROUNDS = 3
LEFT = "He began a confused complaint against the wizard, who had vanished behind the curtain on the left."  # noqa: E501
RIGHT = "The horizon seems extremely distant."


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def turns_of(found: list[Any]) -> list[tuple[float, float, str]]:
    return [(t.start, t.end, t.speaker) for t in found]


def scores(cases: list[Labelled]) -> list[dict[str, Any]]:
    """DER, its parts and the speakers found, per recording."""
    rows = []
    for case in cases:
        started = time.perf_counter()
        found = turns_of(diarize(case.samples, DiarizeOptions()))
        seconds = time.perf_counter() - started
        rows.append({
            "recording": case.name,
            "seconds": round(case.seconds, 1),
            "speakers_true": case.speakers,
            "speakers_found": len({s for *_, s in found}),
            "der": round(diarization_error_rate(case.reference, found), 4),
            "der_collar_0_25": round(diarization_error_rate(case.reference, found, collar=0.25), 4),
            "confusion": round(confusion_rate(case.reference, found), 4),
            "diarization_rtf": round(seconds / case.seconds, 4),
        })  # fmt: skip
    return rows


TUNED_ON = {"trn00", "trn01", "trn02", "trn03", "trn04"}
MIN_SPEECH_SECONDS = 10.0


def meetings(excerpts: list[Labelled]) -> dict[str, Any]:
    """Each AMI excerpt scored both ways, and the pools (tuned on, not, all)."""
    rows = []
    pools = {name: {"full": np.zeros(4), "skip": np.zeros(4), "within_one": 0, "count": 0}
             for name in ("tuned_on", "held_out", "all")}  # fmt: skip
    for case in excerpts:
        found = turns_of(diarize(case.samples, DiarizeOptions()))
        full = np.array(error_seconds(case.reference, found))
        skip = np.array(error_seconds(case.reference, found, skip_overlap=True))
        speakers = len({s for *_, s in found})
        rows.append({
            "recording": case.name,
            "speech_s": round(case.speech_seconds, 1),
            "speakers_true": case.speakers,
            "speakers_found": speakers,
            "der": round(full[:3].sum() / full[3], 4),
            "der_skip_overlap": round(skip[:3].sum() / skip[3], 4),
        })  # fmt: skip
        if case.speech_seconds < MIN_SPEECH_SECONDS:
            continue
        for name in ("tuned_on" if case.name in TUNED_ON else "held_out", "all"):
            pools[name]["full"] += full
            pools[name]["skip"] += skip
            pools[name]["within_one"] += abs(speakers - case.speakers) <= 1
            pools[name]["count"] += 1
    pooled = {}
    for name, pool in pools.items():
        full, skip = pool["full"], pool["skip"]
        pooled[name] = {
            "excerpts": pool["count"],
            "der": round(full[:3].sum() / full[3], 4),
            "missed": round(full[0] / full[3], 4),
            "false_alarm": round(full[1] / full[3], 4),
            "confusion": round(full[2] / full[3], 4),
            "der_skip_overlap": round(skip[:3].sum() / skip[3], 4),
            "skip_missed": round(skip[0] / skip[3], 4),
            "skip_false_alarm": round(skip[1] / skip[3], 4),
            "skip_confusion": round(skip[2] / skip[3], 4),
            "count_within_one": f"{pool['within_one']}/{pool['count']}",
        }
    return {"excerpts": rows, "pooled": pooled}


def known_speakers(case: Labelled) -> dict[str, Any]:
    """The three-voice concatenation, two of its voices named from other clips."""
    reader = voice_embedding(load("en/ljspeech_LJ001-0004.wav"))
    president = voice_embedding(bush(100, 8))
    if reader is None or president is None:
        raise RuntimeError("a reference clip has no speech")
    known = [KnownSpeaker("reader", reader), KnownSpeaker("president", president)]
    found = turns_of(label_turns(embed_speech(case.samples), DiarizeOptions(), known))
    names = {"lj": "reader", "bush": "president"}
    reference = [(a, b, names.get(s, s)) for a, b, s in case.reference]
    named = sorted({s for *_, s in found})
    return {"names_found": named, "der": round(diarization_error_rate(reference, found), 4)}


def costs(engine: Any, cases: list[tuple[str, np.ndarray]]) -> list[dict[str, Any]]:
    """Plain transcription vs transcription with words and speakers, per recording;
    and with words alone, the part of the added cost that attribution's word
    timestamps take."""
    from whisper_service.audio import DecodedAudio
    from whisper_service.diarization.transcripts import with_speakers
    from whisper_service.engines.base import CancelToken, TranscribeOptions

    plain = TranscribeOptions(language="en")
    aligned = TranscribeOptions(language="en", word_timestamps=True)
    rows = []
    for name, samples in cases:
        audio = DecodedAudio(samples, "wav", "pcm_s16le", 1, SAMPLE_RATE)

        def diarized(samples: np.ndarray = samples, audio: DecodedAudio = audio) -> None:
            result = engine.transcribe(samples, aligned)
            with_speakers(result, audio, DiarizeOptions(), CancelToken(), keep_words=False)

        # Interleaved: the machine's drift hits both sides alike.
        plain_s, words_s, diarized_s, alone_s = [], [], [], []
        for _ in range(ROUNDS):
            plain_s.append(_timed(lambda samples=samples: engine.transcribe(samples, plain)))
            words_s.append(_timed(lambda samples=samples: engine.transcribe(samples, aligned)))
            diarized_s.append(_timed(diarized))
            alone_s.append(_timed(lambda samples=samples: diarize(samples, DiarizeOptions())))
        seconds = len(samples) / SAMPLE_RATE
        plain_m, diarized_m = statistics.median(plain_s), statistics.median(diarized_s)
        rows.append({
            "recording": name,
            "audio_s": round(seconds, 1),
            "transcribe_s": round(plain_m, 3),
            "transcribe_words_s": round(statistics.median(words_s), 3),
            "transcribe_diarize_s": round(diarized_m, 3),
            "diarize_alone_s": round(statistics.median(alone_s), 3),
            "added": round(diarized_m / plain_m - 1, 3),
            "diarization_rtf": round(statistics.median(alone_s) / seconds, 4),
        })  # fmt: skip
    return rows


def peak_rss_mib(work: Callable[[], Any]) -> float:
    """The highest RSS while ``work`` runs (sampled every 10 ms)."""
    import threading

    peak, done = [rss_mib()], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak.append(rss_mib())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        work()
    finally:
        done.set()
        sampler.join()
    return max(peak)


def _timed(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def channels(engine: Any) -> dict[str, Any]:
    """Each channel of the stereo call transcribed on its own, and its WER."""
    from whisper_service.diarization.transcripts import transcribe_channels
    from whisper_service.engines.base import CancelToken, TranscribeOptions

    audio = decode_audio(AUDIO / "stereo_diarization.wav", max_seconds=60, stereo=True)
    result = transcribe_channels(engine, TranscribeOptions(language="en"), audio, CancelToken())
    said: dict[str, str] = {}
    for segment in result.segments:
        said[segment.speaker or "?"] = f"{said.get(segment.speaker or '?', '')}{segment.text}"
    return {
        "speakers": sorted(said),
        "wer_left": round(word_error_rate(LEFT, said.get("left", "")), 3),
        "wer_right": round(word_error_rate(RIGHT, said.get("right", "")), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=REPO / ".benchmarks" / "diarization.json")
    args = parser.parse_args()
    # The encoder's graph is exported (with torch) in another process, so this one
    # measures what a worker loads, as from a built image's cache.
    subprocess.run(
        [sys.executable, "-m", "whisper_service.cli", "models", "prepare"],
        env={**os.environ, "WHISPER_MODEL_CACHE_DIR": str(MODEL_CACHE)},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    from whisper_service.config import load_settings
    from whisper_service.serving.startup import load_model

    settings = load_settings(app_env="production", cpu_threads=1, inference_workers=1,
                             model_cache_dir=str(MODEL_CACHE), diarization=False)  # fmt: skip
    engine = load_model(settings).engine
    before = rss_mib()
    warm_up(MODEL_CACHE, threads=1)  # one inference thread, as each production worker
    startup_mib = rss_mib() - before
    cases = [meeting(), two_speakers(), three_speakers()]
    report: dict[str, Any] = {
        "der": scores(cases),
        "ami": meetings(ami_excerpts()),
        "known_speakers": known_speakers(cases[2]),
        "channels": channels(engine),
        "costs": costs(
            engine,
            [
                ("meeting", cases[0].samples),
                ("three_speakers", cases[2].samples),
                ("radio_127s", load(LONG_AUDIO)),
            ],
        ),
    }
    thirty_minutes = np.tile(cases[2].samples, 24)
    settled = rss_mib()
    peak = peak_rss_mib(lambda: diarize(thirty_minutes, DiarizeOptions()))
    report["memory_mib"] = {
        "startup_encoder_and_clustering": round(startup_mib),
        "peak_diarizing_30_minutes": round(peak - settled),
    }
    write_report(args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
