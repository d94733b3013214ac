"""How a live session's turns are decoded: a final after the previous turn's audio
with that turn's text as the decoder's prefix when both fit one window, else alone
with the words before as the prompt; partials with one beam, no temperature fallback
and a window fitted to the turn so far, only on an idle worker,
never beside a final and no more at once than inference workers (a fake engine
records what it was asked)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from whisper_service.audio import SAMPLE_RATE
from whisper_service.capacity.scheduler import Scheduler
from whisper_service.config import load_settings
from whisper_service.engines import Segment, TranscribeOptions, Transcription
from whisper_service.realtime.session import Context, SessionConfig
from whisper_service.realtime.transcriber import GAP, ScheduledTranscriber
from whisper_service.serving.runtime import Runtime

pytestmark = pytest.mark.anyio
CONFIG = SessionConfig(rate=SAMPLE_RATE, language="en", prompt="Glossary: Gutenberg.")


class Recording:
    """Answers ``answers`` in turn; keeps the seconds and options of every call."""

    model_name = "fake"
    multilingual = False

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[float, TranscribeOptions]] = []

    def transcribe(self, audio: np.ndarray, options: TranscribeOptions, *_: Any) -> Transcription:
        self.calls.append((len(audio) / SAMPLE_RATE, options))
        return Transcription(self.answers.pop(0), "en", 1.0, len(audio) / SAMPLE_RATE)


def seconds(n: float) -> np.ndarray:
    return np.zeros(int(n * SAMPLE_RATE), dtype=np.float32)


def transcriber(engine: Recording) -> ScheduledTranscriber:
    scheduler = Scheduler(workers=1, queue_size=2, queue_timeout=5)
    return ScheduledTranscriber(Runtime(load_settings(), scheduler), engine)  # type: ignore[arg-type]


async def test_the_first_turn_is_decoded_alone_with_the_callers_prompt() -> None:
    engine = Recording("first words")
    text = await transcriber(engine)(seconds(4), CONFIG, final=True, context=Context())
    assert text == "first words"
    [(length, options)] = engine.calls
    assert length == 4
    assert options.prefix is None
    assert options.prompt == "Glossary: Gutenberg."
    assert options.beam_size == load_settings().default_beam_size


async def test_a_final_is_decoded_after_the_previous_turn_with_its_text_forced() -> None:
    engine = Recording("the new turn")
    context = Context(earlier="long ago", text="the turn before", audio=seconds(6))
    text = await transcriber(engine)(seconds(4), CONFIG, final=True, context=context)
    assert text == "the new turn"
    [(length, options)] = engine.calls
    assert length == pytest.approx(10 + len(GAP) / SAMPLE_RATE)
    assert options.prefix == "the turn before"
    assert options.prompt == "Glossary: Gutenberg. long ago"


async def test_nothing_after_the_prefix_decodes_the_turn_alone() -> None:
    engine = Recording("", "the new turn")
    context = Context(text="the turn before", audio=seconds(6))
    text = await transcriber(engine)(seconds(4), CONFIG, final=True, context=context)
    assert text == "the new turn"
    assert [(length, options.prefix) for length, options in engine.calls][1] == (4, None)
    assert engine.calls[1][1].prompt == "Glossary: Gutenberg. the turn before"


@pytest.mark.parametrize(
    "context",
    [
        Context(text="the turn before", audio=seconds(26)),  # both past one window
        Context(text="", audio=seconds(6)),  # the turn before has no text
        Context(text="word " * 130, audio=seconds(6)),  # too long to force
    ],
)
async def test_a_turn_that_does_not_fit_with_the_previous_is_decoded_alone(
    context: Context,
) -> None:
    engine = Recording("the new turn")
    await transcriber(engine)(seconds(4), CONFIG, final=True, context=context)
    [(length, options)] = engine.calls
    assert length == 4
    assert options.prefix is None


async def test_partials_decode_once_greedily_in_a_fitted_window_and_no_prefix() -> None:
    engine = Recording("so far")
    context = Context(text="the turn before", audio=seconds(6))
    assert await transcriber(engine)(seconds(2), CONFIG, final=False, context=context) == "so far"
    [(length, options)] = engine.calls
    assert length == 2
    assert options.beam_size == 1
    assert options.prefix is None
    assert options.temperatures == (0.0,)  # no hotter re-decodes
    assert options.fitted_window


async def test_finals_keep_the_fallback_and_the_30_s_window() -> None:
    engine = Recording("the new turn", "the next turn")
    context = Context(text="the turn before", audio=seconds(6))
    await transcriber(engine)(seconds(4), CONFIG, final=True, context=context)
    await transcriber(engine)(seconds(4), CONFIG, final=True, context=Context())
    for _, options in engine.calls:  # in context, and alone
        assert len(options.temperatures) > 1
        assert not options.fitted_window


class Held(Recording):
    """Says when a call is inside (``entered``) and holds it until ``release`` is set."""

    def __init__(self, *answers: str) -> None:
        super().__init__(*answers)
        self.entered = threading.Event()
        self.release = threading.Event()

    def transcribe(self, audio: np.ndarray, options: TranscribeOptions, *_: Any) -> Transcription:
        self.entered.set()
        self.release.wait(10)
        return super().transcribe(audio, options)


async def test_partials_give_way_to_finals_and_to_each_other() -> None:
    # Eight slots (batching), one inference worker: the slots alone would let every
    # partial run beside a final, each an encoder pass over a whole window.
    engine = Held("final", "partial")
    scheduler = Scheduler(workers=1, queue_size=2, queue_timeout=5, batch_size=8)
    runtime = Runtime(load_settings(inference_workers=1), scheduler)
    live = ScheduledTranscriber(runtime, engine)  # type: ignore[arg-type]
    final = asyncio.ensure_future(live(seconds(4), CONFIG, final=True, context=Context()))
    assert await asyncio.to_thread(engine.entered.wait, 10)
    assert scheduler.idle_worker  # a slot is free ...
    # ... but a final decodes: no partial now.
    assert await live(seconds(2), CONFIG, final=False, context=Context()) is None
    engine.release.set()
    assert await final == "final"
    assert runtime.realtime_finals == 0
    engine.release.clear()
    engine.entered.clear()
    first = asyncio.ensure_future(live(seconds(2), CONFIG, final=False, context=Context()))
    assert await asyncio.to_thread(engine.entered.wait, 10)
    # One partial per inference worker at a time.
    assert await live(seconds(2), CONFIG, final=False, context=Context()) is None
    engine.release.set()
    assert await first == "partial"
    assert runtime.realtime_partials == 0


async def test_finals_take_their_own_beam_size_where_one_is_set() -> None:
    engine = Recording("words")
    scheduler = Scheduler(workers=1, queue_size=2, queue_timeout=5)
    runtime = Runtime(load_settings(realtime_final_beam_size=1, default_beam_size=5), scheduler)
    live = ScheduledTranscriber(runtime, engine)  # type: ignore[arg-type]
    await live(seconds(4), CONFIG, final=True, context=Context())
    assert engine.calls[0][1].beam_size == 1


class Judged(Recording):
    """Answers one segment of text with Whisper's no-speech probability ``no_speech``."""

    def __init__(self, text: str, no_speech: float) -> None:
        super().__init__(text)
        self.no_speech = no_speech

    def transcribe(self, audio: np.ndarray, options: TranscribeOptions, *_: Any) -> Transcription:
        text = super().transcribe(audio, options).text
        segment = Segment(id=0, seek=0, start=0.0, end=1.0, text=text, tokens=[],
                          temperature=0.0, avg_logprob=-0.98, compression_ratio=1.0,
                          no_speech_prob=self.no_speech)  # fmt: skip
        return Transcription(text, "en", 1.0, len(audio) / SAMPLE_RATE, [segment])


@pytest.mark.parametrize("final", [True, False])
async def test_a_turn_whisper_judges_silence_has_no_text(final: bool) -> None:
    # Whisper's "You" over two seconds of silence, as tiny.en scores it; Whisper's own
    # rule (and a log-probability under -1.0) would keep it.
    silence = await transcriber(Judged("You", no_speech=0.94))(
        seconds(2), CONFIG, final=final, context=Context()
    )
    speech = await transcriber(Judged("It's not where I am.", no_speech=0.52))(
        seconds(2), CONFIG, final=final, context=Context()
    )
    assert (silence, speech) == ("", "It's not where I am.")


async def test_a_turn_of_punctuation_alone_has_no_text() -> None:
    text = await transcriber(Recording(" ..."))(seconds(1), CONFIG, final=True, context=Context())
    assert text == ""


async def test_a_final_in_context_loses_what_it_says_again_of_the_turn_before() -> None:
    engine = Recording(", is there much more in it than he said yesterday?")
    context = Context(text="Is there much more in it than yet?", audio=seconds(3))
    text = await transcriber(engine)(seconds(2), CONFIG, final=True, context=context)
    assert text == "he said yesterday?"
    assert len(engine.calls) == 1
