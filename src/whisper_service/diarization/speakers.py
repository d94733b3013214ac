"""Who speaks when: speech regions, speaker embeddings over short windows, clusters,
and the speaker turns.

1. Speech regions from Silero VAD (the one faster-whisper ships).
2. Windows of 1.5 s one after another inside each region (a shorter region is one window),
   embedded in batches of windows of one length (``encoder``): every other window of a
   region first; a window between two that are clearly one voice then takes their mean
   instead of its own embedding, and only the others are embedded.
3. Clusters of the windows (``clustering``): the number of speakers estimated, or
   bounded by ``min_speakers`` and ``max_speakers``.
4. Names: clusters that match a known speaker's reference clip get that name; the
   others are A, B, ... in order of first appearance.
5. Turns: each window speaks for the part of its region nearest its centre;
   neighbouring stretches of one speaker join into one turn.

The windows and embeddings (``SpeakerWindows``) are kept apart from the clustering so
a job can embed each unit where it runs and cluster the whole recording once.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from whisper_service.audio import SAMPLE_RATE
from whisper_service.diarization.clustering import cluster
from whisper_service.diarization.encoder import EMBEDDING_SIZE, speaker_encoder

WINDOW_SECONDS = 1.5
# Windows do not overlap: CAM++ costs about 80 ms a window on one thread, and
# overlapping halves (0.75 s) doubled diarization's cost for 0.4 points of DER on the
# tuning excerpts (docs/benchmarks.md, "Speaker diarization").
HOP_SECONDS = 1.5
# A silence this long ends a speech region; regions keep this much padding.
MIN_SILENCE_MS = 300
# Silero's speech probability from which a frame is speech: below its default (0.5),
# which missed a fifth of the speech of far-field meeting excerpts.
VAD_THRESHOLD = 0.35
SPEECH_PAD_MS = 100
# VAD runs over slices of this length (as engines/speech.py does for jobs and long requests);
# regions this close across a border are one.
VAD_SLICE_SECONDS = 120.0
SLICE_JOIN_SECONDS = 2 * SPEECH_PAD_MS / 1000
# The cosine similarity from which two embeddings are taken to be one voice: a cluster
# and a known speaker's clip, or the two neighbours of a window that is then not
# embedded (measured: the same voice 0.9-0.97 between clean clips, different voices
# -0.05-0.2).
SAME_VOICE_SIMILARITY = 0.5
# Turns of one speaker that touch are one turn (a pause between them stays a pause).
JOIN_GAP_SECONDS = 0.0
DEFAULT_MAX_SPEAKERS = 8

Check = Callable[[], None]


@dataclass(frozen=True)
class KnownSpeaker:
    """A name and the embedding of a reference clip of that voice."""

    name: str
    embedding: np.ndarray


@dataclass(frozen=True)
class KnownVoice:
    """A name and a reference clip of that voice (16 kHz mono)."""

    name: str
    audio: np.ndarray


@dataclass(frozen=True)
class DiarizeOptions:
    """What the caller asked for: speakers by voice (``voices``) or one speaker per
    channel of a stereo recording (``channel``); voices to recognise by name."""

    mode: Literal["voices", "channel"] = "voices"
    min_speakers: int = 1
    max_speakers: int = DEFAULT_MAX_SPEAKERS
    known: tuple[KnownVoice, ...] = field(default=())


@dataclass(frozen=True)
class Turn:
    """One speaker speaking from ``start`` to ``end`` (seconds)."""

    start: float
    end: float
    speaker: str


@dataclass
class SpeakerWindows:
    """Speech windows on a recording's timeline, with their region and embedding."""

    windows: list[tuple[float, float]] = field(default_factory=list)
    regions: list[int] = field(default_factory=list)  # each window's region number
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, EMBEDDING_SIZE)))

    def extend(self, other: SpeakerWindows) -> None:
        """Append ``other`` (later on the timeline; its regions numbered after these)."""
        base = (max(self.regions) + 1) if self.regions else 0
        self.windows += other.windows
        self.regions += [base + r for r in other.regions]
        self.embeddings = np.concatenate([self.embeddings, other.embeddings])


