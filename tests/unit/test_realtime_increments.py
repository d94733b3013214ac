"""The deltas of one live turn: only new words, once two partials agree on them, and
the final's rest; never a word taken back."""

from __future__ import annotations

from whisper_service.realtime.increments import Increments


def test_a_word_is_sent_once_two_partials_agree_on_it() -> None:
    turn = Increments()
    deltas = [
        turn.partial("And so my"),  # nothing to agree with yet
        turn.partial("And so, my fellow"),  # agreed: the newer spelling is sent
        turn.partial("And so, my fellow Americans"),
        turn.partial("And so, my fellow Americans, ask"),
    ]
    assert deltas == ["", "And so, my", " fellow", " Americans,"]
    final = "And so, my fellow Americans, ask not what your country can do."
    deltas.append(turn.final(final))
    assert deltas[-1] == " ask not what your country can do."
    assert "".join(deltas) == final  # what a client shows, delta after delta


def test_a_revised_word_stops_the_deltas_until_the_partials_agree_again() -> None:
    turn = Increments()
    turn.partial("the purpose of")
    assert turn.partial("the purpose of this") == "the purpose of"
    # "purpose" was misheard: the partials now disagree with what was sent.
    assert turn.partial("the corpus of this work") == ""
    assert turn.partial("the corpus of this work is") == ""
    assert turn.sent == ["the", "purpose", "of"]
    # The final changed a word already sent: the last delta still carries the words
    # after it (`completed` has the exact text).
    assert turn.final("The corpus of this work is open.") == " this work is open."


def test_a_final_that_changed_sent_words_sends_what_comes_after_them() -> None:
    turn = Increments()
    turn.partial("And so my")
    assert turn.partial("And so my") == "And so my"
    # "my" became "am I": the words after it still come.
    assert turn.final("And so am I fellow Americans.") == " I fellow Americans."
    dropped = Increments()
    dropped.partial("a b c d")
    dropped.partial("a b c d")
    assert dropped.final("a c d e") == " e"  # "b" was dropped: "e" is what is new
    nothing = Increments()
    nothing.partial("one two")
    nothing.partial("one two")
    assert nothing.final("three four") == ""  # no word in common: nothing to place


def test_agreement_ignores_case_and_punctuation_but_not_words() -> None:
    turn = Increments()
    turn.partial("Hello world.")
    assert turn.partial("hello, world and") == "hello, world"
    assert turn.partial("hello, world, and you") == " and"
    assert turn.partial("hello, world, band you") == ""  # "band" is not "and"...
    assert turn.partial("hello, world, band you too") == ""  # ...and "and" was sent


def test_a_turn_without_partials_sends_its_final_whole() -> None:
    turn = Increments()
    assert turn.final("Thank you for coming.") == "Thank you for coming."
    assert Increments().final("") == ""
