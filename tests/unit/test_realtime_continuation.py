"""A final decoded after the previous turn: what it transcribes again of that turn is
cut, and so is its opening punctuation; words shared by chance are kept."""

from __future__ import annotations

import pytest

from whisper_service.realtime.continuation import continuation


@pytest.mark.parametrize(
    ("before", "text", "kept"),
    [
        # The meeting excerpt that showed it: the previous turn said again from its start.
        ("Is there much more in it than yet?",
         "Is there much more in it than he said yesterday?", "he said yesterday?"),
        # Said again from a later sentence of the previous turn.
        ("We met on Monday. Then we went home.", "Then we went home, and slept.", "and slept."),
        # A short turn said again whole.
        ("Right now.", "Right now, I think so.", "I think so."),
        # Opening punctuation (the rest of the previous sentence), before and after the cut.
        ("We had a problem.", ", so we had a long problem.", "so we had a long problem."),
        ("Is there much more in it than yet?",
         ". Is there much more in it than, he said.", "he said."),
        # Case and punctuation aside.
        ("I think it should be a break for us.",
         "I think it should be a break for us, but maybe later.", "but maybe later."),
    ],
)  # fmt: skip
def test_the_previous_turn_said_again_is_cut(before: str, text: str, kept: str) -> None:
    assert continuation(before, text) == kept


@pytest.mark.parametrize(
    ("before", "text"),
    [
        ("I think that is right.", "I think that we should go there."),  # 3 of 5 words
        ("And I said no.", "No, I did not."),  # one word
        ("Okay.", "Okay, so the few of you."),  # one word, even the whole turn
        ("We met on Monday.", "The weather was fine."),
        ("", "The first turn."),
    ],
)
def test_words_shared_by_chance_are_kept(before: str, text: str) -> None:
    assert continuation(before, text) == text