def warm_up(cache_dir: Path | None = None, threads: int | None = None) -> None:
    """Load the encoder (from the model cache ``cache_dir``, with ``threads`` intra-op
    threads) and the clustering libraries and run each once, so no request waits for
    them (startup calls this when diarization is on)."""
    speaker_encoder(cache_dir, threads).embed(np.zeros(SAMPLE_RATE, dtype=np.float32), [(0.0, 1.0)])
    rng = np.random.default_rng(0)
    points = np.abs(rng.normal(size=(8, EMBEDDING_SIZE))).astype(np.float32)
    cluster(points / np.linalg.norm(points, axis=1, keepdims=True), 2, 2)


def speech_regions(audio: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) seconds of speech in 16 kHz mono ``audio``, found slice by slice
    (Silero VAD's memory grows with its input: 1.2 GB more for 2 hours at once)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(
        threshold=VAD_THRESHOLD, min_silence_duration_ms=MIN_SILENCE_MS, speech_pad_ms=SPEECH_PAD_MS
    )
    step = int(VAD_SLICE_SECONDS * SAMPLE_RATE)
    regions: list[tuple[float, float]] = []
    for offset in range(0, len(audio), step):
        found: list[dict[str, int]] = get_speech_timestamps(audio[offset : offset + step], options)
        for region in found:
            start = (offset + region["start"]) / SAMPLE_RATE
            end = (offset + region["end"]) / SAMPLE_RATE
            if regions and start - regions[-1][1] <= SLICE_JOIN_SECONDS:
                regions[-1] = (regions[-1][0], end)  # one region cut by a slice border
            else:
                regions.append((start, end))
    return regions


def _windows_of(start: float, end: float) -> list[tuple[float, float]]:
    if end - start <= WINDOW_SECONDS:
        return [(start, end)]
    windows = []
    at = start
    while at + WINDOW_SECONDS < end:
        windows.append((at, at + WINDOW_SECONDS))
        at += HOP_SECONDS
    windows.append((end - WINDOW_SECONDS, end))
    return windows


def embed_speech(
    audio: np.ndarray, offset: float = 0.0, check: Check | None = None
) -> SpeakerWindows:
    """The speech windows of ``audio`` and their embeddings; times moved by ``offset``
    (where ``audio`` starts on the recording's timeline)."""
    found = SpeakerWindows()
    for number, (start, end) in enumerate(speech_regions(audio)):
        for window in _windows_of(start, end):
            found.windows.append(window)
            found.regions.append(number)
    found.embeddings = embed_windows(audio, found.windows, found.regions, check)
    found.windows = [(s + offset, e + offset) for s, e in found.windows]
    return found


def _between(regions: list[int]) -> list[int]:
    """The windows at odd places of their region, other than its last: each has a
    neighbour on either side that is embedded first."""
    inner = []
    place = 0
    for index, region in enumerate(regions):
        place = place + 1 if index and regions[index - 1] == region else 0
        last = index + 1 == len(regions) or regions[index + 1] != region
        if place % 2 == 1 and not last:
            inner.append(index)
    return inner


def embed_windows(
    audio: np.ndarray,
    windows: list[tuple[float, float]],
    regions: list[int],
    check: Check | None = None,
) -> np.ndarray:
    """Embeddings of the ``windows`` of ``audio`` (each in its region number): every
    other window of a region is embedded; a window between two of one voice takes
    their mean, and the rest are embedded too. In one voice's long stretches that
    skips nearly half the encoder's work (on the meeting excerpts, the DER did not
    change: docs/benchmarks.md, "Speaker diarization")."""
    encoder = speaker_encoder()
    inner = _between(regions)
    skipped = set(inner)
    first = [index for index in range(len(windows)) if index not in skipped]
    out = np.zeros((len(windows), EMBEDDING_SIZE), dtype=np.float32)
    if check is not None:
        check()
    out[first] = encoder.embed(audio, [windows[index] for index in first])
    agree = [i for i in inner if float(out[i - 1] @ out[i + 1]) >= SAME_VOICE_SIMILARITY]
    rest = sorted(skipped - set(agree))
    if rest:
        if check is not None:
            check()
        out[rest] = encoder.embed(audio, [windows[index] for index in rest])
    for index in agree:
        mean = out[index - 1] + out[index + 1]
        out[index] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return out


