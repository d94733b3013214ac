"""What of a final decoded after the previous turn is the turn's own.

A final in context is decoded over the previous turn's audio and its own, with the
previous turn's text forced as the decoder's prefix; only what follows the prefix is
the turn's. On spontaneous speech the model sometimes loses its place after the
prefix and transcribes the previous turn's audio a second time before the new
words: on a meeting excerpt, "Is there much more in it than yet?" was followed by
"Is there much more in it than he said yesterday?". Without timestamps (the
decoder runs without them in context) the repetition shows only in the words: the
turn's text opens with a run of the previous turn's words, from some word of it
onwards. That run is cut off, and so is punctuation the turn's text opens with (the
rest of the previous turn's sentence: ", so we had ...").

A new turn may also open with a few of the previous turn's words by chance ("I
think that is right." / "I think that we should ..."), so a run counts as a
repetition only when it is at least ``MIN_REPEAT_WORDS`` long and covers at least
``MIN_REPEAT_SHARE`` of the previous turn's words from where it starts, or when it
is the whole previous turn (a short turn said again whole: "Right now." / "Right
now, I think ...").
"""

from __future__ import annotations

from whisper_service.realtime.increments import agreed

MIN_REPEAT_WORDS = 3
MIN_REPEAT_SHARE = 2 / 3
OPENING_PUNCTUATION = " ,.;:!?-\u2026"


def repeated_words(before: str, text: str) -> int:
    """How many of ``text``'s leading words say ``before`` again (0: none)."""
    previous, words = before.split(), text.split()
    longest = 0
    for start in range(len(previous)):
        run = agreed(previous[start:], words)
        rest = len(previous) - start
        whole = start == 0 and run == rest >= 2
        if run > longest and (
            whole or (run >= MIN_REPEAT_WORDS and run >= MIN_REPEAT_SHARE * rest)
        ):
            longest = run
    return longest


def continuation(before: str, text: str) -> str:
    """The turn's own words in ``text``, decoded after the previous turn's ``before``:
    without the opening punctuation and the words that repeat ``before``."""
    text = text.lstrip(OPENING_PUNCTUATION)
    cut = repeated_words(before, text)
    return " ".join(text.split()[cut:]).lstrip(OPENING_PUNCTUATION) if cut else text
