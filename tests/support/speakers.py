"""Speaker-labelled audio for the diarization tests and benchmark, and its score.

Concatenations of shared recordings of different people (LJSpeech's reader, President
Kennedy, President Bush), with reference turns where each clip's speech is (Silero
VAD on the clip, no padding); the real meeting excerpt with its RTTM; the diarization
error rate as pyannote.metrics defines it (missed speech + false alarm + confusion
over the reference speech, speakers mapped one-to-one for the best match, no collar,
overlapping reference speech counted for each speaker).
"""

from __future__ import annotations

import base64
import io
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.support import AUDIO, LONG_AUDIO
from whisper_service.audio import SAMPLE_RATE, decode_audio

Turns = list[tuple[float, float, str]]
LJ = "en/ljspeech_LJ001-{}.wav"
GAP_SECONDS = 0.5


@dataclass(frozen=True)
class Labelled:
    """A recording and who speaks when in it."""

    name: str
    samples: np.ndarray
    reference: Turns

    @property
    def speakers(self) -> int:
        return len({s for *_, s in self.reference})

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def speech_seconds(self) -> float:
        """Reference speech, overlapping turns counted once."""
        step = 0.01
        spoken = np.zeros(int(np.ceil(self.seconds / step)) + 1, dtype=bool)
        for start, stop, _ in self.reference:
            spoken[round(start / step) : round(stop / step)] = True
        return float(spoken.sum() * step)


def load(path: Path | str) -> np.ndarray:
    return decode_audio(AUDIO / path, max_seconds=3600).samples


def bush(start: float, seconds: float) -> np.ndarray:
    """A piece of the 127 s radio address."""
    audio = load(LONG_AUDIO)
    return audio[int(start * SAMPLE_RATE) : int((start + seconds) * SAMPLE_RATE)]


def speech_of(samples: np.ndarray) -> list[tuple[float, float]]:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(min_silence_duration_ms=300, speech_pad_ms=0)
    return [
        (s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE)
        for s in get_speech_timestamps(samples, options)
    ]


def concatenation(name: str, clips: list[tuple[np.ndarray, str]]) -> Labelled:
    """``clips`` one after another, half a second apart."""
    pieces, reference, at = [], [], 0.0
    gap = np.zeros(int(GAP_SECONDS * SAMPLE_RATE), dtype=np.float32)
    for samples, speaker in clips:
        reference += [(at + a, at + b, speaker) for a, b in speech_of(samples)]
        pieces += [samples, gap]
        at += (len(samples) + len(gap)) / SAMPLE_RATE
    return Labelled(name, np.concatenate(pieces), reference)


def two_speakers() -> Labelled:
    """LJSpeech's reader and President Bush taking turns, 60 s."""
    return concatenation(
        "two_speakers",
        [(load(LJ.format("0001")), "lj"), (bush(0, 15), "bush"),
         (load(LJ.format("0003")), "lj"), (bush(20, 15), "bush"),
         (load(LJ.format("0005")), "lj")],
    )  # fmt: skip


def three_speakers() -> Labelled:
    """LJSpeech's reader, President Kennedy and President Bush, 74 s."""
    jfk = load("jfk.flac")
    return concatenation(
        "three_speakers",
        [(load(LJ.format("0001")), "lj"), (jfk, "jfk"), (bush(0, 15), "bush"),
         (load(LJ.format("0003")), "lj"), (bush(20, 15), "bush"), (jfk, "jfk")],
    )  # fmt: skip


def rttm(path: Path) -> dict[str, Turns]:
    """Each recording's reference turns in an RTTM file (UTF-8: AMI writes one
    speaker ``MÉO069``)."""
    turns: dict[str, Turns] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        start, duration = float(fields[3]), float(fields[4])
        turns.setdefault(fields[1], []).append((start, start + duration, fields[7]))
    return turns


def meeting() -> Labelled:
    """The 30 s telephone call (pyannote's sample) and its reference turns."""
    (reference,) = rttm(AUDIO / "diarization" / "sample.rttm").values()
    return Labelled("meeting", load("diarization/sample.wav"), reference)


def ami_excerpts() -> list[Labelled]:
    """The ten 30 s AMI excerpts (``diarization/ami/trn00`` .. ``trn09``) and their
    reference turns."""
    turns = rttm(AUDIO / "diarization" / "ami" / "train.rttm")
    return [
        Labelled(name, load(f"diarization/ami/{name}.wav"), turns[name]) for name in sorted(turns)
    ]


