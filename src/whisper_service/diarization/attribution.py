"""Speaker turns onto a transcript: a speaker for every word and segment, and
segments split where the speaker changes; text nobody spoke taken out first.

A word or segment belongs to the speaker whose turns overlap it most (the nearest turn
when none does: a word VAD thought silent). With word timestamps, a segment is cut
between two words of different speakers; each piece keeps the statistics of the
segment it came from, its text is its words, and it has no token ids (Whisper decoded
the tokens as one segment).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from whisper_service.diarization.speakers import Turn
from whisper_service.engines.base import Segment, Transcription, Word

# Whisper's own threshold for a failed decode (``log_prob_threshold``, the point from
# which it retries at a higher temperature).
FAILED_DECODE_LOGPROB = -1.0


def without_unspoken(transcription: Transcription, turns: Sequence[Turn]) -> Transcription:
    """``transcription`` less the segments nobody spoke: no speech turn under them at
    all and a decode Whisper itself counts as failed (average log probability below
    -1). Whisper invents text on silence and noise ("Thank you."); VAD alone would also
    drop quiet speech it missed, and the log probability alone fluent but real words."""
    kept = [
        s
        for s in transcription.segments
        if s.avg_logprob >= FAILED_DECODE_LOGPROB
        or any(min(s.end, t.end) > max(s.start, t.start) for t in turns)
    ]
    if len(kept) == len(transcription.segments):
        return transcription
    text = "".join(s.text for s in kept).strip()
    return replace(transcription, text=text, segments=kept)


def speaker_of(turns: Sequence[Turn], start: float, end: float) -> str | None:
    """The speaker who speaks most between ``start`` and ``end``, or the nearest."""
    if not turns:
        return None
    overlap: dict[str, float] = {}
    for turn in turns:
        shared = min(end, turn.end) - max(start, turn.start)
        if shared > 0:
            overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
    if overlap:
        return max(overlap, key=lambda s: overlap[s])
    middle = (start + end) / 2
    nearest = min(turns, key=lambda t: min(abs(middle - t.start), abs(middle - t.end)))
    return nearest.speaker


def _pieces(segment: Segment, words: list[Word]) -> list[Segment]:
    pieces: list[list[Word]] = []
    for word in words:
        if pieces and pieces[-1][-1].speaker == word.speaker:
            pieces[-1].append(word)
        else:
            pieces.append([word])
    if len(pieces) == 1:
        return [replace(segment, words=words, speaker=words[0].speaker)]
    return [
        replace(
            segment,
            start=part[0].start,
            end=part[-1].end,
            text="".join(w.word for w in part),
            tokens=[],
            words=part,
            speaker=part[0].speaker,
        )
        for part in pieces
    ]


def attribute(transcription: Transcription, turns: Sequence[Turn]) -> Transcription:
    """``transcription`` with speakers, segments split at speaker changes (when it has
    word timestamps) and renumbered."""
    segments: list[Segment] = []
    for segment in transcription.segments:
        if segment.words:
            words = [replace(w, speaker=speaker_of(turns, w.start, w.end)) for w in segment.words]
            segments += _pieces(segment, words)
        else:
            speaker = speaker_of(turns, segment.start, segment.end)
            segments.append(replace(segment, speaker=speaker))
    renumbered = [replace(s, id=number) for number, s in enumerate(segments)]
    return replace(transcription, segments=renumbered)


def relabel(transcription: Transcription, names: Sequence[str], keep: set[str]) -> Transcription:
    """Speakers renamed ``names[0]``, ``names[1]``, ... in order of first appearance in
    the transcript (diarization numbers them by first appearance in the audio, where
    a cough may come before the first word); the names in ``keep`` stay."""
    fresh = iter(n for n in names if n not in keep)
    mapping = {s: s if s in keep else next(fresh) for s in speakers_in(transcription)}

    def renamed(speaker: str | None) -> str | None:
        return mapping.get(speaker, speaker) if speaker is not None else None

    segments = [
        replace(
            s,
            speaker=renamed(s.speaker),
            words=[replace(w, speaker=renamed(w.speaker)) for w in s.words] if s.words else s.words,
        )
        for s in transcription.segments
    ]
    return replace(transcription, segments=segments)


def speakers_in(transcription: Transcription) -> list[str]:
    """The speakers of a transcript, in order of first appearance."""
    return list(dict.fromkeys(s.speaker for s in transcription.segments if s.speaker))
