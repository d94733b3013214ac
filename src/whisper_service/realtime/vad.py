"""Server VAD over a live stream: where speech starts and stops, as the audio arrives.

Silero VAD (the model faster-whisper ships) run frame by frame with its recurrent
state carried from one call to the next, so each 32 ms frame is scored once, however
long the session. OpenAI's ``server_vad`` semantics: speech starts at the first frame
at or above ``threshold`` (the turn then includes ``prefix_padding_ms`` before it);
it stops once ``silence_duration_ms`` of frames have stayed below ``threshold - 0.15``
(Silero's hysteresis), and the turn ends where that silence began.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from whisper_service.audio import SAMPLE_RATE

FRAME = 512  # samples: 32 ms, Silero's frame at 16 kHz
CONTEXT = 64  # samples of the previous frame each frame is scored with
HYSTERESIS = 0.15


@dataclass(frozen=True)
class TurnDetection:
    """OpenAI's ``server_vad`` settings (its defaults)."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500


@dataclass(frozen=True)
class VadEvent:
    """Speech ``started`` or ``stopped`` at ``sample`` (16 kHz, from the stream's
    start): a start includes the prefix padding, a stop is where the silence began."""

    kind: Literal["started", "stopped"]
    sample: int


class StreamingVad:
    """Feed 16 kHz samples as they come; get the starts and stops they complete."""

    def __init__(self, detection: TurnDetection) -> None:
        from faster_whisper.vad import get_vad_model

        self.detection = detection
        self._session = get_vad_model().session
        self._state = (np.zeros((1, 1, 128), np.float32), np.zeros((1, 1, 128), np.float32))
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._position = 0  # samples scored so far
        self._speaking = False
        self._silence_from: int | None = None

    @property
    def speaking(self) -> bool:
        """Whether a turn is open."""
        return self._speaking

    def feed(self, samples: np.ndarray) -> list[VadEvent]:
        """Score the whole frames ``samples`` complete; the events they hold."""
        joined = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        whole = len(joined) // FRAME * FRAME
        self._pending = joined[whole:]
        if whole == 0:
            return []
        frames = joined[:whole].reshape(-1, FRAME)
        contexts = np.concatenate([self._context[None, :], frames[:-1, -CONTEXT:]])
        self._context = frames[-1, -CONTEXT:].copy()
        probabilities, h, c = self._session.run(
            None,
            {"input": np.concatenate([contexts, frames], axis=1), "h": self._state[0],
             "c": self._state[1]},
        )  # fmt: skip
        self._state = (h, c)
        events = []
        for probability in np.asarray(probabilities).reshape(-1):
            event = self._step(float(probability))
            if event is not None:
                events.append(event)
            self._position += FRAME
        return events

    def reset(self) -> None:
        """Forget an open turn (the client cleared the buffer)."""
        self._speaking = False
        self._silence_from = None

    def _step(self, probability: float) -> VadEvent | None:
        detection = self.detection
        if not self._speaking:
            if probability >= detection.threshold:
                self._speaking = True
                self._silence_from = None
                prefix = detection.prefix_padding_ms * SAMPLE_RATE // 1000
                return VadEvent("started", max(0, self._position - prefix))
            return None
        if probability >= detection.threshold - HYSTERESIS:
            self._silence_from = None
            return None
        if self._silence_from is None:
            self._silence_from = self._position
        silence = self._position + FRAME - self._silence_from
        if silence >= detection.silence_duration_ms * SAMPLE_RATE // 1000:
            self._speaking = False
            stopped, self._silence_from = self._silence_from, None
            return VadEvent("stopped", stopped)
        return None