def diarization_error_rate(
    reference: Turns,
    hypothesis: Turns,
    step: float = 0.01,
    skip_overlap: bool = False,
    collar: float = 0.0,
) -> float:
    """(missed + false alarm + confusion) / reference speech, on 10 ms frames;
    ``skip_overlap``: frames where the reference has two speakers or more are not
    scored (pyannote.metrics' ``skip_overlap``); ``collar``: nor are frames within this
    many seconds of a reference turn's start or end (NIST md-eval's collar, on each
    side of a boundary)."""
    return sum(errors(reference, hypothesis, step, skip_overlap, collar))


def confusion_rate(reference: Turns, hypothesis: Turns, step: float = 0.01) -> float:
    """Speaker confusion alone / reference speech: for a transcript's utterances,
    which run from a first word to a last across pauses the reference leaves out."""
    return errors(reference, hypothesis, step)[2]


def errors(
    reference: Turns,
    hypothesis: Turns,
    step: float = 0.01,
    skip_overlap: bool = False,
    collar: float = 0.0,
) -> tuple[float, float, float]:
    """Missed speech, false alarm and confusion, each over the reference speech."""
    missed, false_alarm, confusion, total = error_seconds(
        reference, hypothesis, step, skip_overlap, collar
    )
    if total == 0:
        return (0.0, 0.0 if false_alarm == 0 else 1.0, 0.0)
    return (missed / total, false_alarm / total, confusion / total)


def error_seconds(
    reference: Turns,
    hypothesis: Turns,
    step: float = 0.01,
    skip_overlap: bool = False,
    collar: float = 0.0,
) -> tuple[float, float, float, float]:
    """Missed speech, false alarm, confusion and reference speech, in seconds (to pool
    recordings: sum each, then divide)."""
    from scipy.optimize import linear_sum_assignment

    end = max(e for _, e, _ in reference + hypothesis) if reference + hypothesis else 0.0
    frames = int(np.ceil(end / step)) + 1
    ref_names = sorted({s for *_, s in reference})
    hyp_names = sorted({s for *_, s in hypothesis})
    ref = np.zeros((frames, len(ref_names)), dtype=bool)
    hyp = np.zeros((frames, max(1, len(hyp_names))), dtype=bool)
    for start, stop, speaker in reference:
        ref[round(start / step) : round(stop / step), ref_names.index(speaker)] = True
    for start, stop, speaker in hypothesis:
        hyp[round(start / step) : round(stop / step), hyp_names.index(speaker)] = True
    scored = np.ones(frames, dtype=bool)
    if skip_overlap:
        scored &= ref.sum(axis=1) <= 1
    for start, stop, _ in reference if collar else []:
        for boundary in (start, stop):
            scored[
                max(0, round((boundary - collar) / step)) : round((boundary + collar) / step)
            ] = False
    ref, hyp = ref[scored], hyp[scored]
    ref_count, hyp_count = ref.sum(axis=1), hyp.sum(axis=1)
    total = ref_count.sum()
    shared = ref.T.astype(np.int64) @ hyp.astype(np.int64)
    rows, cols = linear_sum_assignment(-shared)
    correct = shared[rows, cols].sum()
    missed = np.maximum(ref_count - hyp_count, 0).sum()
    false_alarm = np.maximum(hyp_count - ref_count, 0).sum()
    confusion = np.minimum(ref_count, hyp_count).sum() - correct
    return (float(missed * step), float(false_alarm * step), float(confusion * step),
            float(total * step))  # fmt: skip


def wav_bytes(samples: np.ndarray, channels: int = 1) -> bytes:
    """16-bit PCM WAV of float samples ((n,) mono or (2, n) stereo)."""
    pcm = np.clip(samples, -1, 1)
    if channels == 2:
        pcm = pcm.T.reshape(-1)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes((pcm * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def data_url(samples: np.ndarray) -> str:
    """A WAV data URL, as OpenAI's known_speaker_references[] take them."""
    return "data:audio/wav;base64," + base64.b64encode(wav_bytes(samples)).decode()


def conversations() -> np.ndarray:
    """Spontaneous speech, 330 s: the telephone call, then the ten AMI excerpts (those
    that chose nothing in issue 25's live work first: trn05-trn09, then trn00-trn04),
    half a second apart."""
    excerpts = ami_excerpts()
    clips = [meeting(), *excerpts[5:], *excerpts[:5]]
    gap = np.zeros(int(GAP_SECONDS * SAMPLE_RATE), dtype=np.float32)
    return np.concatenate([x for clip in clips for x in (clip.samples, gap)])
