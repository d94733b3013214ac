"""Writers on hand-made transcriptions, including text that could break a cue."""

from __future__ import annotations

from tests.support.subtitles import parse_srt_strict, parse_vtt_strict
from whisper_service.engines.base import Segment, Transcription
from whisper_service.formats import timestamp, to_srt, to_text, to_tsv, to_vtt


def seg(i: int, start: float, end: float, text: str) -> Segment:
    return Segment(i, 0, start, end, text, [], 0.0, -0.1, 1.2, 0.01)


TRICKY = Transcription(
    text="a <b> & c --> d\n\ne",
    language="en",
    language_probability=1.0,
    duration=4000.0,
    segments=[
        seg(0, 0.0, 1.2345, " a <b> & c"),
        seg(1, 1.2345, 1.2345, "   "),  # empty text: no cue
        seg(2, 2.0, 3.5, " --> d\n\n e"),
        seg(3, 3661.001, 3725.9999, "late"),
    ],
)


def test_timestamp_rounding_and_hours() -> None:
    assert timestamp(0, ",") == "00:00:00,000"
    assert timestamp(1.2345, ".") == "00:00:01.234"  # banker's rounding of .5 ms
    assert timestamp(3725.9999, ",") == "01:02:06,000"
    assert timestamp(-0.2, ",") == "00:00:00,000"


def test_srt_is_strict_and_skips_empty_segments() -> None:
    cues = parse_srt_strict(to_srt(TRICKY))
    assert [c[2] for c in cues] == ["a <b> & c", "-> d e", "late"]
    assert cues[2][0] == 3661.001


def test_vtt_escapes_markup_and_arrows() -> None:
    text = to_vtt(TRICKY)
    cues = parse_vtt_strict(text)
    assert cues[0][2] == "a &lt;b&gt; &amp; c"
    assert "-->" not in cues[1][2]


def test_tsv_uses_integer_milliseconds() -> None:
    lines = to_tsv(TRICKY).splitlines()
    assert lines[0] == "start\tend\ttext"
    assert lines[1] == "0\t1234\ta <b> & c"
    assert lines[-1] == "3661001\t3726000\tlate"


def test_text_ends_with_newline() -> None:
    assert to_text(TRICKY).endswith("\n")


def test_empty_transcription() -> None:
    empty = Transcription("", "en", 1.0, 1.0, [])
    assert to_srt(empty) == ""
    assert to_vtt(empty) == "WEBVTT\n"
    assert parse_vtt_strict(to_vtt(empty)) == []