def voice_embedding(audio: np.ndarray) -> np.ndarray | None:
    """One unit-length embedding of a clip of one voice (None: no speech in it)."""
    found = embed_speech(audio)
    if not found.windows:
        return None
    mean = found.embeddings.mean(axis=0)
    result: np.ndarray = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return result


def _names(
    found: SpeakerWindows, labels: np.ndarray, known: Sequence[KnownSpeaker]
) -> dict[int, str]:
    order = list(dict.fromkeys(int(label) for label in labels))  # first appearance
    names: dict[int, str] = {}
    if known:
        from scipy.optimize import linear_sum_assignment

        centroids = np.stack([found.embeddings[labels == c].mean(axis=0) for c in order])
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        similarity = centroids @ np.stack([k.embedding for k in known]).T
        rows, cols = linear_sum_assignment(-similarity)
        for row, col in zip(rows, cols, strict=True):
            if similarity[row, col] >= SAME_VOICE_SIMILARITY:
                names[order[row]] = known[col].name
    fresh = iter(letters(len(order) + len(known)))
    taken = set(names.values())
    for label in order:
        if label not in names:
            name = next(fresh)
            while name in taken:
                name = next(fresh)
            names[label] = name
    return names


def letters(count: int) -> list[str]:
    """A..Z, then AA, AB, ..."""
    upper = string.ascii_uppercase
    out = list(upper)
    for first in upper:
        if len(out) >= count:
            break
        out += [first + second for second in upper]
    return out[: max(count, 1)]


def label_turns(
    found: SpeakerWindows, options: DiarizeOptions, known: Sequence[KnownSpeaker] = ()
) -> list[Turn]:
    """Cluster the windows into speakers and the speakers into turns."""
    if not found.windows:
        return []
    seconds = np.array([end - start for start, end in found.windows])
    labels = cluster(found.embeddings, options.min_speakers, options.max_speakers, seconds)
    names = _names(found, labels, known)
    turns: list[Turn] = []
    count = len(found.windows)
    for index, (start, end) in enumerate(found.windows):
        # A window speaks from midway after its predecessor in the region to midway
        # before its successor; region edges stay where VAD put them.
        centre = (start + end) / 2
        same_before = index > 0 and found.regions[index - 1] == found.regions[index]
        same_after = index + 1 < count and found.regions[index + 1] == found.regions[index]
        lo = (sum(found.windows[index - 1]) / 2 + centre) / 2 if same_before else start
        hi = (centre + sum(found.windows[index + 1]) / 2) / 2 if same_after else end
        _add_turn(turns, Turn(lo, hi, names[int(labels[index])]))
    return turns


def _add_turn(turns: list[Turn], turn: Turn) -> None:
    """Append ``turn``, or lengthen the last turn when the same speaker goes on."""
    last = turns[-1] if turns else None
    if last and last.speaker == turn.speaker and turn.start - last.end <= JOIN_GAP_SECONDS:
        turns[-1] = Turn(last.start, max(last.end, turn.end), turn.speaker)
    else:
        turns.append(turn)


def known_speakers(voices: Sequence[KnownVoice]) -> list[KnownSpeaker]:
    """The voices' embeddings (a clip without speech cannot be recognised: left out)."""
    known = []
    for voice in voices:
        embedding = voice_embedding(voice.audio)
        if embedding is not None:
            known.append(KnownSpeaker(voice.name, embedding))
    return known


def diarize(audio: np.ndarray, options: DiarizeOptions, check: Check | None = None) -> list[Turn]:
    """Speaker turns of 16 kHz mono ``audio`` (empty when nobody speaks)."""
    found = embed_speech(audio, check=check)
    return label_turns(found, options, known_speakers(options.known))
