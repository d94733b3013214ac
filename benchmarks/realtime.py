"""Live transcription under load (docs/benchmarks.md, "Live transcription"): 1, 4 and
8 concurrent real-time streams of the shared recordings over ``/stream`` against one
live server (production preset, on this machine), measuring

- final latency: from the end of a turn (its ``end`` on the stream: where server VAD
  closed it, 500 ms into the silence; turned into wall time by the stream's pace) to
  its ``final`` event; and from the end of speech (the ``speech_stopped`` event's
  ``end``), which adds the silence server VAD waits for;
- time to first partial: from the start of speech (the turn's ``start`` on the
  stream, plus the 300 ms of prefix padding the turn keeps before it) to the turn's
  first ``partial``; and how many partials a second of speech got (partials give way
  to finals under load, so this falls as streams are added);

p50 and p95 over every turn of every stream, and then the streams one instance holds
before the final latency's p95 passes 2 s; and how far the finals' words are from
``/transcribe``'s on the same audio (WER, normalised). Both ways of decoding a final
run side by side: after the previous turn's audio (``WHISPER_REALTIME_FINAL_CONTEXT``
true, the default) and each turn alone (false).

    python benchmarks/realtime.py [--streams 1 2 4 8] [--seconds 60] [--context true false]
        [--env WHISPER_INFERENCE_WORKERS=2 --env WHISPER_BATCH_MAX_SIZE=1 ...] [--apart]
        [--recording radio conversation]

By default every stream sends the same recording, 0.37 s apart, so the talkers' turns
end together (the worst case); ``--apart`` starts each at another pause of it. The
recordings: ``radio`` (the radio address, read speech) and ``conversation``
(spontaneous: the telephone call, then AMI meeting excerpts, ``conversations()``),
their first ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.report import write_report  # noqa: E402
from tests.support import LONG_AUDIO, LiveServer, word_error_rate  # noqa: E402
from tests.support.speakers import conversations, load, wav_bytes  # noqa: E402

FRAME_SECONDS = 0.1
PREFIX_PADDING = 0.3  # server_vad's default: a turn starts this long before its speech


async def one_stream(url: str, audio: np.ndarray, offset: float) -> dict[str, Any]:
    """Stream ``audio`` at real-time pace; latencies of its turns, and its text."""
    from websockets.asyncio.client import connect

    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    step = int(16_000 * FRAME_SECONDS) * 2
    finals: list[float] = []
    from_speech: list[float] = []
    stops: list[float] = []
    texts: list[str] = []
    await asyncio.sleep(offset)  # streams start apart, as callers do
    async with connect(url, proxy=None, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16_000, "language": "en"}))
        await ws.recv()
        began = time.monotonic()
        first_partial: dict[float, float] = {}
        partials: list[float] = []  # when each came

        async def receive() -> None:
            async for message in ws:
                event = json.loads(message)
                now = time.monotonic() - began
                if event["type"] == "speech_stopped":
                    stops.append(event["end"])
                elif event["type"] == "final" and event["end"] is not None:
                    finals.append(now - event["end"])
                    texts.append(event["text"])
                    ended = [s for s in stops if event["start"] <= s <= event["end"]]
                    if ended:  # closed by server VAD, not cut or flushed
                        from_speech.append(now - ended[-1])
                elif event["type"] == "partial":
                    partials.append(now)
                    if event["start"] not in first_partial:
                        speech = event["start"] + (PREFIX_PADDING if event["start"] else 0.0)
                        first_partial[event["start"]] = now - speech

        receiver = asyncio.ensure_future(receive())
        for index, start in enumerate(range(0, len(pcm), step)):
            await ws.send(pcm[start : start + step])
            # Real time: frame n goes out at n x 100 ms, however long sending took.
            await asyncio.sleep(max(0.0, began + (index + 1) * FRAME_SECONDS - time.monotonic()))
        await ws.send(json.dumps({"type": "stop"}))
        await receiver
    return {"final": finals, "from_speech": from_speech, "partial": list(first_partial.values()),
            "partials": len(partials), "text": " ".join(texts)}  # fmt: skip


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "n": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 3), "p95": round(p95, 3), "n": len(ordered)}


def rotations(audio: np.ndarray, count: int) -> list[np.ndarray]:
    """``count`` versions of ``audio``, the i-th starting at the pause nearest i/count of
    its length and wrapping round: talkers whose turns do not end together."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    spans = get_speech_timestamps(audio, VadOptions(min_silence_duration_ms=300))
    pauses = [(a["end"] + b["start"]) // 2 for a, b in itertools.pairwise(spans)]
    tracks = [audio]
    for i in range(1, count):
        cut = min(pauses, key=lambda p: abs(p - i * len(audio) // count))
        tracks.append(np.concatenate([audio[cut:], audio[:cut]]))
    return tracks


async def load_point(url: str, tracks: list[np.ndarray], streams: int,
                     wholes: list[str]) -> dict[str, Any]:  # fmt: skip
    """``streams`` streams, stream i sending ``tracks[i]`` (``wholes[i]``: its
    ``/transcribe`` text), starting 0.37 s apart."""
    results = await asyncio.gather(
        *(one_stream(url, tracks[i], offset=i * 0.37) for i in range(streams))
    )
    audio = tracks[0]
    finals = [v for r in results for v in r["final"]]
    from_speech = [v for r in results for v in r["from_speech"]]
    partials = [v for r in results for v in r["partial"]]
    return {
        "streams": streams,
        "final": percentiles(finals),
        "final_from_speech_end": percentiles(from_speech),
        "first_partial": percentiles(partials),
        "partials_per_stream_minute": round(
            statistics.mean(r["partials"] for r in results) * 60 / (len(audio) / 16_000), 1
        ),
        "wer_vs_transcribe": round(
            statistics.mean(word_error_rate(wholes[i], r["text"]) for i, r in enumerate(results)),
            4,
        ),
    }


def variant(context: str, streams: list[int], recording: str, audio: np.ndarray,
            env: dict[str, str], apart: bool) -> dict[str, Any]:  # fmt: skip
    """One server, finals decoded with or without the previous turn (and ``env`` over
    the production preset): every load point on ``audio``. ``apart``: each stream
    starts at another pause of the recording."""
    import httpx

    work = Path(f"/tmp/whisper-bench/realtime-{context}")  # noqa: S108
    work.mkdir(parents=True, exist_ok=True)
    server = LiveServer(work, APP_ENV="production", WHISPER_AUTH_REQUIRED="false",
                        WHISPER_RATE_LIMIT_PER_MINUTE="0", WHISPER_METRICS_ACCESS="open",
                        WHISPER_REALTIME_MAX_SESSIONS="64",
                        WHISPER_REALTIME_MAX_SESSIONS_PER_CLIENT="64",
                        WHISPER_REALTIME_FINAL_CONTEXT=context,
                        # /transcribe's words window after window, the reference the
                        # finals were always compared with (regions from 60 s on
                        # would move it: 2.25 % apart on the radio's 60 s, not 1.1 %).
                        WHISPER_LONG_AUDIO_SECONDS="0", **env).start()  # fmt: skip
    try:
        distinct = rotations(audio, max(streams)) if apart else [audio]
        wholes = []
        for track in distinct:
            upload = {"file": ("audio.wav", wav_bytes(track))}
            answer = httpx.post(f"{server.url}/transcribe", files=upload, timeout=300)
            wholes.append(answer.json()["text"])
        if not apart:  # every stream the same recording
            distinct, wholes = distinct * max(streams), wholes * max(streams)
        tracks = distinct
        url = server.url.replace("http://", "ws://") + "/stream"
        points = [asyncio.run(load_point(url, tracks, n, wholes)) for n in streams]
    finally:
        server.stop()
    held = [p["streams"] for p in points if p["final"]["p95"] is not None
            and p["final"]["p95"] <= 2.0]  # fmt: skip
    return {"recording": recording, "final_context": context, "env": env, "apart": apart,
            "points": points,
            "streams_held_p95_final_under_2s": max(held) if held else 0}  # fmt: skip


RECORDINGS = {"radio": lambda: load(LONG_AUDIO), "conversation": conversations}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--context", nargs="+", choices=["true", "false"],
                        default=["true", "false"])  # fmt: skip
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server")
    parser.add_argument("--apart", action="store_true",
                        help="each stream starts at another pause of the recording, so the "
                        "talkers' turns do not end together")  # fmt: skip
    parser.add_argument("--recording", nargs="+", choices=sorted(RECORDINGS),
                        default=sorted(RECORDINGS, reverse=True))  # fmt: skip
    parser.add_argument("--output", type=Path, default=REPO / ".benchmarks" / "realtime.json")
    args = parser.parse_args()
    env = dict(e.split("=", 1) for e in args.env)
    variants = []
    for name in args.recording:
        audio = RECORDINGS[name]()[: int(args.seconds * 16_000)]
        variants += [variant(c, args.streams, name, audio, env, args.apart) for c in args.context]
    report = {"variants": variants}
    write_report(args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
