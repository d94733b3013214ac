"""Transcript writers: json, verbose_json, text, srt, vtt and tsv.

Subtitle output follows the formats' specs strictly: SRT cues are numbered from 1
with ``HH:MM:SS,mmm`` times; WebVTT starts with the ``WEBVTT`` signature, uses
``HH:MM:SS.mmm`` and escapes ``&``, ``<`` and ``>``; neither lets a cue's text contain a
blank line or the ``-->`` arrow, which would end or corrupt the cue.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Any

from whisper_service.engines.base import Segment, Transcription, Word

_BLANK_LINES = re.compile(r"\s*\n\s*")


class ResponseFormat(StrEnum):
    """Formats every transcription endpoint can answer in."""

    JSON = "json"
    VERBOSE_JSON = "verbose_json"
    TEXT = "text"
    SRT = "srt"
    VTT = "vtt"
    TSV = "tsv"


MEDIA_TYPES: dict[ResponseFormat, str] = {
    ResponseFormat.JSON: "application/json",
    ResponseFormat.VERBOSE_JSON: "application/json",
    ResponseFormat.TEXT: "text/plain; charset=utf-8",
    ResponseFormat.SRT: "application/x-subrip; charset=utf-8",
    ResponseFormat.VTT: "text/vtt; charset=utf-8",
    ResponseFormat.TSV: "text/tab-separated-values; charset=utf-8",
}


def timestamp(seconds: float, separator: str) -> str:
    """``HH:MM:SS<sep>mmm`` for a non-negative time in seconds."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cue_text(text: str) -> str:
    return _BLANK_LINES.sub(" ", text.strip()).replace("-->", "->")


def _cues(transcription: Transcription) -> list[tuple[float, float, str, str | None]]:
    cues = []
    for segment in transcription.segments:
        text = _cue_text(segment.text)
        if text:
            speaker = _cue_text(segment.speaker) if segment.speaker else None
            cues.append((segment.start, max(segment.end, segment.start), text, speaker))
    return cues


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_text(transcription: Transcription) -> str:
    """Plain transcript text, newline-terminated."""
    return transcription.text + "\n"


def to_srt(transcription: Transcription) -> str:
    """SubRip subtitles; a diarized cue starts with its speaker, ``[A] ...``."""
    blocks = [
        f"{i}\n{timestamp(start, ',')} --> {timestamp(end, ',')}\n"
        f"{f'[{speaker}] ' if speaker else ''}{text}\n"
        for i, (start, end, text, speaker) in enumerate(_cues(transcription), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(transcription: Transcription) -> str:
    """WebVTT subtitles; a diarized cue is a voice span, ``<v A>...``."""
    blocks = ["WEBVTT\n"]
    for start, end, text, speaker in _cues(transcription):
        voice = f"<v {_escape(speaker)}>" if speaker else ""
        times = f"{timestamp(start, '.')} --> {timestamp(end, '.')}"
        blocks.append(f"{times}\n{voice}{_escape(text)}\n")
    return "\n".join(blocks)


def to_tsv(transcription: Transcription) -> str:
    """openai-whisper's TSV: ``start``, ``end`` (integer milliseconds) and ``text``;
    a diarized transcript adds a ``speaker`` column last."""
    cues = _cues(transcription)
    diarized = any(speaker for *_, speaker in cues)
    lines = ["start\tend\ttext" + ("\tspeaker" if diarized else "")]
    for start, end, text, speaker in cues:
        line = f"{round(start * 1000)}\t{round(end * 1000)}\t{text.replace(chr(9), ' ')}"
        lines.append(line + (f"\t{(speaker or '').replace(chr(9), ' ')}" if diarized else ""))
    return "\n".join(lines) + "\n"


TEXT_WRITERS = {
    ResponseFormat.TEXT: to_text,
    ResponseFormat.SRT: to_srt,
    ResponseFormat.VTT: to_vtt,
    ResponseFormat.TSV: to_tsv,
}


def word_dict(word: Word) -> dict[str, Any]:
    """A word as JSON."""
    data: dict[str, Any] = {
        "word": word.word,
        "start": round(word.start, 3),
        "end": round(word.end, 3),
        "probability": round(word.probability, 4),
    }
    if word.speaker is not None:
        data["speaker"] = word.speaker
    return data


def segment_dict(segment: Segment, *, with_words: bool) -> dict[str, Any]:
    """A segment as JSON, in openai-whisper's field names."""
    data: dict[str, Any] = {
        "id": segment.id,
        "seek": segment.seek,
        "start": round(segment.start, 3),
        "end": round(segment.end, 3),
        "text": segment.text,
        "tokens": segment.tokens,
        "temperature": segment.temperature,
        "avg_logprob": segment.avg_logprob,
        "compression_ratio": segment.compression_ratio,
        "no_speech_prob": segment.no_speech_prob,
    }
    if with_words:
        data["words"] = [word_dict(w) for w in segment.words or []]
    if segment.speaker is not None:
        data["speaker"] = segment.speaker
    return data


def transcript_file(
    transcription: Transcription, response_format: ResponseFormat
) -> tuple[str, str]:
    """A transcript as a file's content and extension: text formats through their
    writer, both json formats as the full result (text, language, segments)."""
    if response_format in TEXT_WRITERS:
        return TEXT_WRITERS[response_format](transcription), response_format.value
    body = {
        "text": transcription.text,
        "language": transcription.language,
        "duration": transcription.duration,
        "segments": [segment_dict(s, with_words=False) for s in transcription.segments],
    }
    return json.dumps(body), "json"
