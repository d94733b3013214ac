"""One place the service reports what happened: Prometheus and OpenTelemetry together.

``telemetry`` is a process-wide object (metrics are process-wide by nature); the app
configures it with its tracer and meter providers at startup. Until then spans are
no-ops and only Prometheus records.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from whisper_service.observability import metrics as prom
from whisper_service.observability.tracing import TRACER_NAME


class Telemetry:
    """Records requests, inference, queueing, rejections and state in both systems."""

    def __init__(self) -> None:
        self._tracer: trace.Tracer = trace.get_tracer(TRACER_NAME)
        self._configure_meter(otel_metrics.get_meter(TRACER_NAME))

    def _configure_meter(self, meter: otel_metrics.Meter) -> None:
        self._requests = meter.create_counter(
            "whisper.http.requests", "{request}", "HTTP requests answered"
        )
        self._inference = meter.create_histogram(
            "whisper.inference.duration", "s", "Engine time per request"
        )
        self._audio = meter.create_counter("whisper.audio.duration", "s", "Audio transcribed")
        self._rtf = meter.create_histogram(
            "whisper.realtime_factor", "1", "Inference seconds per second of audio"
        )
        self._rejections = meter.create_counter(
            "whisper.rejections", "{request}", "Requests refused, by reason"
        )
        self._queue_wait = meter.create_histogram(
            "whisper.queue.wait", "s", "Time waiting for an inference worker"
        )
        self._diarization = meter.create_histogram(
            "whisper.diarization.duration", "s", "Time to find and label the speakers"
        )
        self._speakers = meter.create_histogram(
            "whisper.diarization.speakers", "{speaker}", "Speakers found per input"
        )

    def configure(self, tracer_provider: trace.TracerProvider, meter: otel_metrics.Meter) -> None:
        """Use these providers from now on."""
        self._tracer = tracer_provider.get_tracer(TRACER_NAME)
        self._configure_meter(meter)

    @contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[Span]:
        """A child span of whatever span is current (the HTTP request's)."""
        with self._tracer.start_as_current_span(
            name, kind=SpanKind.INTERNAL, attributes=attributes
        ) as span:
            yield span

    @contextmanager
    def inference(
        self, engine: str, model: str, task: str, audio_seconds: float, **attributes: Any
    ) -> Iterator[Span]:
        """Span and measure one engine call: the body's time is the inference time
        (recorded only when the body succeeds)."""
        attributes = {
            "whisper.engine": engine,
            "whisper.model": model,
            "whisper.task": task,
            "whisper.audio.duration_seconds": round(audio_seconds, 3),
            **attributes,
        }
        with self.span("inference", **attributes) as span:
            started = time.perf_counter()
            yield span
            seconds = time.perf_counter() - started
        self.transcribed(engine, model, task, audio_seconds, seconds)

    @contextmanager
    def diarization(self, mode: str, audio_seconds: float) -> Iterator[Span]:
        """Span and time finding the speakers of one input (recorded when the body
        succeeds); the body reports how many it found with ``speakers_found``."""
        attributes = {
            "whisper.diarization.mode": mode,
            "whisper.audio.duration_seconds": round(audio_seconds, 3),
        }
        with self.span("diarization", **attributes) as span:
            started = time.perf_counter()
            yield span
            seconds = time.perf_counter() - started
        prom.DIARIZATION_SECONDS.labels(mode).observe(seconds)
        self._diarization.record(seconds, {"mode": mode})

    def speakers_found(self, span: Span, mode: str, count: int) -> None:
        """A diarization found ``count`` speakers."""
        span.set_attribute("whisper.diarization.speakers", count)
        prom.DIARIZATION_SPEAKERS.labels(mode).observe(count)
        self._speakers.record(count, {"mode": mode})

    def request_finished(self, method: str, route: str, status: int, seconds: float) -> None:
        """An HTTP response was sent."""
        prom.HTTP_REQUESTS.labels(method, route, str(status)).inc()
        prom.HTTP_DURATION.labels(method, route).observe(seconds)
        self._requests.add(1, {"http.request.method": method, "http.route": route,
                               "http.response.status_code": status})  # fmt: skip

    def rejected(self, code: str) -> None:
        """A request was refused with error ``code`` (counted if it is a rejection)."""
        reason = prom.REJECTION_BY_CODE.get(code)
        if reason is not None:
            prom.REJECTIONS.labels(reason).inc()
            self._rejections.add(1, {"reason": reason})

    def transcribed(
        self, engine: str, model: str, task: str, audio_seconds: float, inference_seconds: float
    ) -> None:
        """An inference finished."""
        prom.INFERENCE_SECONDS.labels(engine, model, task).observe(inference_seconds)
        prom.AUDIO_SECONDS_TOTAL.labels(engine, model, task).inc(audio_seconds)
        prom.AUDIO_DURATION.labels(engine, model, task).observe(audio_seconds)
        attributes = {"engine": engine, "model": model, "task": task}
        self._inference.record(inference_seconds, attributes)
        self._audio.add(audio_seconds, attributes)
        if audio_seconds > 0:
            rtf = inference_seconds / audio_seconds
            prom.REALTIME_FACTOR.labels(engine, model).observe(rtf)
            self._rtf.record(rtf, {"engine": engine, "model": model})

    def batch_ran(self, method: str, waits: Sequence[float], windows: int) -> None:
        """A gathered batch of ``method`` calls ran: how long each call waited for it,
        and how many windows it held (the engine reports it; ``engines/batching.py``)."""
        for seconds in waits:
            prom.BATCH_WAIT.labels(method).observe(seconds)
        prom.BATCH_SIZE.labels(method).observe(windows)

    def queue_waited(self, seconds: float) -> None:
        """A request got an inference worker after waiting ``seconds``."""
        prom.QUEUE_WAIT.observe(seconds)
        self._queue_wait.record(seconds)


telemetry = Telemetry()
