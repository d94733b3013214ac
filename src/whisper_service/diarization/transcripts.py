"""A transcript with its speakers: the step the transcription pipeline runs after the
engine, on the same inference worker, under the same deadline, traced and measured.

By voice (``diarize=true``): the engine transcribes the recording, ``speakers`` finds
the turns, ``attribution`` puts them on the words. By channel (``diarize=channel``, a
call with one speaker per channel): each channel is transcribed on its own, silence
skipped, and the segments of both interleaved by time; each is its channel's. Two
voices talking over each other stay intelligible that way, where a transcript of the
mix would garble both.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import structlog

from whisper_service.audio import SAMPLE_RATE, DecodedAudio
from whisper_service.diarization.attribution import (
    attribute,
    relabel,
    speakers_in,
    without_unspoken,
)
from whisper_service.diarization.speakers import DiarizeOptions, Turn, diarize, letters
from whisper_service.engines.base import CancelToken, Engine, TranscribeOptions, Transcription
from whisper_service.errors import InvalidParameter
from whisper_service.long_audio import transcribe_audio
from whisper_service.observability.telemetry import telemetry

log = structlog.get_logger(__name__)


CHANNEL_NAMES = ("left", "right")
# Channels this alike are one signal twice (a mono recording saved as stereo).
SAME_SIGNAL_CORRELATION = 0.98


ADVICE = "use diarize=true to tell voices apart"


def not_two_channels(channels: int) -> InvalidParameter:
    """The 400 for ``diarize=channel`` on audio of ``channels`` channels."""
    return InvalidParameter(
        "diarize=channel labels a stereo recording with one speaker per channel; this "
        f"audio has {channels} channel(s): {ADVICE}",
        param="diarize",
    )


def check_channels(audio: DecodedAudio, options: DiarizeOptions) -> None:
    """400 for ``diarize=channel`` on audio that is not two different channels."""
    if options.mode != "channel":
        return
    if audio.source_channels != 2 or audio.channels is None:
        raise not_two_channels(audio.source_channels)
    if correlation(*audio.channels) >= SAME_SIGNAL_CORRELATION:
        raise InvalidParameter(
            "diarize=channel needs one speaker per channel, but both channels of this "
            f"recording carry the same audio: {ADVICE}",
            param="diarize",
        )


def correlation(left: np.ndarray, right: np.ndarray) -> float:
    """Pearson's correlation of two equal-length signals (0 when one is flat), from
    sums taken a minute at a time: no float64 copy of a long recording."""
    step = 60 * SAMPLE_RATE
    sums = np.zeros(5)
    for start in range(0, len(left), step):
        a, b = left[start : start + step], right[start : start + step]
        sums += (a.sum(dtype=np.float64), b.sum(dtype=np.float64),
                 np.dot(a, a), np.dot(b, b), np.dot(a, b))  # fmt: skip
    count = max(len(left), 1)
    mean_left, mean_right = sums[0] / count, sums[1] / count
    var_left = sums[2] / count - mean_left**2
    var_right = sums[3] / count - mean_right**2
    if var_left <= 0 or var_right <= 0:
        return 0.0
    return float((sums[4] / count - mean_left * mean_right) / np.sqrt(var_left * var_right))


def transcribe_channels(
    engine: Engine,
    options: TranscribeOptions,
    audio: DecodedAudio,
    token: CancelToken,
    long_from: float | None = None,
) -> Transcription:
    """Each channel transcribed on its own (the second in the first's language; a
    long one in regions at once from ``long_from`` seconds), the segments interleaved
    by start time and labelled with their channel (the audio passed
    ``check_channels`` when it was admitted)."""
    if audio.channels is None:
        raise not_two_channels(audio.source_channels)
    channels = audio.channels
    with telemetry.diarization("channel", audio.duration) as span:
        quiet = replace(options, vad_filter=True)  # each channel is silent half the time
        parts: list[tuple[str, Transcription]] = []
        for name, samples in zip(CHANNEL_NAMES, channels, strict=True):
            part = transcribe_audio(engine, samples, quiet, token, long_from=long_from)
            parts.append((name, part))
            quiet = replace(quiet, language=part.language)
        segments = sorted(
            (
                replace(
                    segment,
                    speaker=name,
                    words=[replace(w, speaker=name) for w in segment.words]
                    if segment.words
                    else None,
                )
                for name, part in parts
                for segment in part.segments
            ),
            key=lambda s: (s.start, s.end),
        )
        segments = [replace(s, id=number) for number, s in enumerate(segments)]
        first = parts[0][1]
        result = Transcription(
            text="".join(s.text for s in segments).strip(),
            language=first.language,
            language_probability=first.language_probability,
            duration=audio.duration,
            segments=segments,
        )
        speakers = speakers_in(result)
        telemetry.speakers_found(span, "channel", len(speakers))
    log.info("diarized", mode="channel", speakers=len(speakers), segments=len(segments))
    return result


def with_speakers(
    result: Transcription,
    audio: DecodedAudio,
    options: DiarizeOptions,
    token: CancelToken,
    *,
    keep_words: bool,
) -> Transcription:
    """``result`` with a speaker by voice on every segment (and word), split at speaker
    changes, less the text nobody spoke (``without_unspoken``); the words dropped
    again unless ``keep_words`` (diarization asks the engine for them to find where
    speakers change). Speech VAD did not hear is still someone's: with no turn at
    all, it is speaker A's."""
    token.check()
    with telemetry.diarization(options.mode, audio.duration) as span:
        turns = diarize(audio.samples, options, token.check)
        spoken = without_unspoken(result, turns)
        dropped = len(result.segments) - len(spoken.segments)
        if not turns:
            turns = [Turn(0.0, audio.duration, letters(1)[0])]
        known = {voice.name for voice in options.known}
        labelled = relabel(attribute(spoken, turns), letters(len(turns) + len(known)), known)
        speakers = speakers_in(labelled)
        telemetry.speakers_found(span, options.mode, len(speakers))
    log.info(
        "diarized",
        mode=options.mode,
        speakers=len(speakers),
        turns=len(turns),
        unspoken_segments_dropped=dropped,
    )
    if keep_words:
        return labelled
    return replace(labelled, segments=[replace(s, words=None) for s in labelled.segments])
