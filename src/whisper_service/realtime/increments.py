"""The increments of one turn's text, as OpenAI's realtime transcription sends them:
each ``delta`` carries only new text, and a client shows the deltas one after the
other (``"And so"``, ``" my fellow"``...), so nothing sent can be taken back.

A partial re-decodes the whole open turn, and its last words change as audio arrives
(a word cut at the end of the audio, a name heard better a second later). A word is
sent once two consecutive partials agree on it and on everything before it (local
agreement, as in the whisper_streaming work): the words the client sees are the ones
the final keeps, at the cost of one partial interval before the first of them. When
the turn closes, the final's words after those sent follow as a last delta, so the
deltas add up to the ``completed`` transcript whenever the final kept what was sent
(it usually does; where it changed a sent word, the deltas still carry every later
word, and ``completed`` is the text to keep).
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher

_NOT_A_WORD = re.compile(r"[^\w']+")


def _key(word: str) -> str:
    """A word as agreement compares it: case and punctuation aside (a partial that
    ends mid-sentence has no final full stop; the next one may add a comma)."""
    return _NOT_A_WORD.sub("", word.lower())


def agreed(first: list[str], second: list[str]) -> int:
    """How many leading words the two agree on."""
    count = 0
    for a, b in zip(first, second, strict=False):
        if _key(a) != _key(b):
            break
        count += 1
    return count


class Increments:
    """What one turn has sent so far, and what to send next."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.latest = ""  # the latest partial text, whole
        self._previous: list[str] = []

    def partial(self, text: str) -> str:
        """The delta for a new partial text: the words it and the previous partial
        agree on past those sent; "" when there are none."""
        self.latest = text
        words = text.split()
        agreeing = agreed(self._previous, words)
        self._previous = words
        if agreeing <= len(self.sent) or agreed(self.sent, words) < len(self.sent):
            return ""
        return self._send(words[len(self.sent) : agreeing])

    def final(self, text: str) -> str:
        """The last delta: the final's words past those sent. Where the final changed
        words already sent, past the point of the final that the sent words reach
        (aligned word by word), so that a client showing only deltas misses none of
        the final's later words; ``completed`` has the exact text."""
        words = text.split()
        if agreed(self.sent, words) == len(self.sent):
            return self._send(words[len(self.sent) :])
        matcher = SequenceMatcher(None, [_key(w) for w in self.sent], [_key(w) for w in words])
        blocks = [b for b in matcher.get_matching_blocks() if b.size]
        if not blocks:
            return ""
        last = blocks[-1]
        # Sent words after the last match stand for as many of the final's (changed).
        return self._send(words[last.b + last.size + len(self.sent) - (last.a + last.size) :])

    def _send(self, new: list[str]) -> str:
        """``new`` as a delta (a space before it unless it is the turn's first)."""
        if not new:
            return ""
        joined = " ".join(new)
        delta = f" {joined}" if self.sent else joined
        self.sent.extend(new)
        return delta
