"""Strict parsers for the subtitle formats, shared by the tests that check them."""

from __future__ import annotations

import re

SRT_TIME = r"(\d{2}):([0-5]\d):([0-5]\d),(\d{3})"
VTT_TIME = r"(\d{2}):([0-5]\d):([0-5]\d)\.(\d{3})"


def _seconds(match: tuple[str, ...]) -> float:
    h, m, s, ms = (int(x) for x in match)
    return h * 3600 + m * 60 + s + ms / 1000


def parse_srt_strict(text: str) -> list[tuple[float, float, str]]:
    """SubRip: blocks of index (1, 2, ...), 'start --> end', one or more text lines,
    separated by exactly one blank line."""
    assert text.endswith("\n")
    assert not text.startswith("\n")
    cues = []
    for expected_index, block in enumerate(text.rstrip("\n").split("\n\n"), start=1):
        lines = block.split("\n")
        assert lines[0] == str(expected_index), block
        timing = re.fullmatch(f"{SRT_TIME} --> {SRT_TIME}", lines[1])
        assert timing, lines[1]
        start, end = _seconds(timing.groups()[:4]), _seconds(timing.groups()[4:])
        assert 0 <= start <= end
        assert len(lines) >= 3, block
        assert all(line.strip() for line in lines[2:]), block
        cues.append((start, end, " ".join(lines[2:])))
    return cues


def parse_vtt_strict(text: str) -> list[tuple[float, float, str]]:
    """WebVTT: the signature line, a blank line, then cues of 'start --> end' and
    text without '-->' or raw '<' / '&'."""
    blocks = text.rstrip("\n").split("\n\n")
    assert blocks[0] == "WEBVTT"
    cues = []
    for block in blocks[1:]:
        lines = block.split("\n")
        timing = re.fullmatch(f"{VTT_TIME} --> {VTT_TIME}", lines[0])
        assert timing, lines[0]
        start, end = _seconds(timing.groups()[:4]), _seconds(timing.groups()[4:])
        assert 0 <= start <= end
        payload = lines[1:]
        assert payload, block
        assert all(p.strip() and "-->" not in p for p in payload), block
        assert not re.search(r"<|&(?!amp;|lt;|gt;)", " ".join(payload))
        cues.append((start, end, " ".join(payload)))
    return cues
