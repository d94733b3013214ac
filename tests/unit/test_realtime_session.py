"""A live session apart from its transport, on real speech, with a transcriber that
reports the audio it was given (issue 17, in progress)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from tests.support import LONG_AUDIO
from tests.support.speakers import load
from whisper_service.audio import SAMPLE_RATE
from whisper_service.realtime.session import Context, Session, SessionConfig, SessionLimits

pytestmark = pytest.mark.anyio


class Recorder:
    """Answers with the turn's length; remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, bool]] = []
        self.contexts: list[Context] = []  # the finals'
        self.urgent: list[bool] = []  # the finals'

    async def __call__(
        self,
        audio: np.ndarray,
        config: SessionConfig,
        *,
        final: bool,
        context: Context,
        urgent: bool = True,
    ) -> str:
        self.calls.append((len(audio) / SAMPLE_RATE, final))
        if final:
            self.urgent.append(urgent)
        if final:
            self.contexts.append(context)
        return self.answer(len(audio) / SAMPLE_RATE, final)

    def answer(self, seconds: float, final: bool) -> str:
        """The text for a turn of ``seconds``."""
        return f"{seconds:.2f} s"


async def stream(session: Session, audio: np.ndarray, chunk: int = SAMPLE_RATE // 10) -> None:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    for start in range(0, len(pcm), chunk):
        await session.append(pcm[start : start + chunk].tobytes())
        await asyncio.sleep(0.001)  # queued transcriptions run between frames, as live
    await session.finish()


async def test_server_vad_turns_each_get_their_final_text() -> None:
    sent: list[dict[str, Any]] = []

    async def send(event: dict[str, Any]) -> None:
        sent.append(event)

    recorder = Recorder()
    session = Session(SessionConfig(rate=SAMPLE_RATE), recorder, send)
    await stream(session, load(LONG_AUDIO)[: 60 * SAMPLE_RATE])
    kinds = [e["type"] for e in sent]
    started = kinds.count("input_audio_buffer.speech_started")
    assert started >= 4
    assert kinds.count("input_audio_buffer.committed") == started
    completed = [e for e in sent if e["type"].endswith("transcription.completed")]
    assert len(completed) == started
    # Every committed item is completed, in order, with its own audio.
    committed = [e["item_id"] for e in sent if e["type"] == "input_audio_buffer.committed"]
    assert [e["item_id"] for e in completed] == committed
    assert sum(e["usage"]["seconds"] for e in completed) <= 60.5
    assert any(e["type"].endswith("transcription.delta") for e in sent)  # partials
    assert all(final for _, final in recorder.calls[-1:])
    # Each final is told the turn before it: its audio and final text, and the rest.
    assert recorder.contexts[0].text == ""
    assert not len(recorder.contexts[0].audio)
    for before, context in zip(completed, recorder.contexts[1:], strict=False):
        assert context.text == before["transcript"]
        assert len(context.audio) / SAMPLE_RATE == pytest.approx(before["usage"]["seconds"])
    assert recorder.contexts[2].earlier == completed[0]["transcript"]
    # A turn's audio begins where it says, after the last turn's (prefix padding that
    # reaches back into the last turn is not taken twice).
    starts = [e["audio_start_ms"] / 1000 for e in sent if e["type"].endswith("speech_started")]
    ends = [start + e["usage"]["seconds"] for start, e in zip(starts, completed, strict=True)]
    assert all(start >= end - 0.001 for start, end in zip(starts[1:], ends, strict=False))


async def test_manual_commits_and_clear() -> None:
    sent: list[dict[str, Any]] = []

    async def send(event: dict[str, Any]) -> None:
        sent.append(event)

    session = Session(SessionConfig(rate=SAMPLE_RATE, turn_detection=None), Recorder(), send)
    await session.commit()
    assert sent[-1]["error"]["code"] == "input_audio_buffer_commit_empty"
    audio = (load("jfk.flac")[: 2 * SAMPLE_RATE] * 32767).astype("<i2").tobytes()
    await session.append(audio)
    await session.clear()
    await session.commit()
    assert sent[-1]["error"]["code"] == "input_audio_buffer_commit_empty"
    await session.append(audio)
    await session.commit()
    await session.finish()
    assert sent[-1]["type"] == "conversation.item.input_audio_transcription.completed"
    assert sent[-1]["transcript"] == "2.00 s"


async def test_a_commit_of_silence_under_server_vad_is_not_decoded() -> None:
    """Issue 25: a client's commit of the trailing silence after a turn was decoded,
    and Whisper invented a final ("Thank you."). Server VAD heard no speech: the turn
    is completed empty, and the speech before stays the next turn's context."""
    sent: list[dict[str, Any]] = []

    async def send(event: dict[str, Any]) -> None:
        sent.append(event)

    recorder = Recorder()
    session = Session(SessionConfig(rate=SAMPLE_RATE), recorder, send)
    speech = load("jfk.flac")
    silence = np.zeros(2 * SAMPLE_RATE, dtype=np.float32)
    pcm = (np.clip(np.concatenate([speech, silence]), -1, 1) * 32767).astype("<i2")
    for start in range(0, len(pcm), SAMPLE_RATE // 10):
        await session.append(pcm[start : start + SAMPLE_RATE // 10].tobytes())
        await asyncio.sleep(0.001)
    finals_before = sum(final for _, final in recorder.calls)
    assert finals_before >= 1  # the speech's own turn(s), closed by the VAD
    await session.commit()
    await session.append(pcm[: 3 * SAMPLE_RATE].tobytes())  # speech again: a new turn
    await session.finish()

    completed = [e for e in sent if e["type"].endswith("transcription.completed")]
    committed = [e["item_id"] for e in sent if e["type"] == "input_audio_buffer.committed"]
    assert [e["item_id"] for e in completed] == committed
    silent = completed[finals_before]
    assert silent["transcript"] == ""
    assert silent["usage"]["seconds"] > 0
    # The silent turn was never decoded, and the turn after it hears the speech before.
    assert sum(final for _, final in recorder.calls) == len(completed) - 1
    assert recorder.contexts[-1].text == completed[finals_before - 1]["transcript"]


async def test_a_turn_without_a_pause_is_cut() -> None:
    sent: list[dict[str, Any]] = []

    async def send(event: dict[str, Any]) -> None:
        sent.append(event)

    recorder = Recorder()
    limits = SessionLimits(max_turn_seconds=5.0, partial_seconds=100.0)
    session = Session(SessionConfig(rate=SAMPLE_RATE), recorder, send, limits)
    await stream(session, load(LONG_AUDIO)[: 20 * SAMPLE_RATE])
    assert all(seconds <= 5.5 for seconds, final in recorder.calls if final)


async def test_an_odd_frame_is_an_error_event_and_the_session_goes_on() -> None:
    sent: list[dict[str, Any]] = []

    async def send(event: dict[str, Any]) -> None:
        sent.append(event)

    session = Session(SessionConfig(rate=24_000, turn_detection=None), Recorder(), send)
    await session.append(b"\x00\x01\x02")
    assert sent[-1]["error"]["code"] == "invalid_audio_frame"
    await session.append(b"\x00\x00" * 4800)  # 200 ms: a commit takes at least 100
    await session.commit()
    await session.finish()
    assert sent[-1]["type"].endswith("transcription.completed")


class Busy(Recorder):
    """No worker free for the first ``busy`` partials."""

    def __init__(self, busy: int) -> None:
        super().__init__()
        self.busy = busy

    async def __call__(
        self,
        audio: np.ndarray,
        config: SessionConfig,
        *,
        final: bool,
        context: Context,
        urgent: bool = True,
    ) -> str | None:
        await asyncio.sleep(0)  # as the scheduler would: other frames arrive meanwhile
        if not final and self.busy:
            self.busy -= 1
            self.calls.append((len(audio) / SAMPLE_RATE, final))
            return None
        return await super().__call__(audio, config, final=final, context=context)


async def test_a_partial_without_a_free_worker_is_tried_again_with_the_next_frame() -> None:
    sent: list[dict[str, Any]] = []

    async def send(event: dict[str, Any]) -> None:
        # With the whole partial the session holds as it sends (what /stream shows).
        sent.append({**event, "partial": session.partial_text(event.get("item_id", ""))})

    recorder = Busy(busy=3)
    session = Session(SessionConfig(rate=SAMPLE_RATE), recorder, send)
    await stream(session, load("jfk.flac"))
    partials = [seconds for seconds, final in recorder.calls if not final]
    # Each attempt sees the turn's audio as it is then: 100 ms (one frame) more each
    # time while no worker is free, then once a second again.
    steps = np.diff(partials[:5])
    assert steps[:3] == pytest.approx([0.1, 0.1, 0.1], abs=0.01)
    assert steps[3] == pytest.approx(1.0, abs=0.11)
    first_delta = next(e for e in sent if e["type"].endswith("transcription.delta"))
    assert first_delta["partial"] == f"{partials[3]:.2f} s"


async def test_abandon_cancels_the_running_turn_and_drops_the_queued_ones() -> None:
    started: list[float] = []
    cancelled = asyncio.Event()

    async def slow(
        audio: np.ndarray, config: SessionConfig, *, final: bool, context: Context, urgent: bool
    ) -> str:
        started.append(len(audio) / SAMPLE_RATE)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    async def send(event: dict[str, Any]) -> None:
        pass

    session = Session(SessionConfig(rate=SAMPLE_RATE, turn_detection=None), slow, send)
    second = (load("jfk.flac")[:SAMPLE_RATE] * 32767).astype("<i2").tobytes()
    for _ in range(3):  # three turns committed by hand: one runs, two wait
        await session.append(second)
        await session.commit()
    await asyncio.sleep(0.01)
    assert started == [1.0]
    session.abandon()
    await asyncio.wait_for(cancelled.wait(), 1)
    await asyncio.sleep(0.01)
    assert started == [1.0]


async def test_a_turn_that_fails_does_not_stop_the_turns_after_it() -> None:
    sent: list[dict[str, Any]] = []

    async def send(event: dict[str, Any]) -> None:
        completed = event["type"].endswith("transcription.completed")
        if completed and not any(e["type"] == "failed-once" for e in sent):
            sent.append({"type": "failed-once"})
            raise ConnectionError("the first completed event could not be sent")
        sent.append(event)

    session = Session(SessionConfig(rate=SAMPLE_RATE, turn_detection=None), Recorder(), send)
    second = (load("jfk.flac")[:SAMPLE_RATE] * 32767).astype("<i2").tobytes()
    for _ in range(2):
        await session.append(second)
        await session.commit()
    await session.finish()
    assert [e["transcript"] for e in sent if "transcript" in e] == ["1.00 s"]


class Gate(Recorder):
    """Holds every final until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def __call__(
        self,
        audio: np.ndarray,
        config: SessionConfig,
        *,
        final: bool,
        context: Context,
        urgent: bool = True,
    ) -> str:
        if final:
            await self.release.wait()
        return await super().__call__(audio, config, final=final, context=context, urgent=urgent)


def pcm(seconds: float, source: str = "jfk.flac") -> bytes:
    return (load(source)[: int(seconds * SAMPLE_RATE)] * 32767).astype("<i2").tobytes()


async def test_turns_waiting_to_be_decoded_are_bounded() -> None:
    sent: list[dict[str, Any]] = []

    async def send(event: dict[str, Any]) -> None:
        sent.append(event)

    gate = Gate()
    limits = SessionLimits(max_pending_turns=3)
    session = Session(SessionConfig(rate=SAMPLE_RATE, turn_detection=None), gate, send, limits)
    for _ in range(4):  # the fourth commit finds three turns waiting
        await session.append(pcm(0.5))
        await session.commit()
    assert sent[-1]["error"]["code"] == "too_many_pending_turns"
    assert sum(e["type"] == "input_audio_buffer.committed" for e in sent) == 3
    gate.release.set()
    await asyncio.sleep(0.05)
    await session.commit()  # the refused commit's audio was kept
    await session.finish()
    assert [e["transcript"] for e in sent if "transcript" in e] == ["0.50 s"] * 4
    # A session behind goes ahead of nobody: only a final with nothing queued behind
    # it is urgent (the first began alone; the second had the third behind it).
    assert gate.urgent == [True, False, True, True]


async def test_past_the_bound_server_vad_turns_join_until_there_is_room() -> None:
    sent: list[dict[str, Any]] = []

    async def send(event: dict[str, Any]) -> None:
        sent.append(event)

    gate = Gate()
    limits = SessionLimits(max_pending_turns=1, partial_seconds=100.0, max_turn_seconds=20.0)
    session = Session(SessionConfig(rate=SAMPLE_RATE), gate, send, limits)
    audio = (load(LONG_AUDIO)[: 60 * SAMPLE_RATE] * 32767).astype("<i2").tobytes()
    step = SAMPLE_RATE // 5
    half = len(audio) // 2 // step * step
    for start in range(0, half, step):  # 30 s while the first turn's final cannot run
        await session.append(audio[start : start + step])

    def kinds(kind: str) -> list[dict[str, Any]]:
        return [e for e in sent if e["type"].endswith(kind)]

    # One turn waits; the speech after it is one turn held open (its pauses did not
    # close it) until it reached the 20 s cap with still no room: that one failed.
    assert len(kinds("committed")) == 2
    assert [e["error"]["code"] for e in kinds("transcription.failed")] == ["too_many_pending_turns"]
    first_stop = kinds("speech_stopped")[0]["audio_end_ms"] / 1000
    failed_turn = kinds("committed")[1]["item_id"]
    started = {e["item_id"]: e["audio_start_ms"] / 1000 for e in kinds("speech_started")}
    assert started[failed_turn] <= first_stop + 3  # it began with the speech after turn 1
    gate.release.set()
    for start in range(half, len(audio), step):
        await session.append(audio[start : start + step])
        await asyncio.sleep(0.001)
    await session.finish()
    # With room again, pauses close turns as before; each closed turn is accounted for.
    assert len(kinds("speech_started")) >= 4
    assert len(kinds("committed")) == len(kinds("transcription.completed")) + 1
    stops = [e["item_id"] for e in kinds("speech_stopped")]
    assert len(stops) == len(set(stops))  # one stop per turn, held or not


async def test_abandon_with_a_long_queue_raises_nothing() -> None:
    async def send(event: dict[str, Any]) -> None:
        pass

    gate = Gate()
    limits = SessionLimits(max_pending_turns=3000)
    session = Session(SessionConfig(rate=SAMPLE_RATE, turn_detection=None), gate, send, limits)
    frame = pcm(0.1)
    for _ in range(2500):  # far past the recursion limit, were each turn a task on the last
        await session.append(frame)
        await session.commit()
    await asyncio.sleep(0.01)
    session.abandon()
    await asyncio.sleep(0.05)
    assert len(gate.calls) == 0


async def test_audio_held_while_no_turn_is_open_is_bounded() -> None:
    sent: list[dict[str, Any]] = []

    async def send(event: dict[str, Any]) -> None:
        sent.append(event)

    held: list[int] = []

    def hold(nbytes: int) -> bool:
        held.append(nbytes)
        return True

    silence = b"\x00\x00" * (SAMPLE_RATE // 10)
    vad = Session(SessionConfig(rate=SAMPLE_RATE), Recorder(), send, hold=hold)
    for _ in range(1200):  # two minutes of silence: server VAD opens no turn
        await vad.append(silence)
    # What prefix padding (300 ms) may reach back to, and a frame or two.
    assert max(held) <= (0.3 * SAMPLE_RATE + 4 * 512 + SAMPLE_RATE // 10) * 4
    assert vad.received_seconds == pytest.approx(120)
    held.clear()
    recorder = Recorder()
    manual = Session(SessionConfig(rate=SAMPLE_RATE, turn_detection=None), recorder, send,
                     SessionLimits(max_turn_seconds=30.0), hold=hold)  # fmt: skip
    for _ in range(1000):  # 100 s, no commit: cut at the turn cap as a turn with VAD is
        await manual.append(silence)
        await asyncio.sleep(0)
    await manual.finish()
    assert [round(s) for s, final in recorder.calls if final] == [30, 30, 30]
    # The open turn, one waiting and the last one's (its context): at most 90 s.
    assert max(held) <= 91 * SAMPLE_RATE * 4


async def test_a_frame_the_audio_budget_refuses_is_dropped_with_an_error() -> None:
    sent: list[dict[str, Any]] = []

    async def send(event: dict[str, Any]) -> None:
        sent.append(event)

    budget = SAMPLE_RATE * 4  # one second

    def hold(nbytes: int) -> bool:
        return nbytes <= budget

    session = Session(SessionConfig(rate=SAMPLE_RATE, turn_detection=None), Recorder(), send,
                      hold=hold)  # fmt: skip
    await session.append(pcm(0.8))
    await session.append(pcm(0.8))
    assert sent[-1]["error"]["code"] == "memory_pressure"
    assert session.received_seconds == pytest.approx(0.8)
    await session.commit()
    await session.finish()
    assert sent[-1]["transcript"] == "0.80 s"


async def test_a_commit_needs_100_ms_and_a_broken_turn_says_so() -> None:
    sent: list[dict[str, Any]] = []

    async def send(event: dict[str, Any]) -> None:
        sent.append(event)

    async def broken(
        audio: np.ndarray, config: SessionConfig, *, final: bool, context: Context, urgent: bool
    ) -> str:
        raise ValueError("an engine that breaks")

    session = Session(SessionConfig(rate=SAMPLE_RATE, turn_detection=None), broken, send)
    await session.append(pcm(0.05))
    await session.commit()
    assert sent[-1]["error"]["code"] == "input_audio_buffer_commit_empty"
    await session.append(pcm(0.5))
    await session.commit()
    await session.finish()
    assert sent[-1]["type"] == "conversation.item.input_audio_transcription.failed"
    assert sent[-1]["error"]["code"] == "transcription_failed"


class Counting(Recorder):
    """Answers with one word per second of the turn, as a decoder that hears more each
    time; a final adds the turn's last words."""

    WORDS = tuple(f"w{n}" for n in range(40))

    def answer(self, seconds: float, final: bool) -> str:
        return " ".join(self.WORDS[: int(seconds) + (2 if final else 0)])


async def test_deltas_carry_new_words_only_and_add_up_to_each_final() -> None:
    from whisper_service.realtime.dialects import NativeDialect, OpenAIDialect

    openai, native = OpenAIDialect(), NativeDialect()
    shown: dict[str, list[dict[str, Any]]] = {"openai": [], "native": []}

    async def send(event: dict[str, Any]) -> None:
        for name, dialect in (("openai", openai), ("native", native)):
            if (translated := dialect.translate(session, event)) is not None:
                shown[name].append(translated)

    session = Session(SessionConfig(rate=SAMPLE_RATE), Counting(), send)
    await stream(session, load(LONG_AUDIO)[: 30 * SAMPLE_RATE])
    deltas: dict[str, list[str]] = {}
    finals = {}
    for event in shown["openai"]:
        if event["type"].endswith("transcription.delta"):
            assert event["delta"], "an empty delta was sent"
            deltas.setdefault(event["item_id"], []).append(event["delta"])
        elif event["type"].endswith("transcription.completed"):
            finals[event["item_id"]] = event["transcript"]
    assert finals
    assert any(len(d) > 2 for d in deltas.values()), deltas  # several words one by one
    for item, transcript in finals.items():
        assert "".join(deltas.get(item, [])) == transcript
    # /stream shows each partial whole, and no partial after a turn's final.
    partials = [e["text"] for e in shown["native"] if e["type"] == "partial"]
    assert partials
    assert all(p.startswith("w0") for p in partials), partials
    final_starts = [e["start"] for e in shown["native"] if e["type"] == "final"]
    assert len(final_starts) == len(finals)
    for position, event in enumerate(shown["native"]):
        if event["type"] == "final":  # the turn's (same start) partials all came before
            later = shown["native"][position + 1 :]
            assert not [e for e in later if e["type"] == "partial" and e["start"] == event["start"]]


async def test_a_turns_first_partial_comes_after_first_partial_seconds() -> None:
    async def send(event: dict[str, Any]) -> None:
        return None

    recorder = Recorder()
    limits = SessionLimits(partial_seconds=1.0, first_partial_seconds=0.5)
    session = Session(SessionConfig(rate=SAMPLE_RATE), recorder, send, limits)
    await stream(session, load("jfk.flac"))
    partials = [seconds for seconds, final in recorder.calls if not final]
    # The turn holds its 300 ms of prefix padding and the speech the VAD needed to
    # start it, then half a second; the next partial a whole interval later.
    first_speech = partials[0] - 0.5
    assert 0.3 <= first_speech <= 0.8
    assert np.diff(partials[:2])[0] == pytest.approx(1.0, abs=0.11)
