"""Traces: request -> decode -> queue -> inference spans in the caller's trace, taken
in memory from the app in-process (the export over OTLP/HTTP from a real server is in
tests/integration/test_otlp_export.py)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.support.fakes import FakeEngine, loader
from tests.support.in_process import quiet_settings
from whisper_service.app import create_app

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def traced_client() -> Iterator[tuple[TestClient, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = quiet_settings(model="tiny.en")
    # The span tree is the pipeline's; a stand-in engine gives it in milliseconds.
    app = create_app(
        settings, engine_loader=loader(FakeEngine(model_name="tiny.en")), tracer_provider=provider
    )
    with TestClient(app) as client:
        give_up = time.monotonic() + 120
        while client.get("/health/ready").status_code != 200:
            assert time.monotonic() < give_up, "model never loaded"
            time.sleep(0.1)
        yield client, exporter


def by_name(spans: tuple[ReadableSpan, ...], trace_id: int) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans if s.context is not None and s.context.trace_id == trace_id}


def test_spans_continue_the_callers_w3c_trace(
    traced_client: tuple[TestClient, InMemorySpanExporter], audio_dir: Path
) -> None:
    client, exporter = traced_client
    exporter.clear()
    with (audio_dir / "jfk.flac").open("rb") as fp:
        response = client.post(
            "/transcribe", files={"file": ("jfk.flac", fp)}, headers={"traceparent": TRACEPARENT}
        )
    assert response.status_code == 200
    spans = by_name(exporter.get_finished_spans(), int(TRACE_ID, 16))
    server = spans["POST /transcribe"]
    assert server.parent is not None
    assert server.parent.span_id == 0x00F067AA0BA902B7
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/transcribe"
    assert server.attributes["http.response.status_code"] == 200
    assert server.context is not None
    for name in ("audio.decode", "queue.wait", "inference"):
        assert name in spans, sorted(spans)
        parent = spans[name].parent
        assert parent is not None, name
        assert parent.span_id == server.context.span_id, name
    inference = spans["inference"].attributes
    assert inference is not None
    assert inference["whisper.engine"] == "faster-whisper"
    assert inference["whisper.model"] == "tiny.en"
    assert inference["whisper.language"] == "en"
    assert inference["whisper.audio.duration_seconds"] == 11.0
    decode = spans["audio.decode"].attributes
    assert decode is not None
    assert decode["whisper.audio.duration_seconds"] == 11.0
    # decode before queue before inference
    assert spans["audio.decode"].end_time <= spans["queue.wait"].start_time  # type: ignore[operator]
    assert spans["queue.wait"].end_time <= spans["inference"].start_time  # type: ignore[operator]


def test_cloud_trace_context_header_is_honoured(
    traced_client: tuple[TestClient, InMemorySpanExporter],
) -> None:
    client, exporter = traced_client
    exporter.clear()
    cloud_trace = "105445aa7843bc8bf206b12000100000"
    client.get("/v1/models", headers={"X-Cloud-Trace-Context": f"{cloud_trace}/1;o=1"})
    assert by_name(exporter.get_finished_spans(), int(cloud_trace, 16))


def test_a_live_session_is_one_trace_with_a_span_per_transcription(
    traced_client: tuple[TestClient, InMemorySpanExporter],
) -> None:
    client, exporter = traced_client
    exporter.clear()
    audio_input = {"format": {"type": "audio/pcm", "rate": 16_000}, "turn_detection": None}
    manual = {"type": "session.update",
              "session": {"type": "transcription", "audio": {"input": audio_input}}}  # fmt: skip
    frame = base64.b64encode(b"\x10\x00" * 1600).decode()  # 100 ms
    with client.websocket_connect(
        "/v1/realtime?intent=transcription", headers={"traceparent": TRACEPARENT}
    ) as ws:
        assert ws.receive_json()["type"] == "session.created"
        ws.send_json(manual)
        assert ws.receive_json()["type"] == "session.updated"
        for _ in range(30):
            ws.send_json({"type": "input_audio_buffer.append", "audio": frame})
        ws.send_json({"type": "input_audio_buffer.commit"})
        while not ws.receive_json()["type"].endswith("transcription.completed"):
            pass
    spans = [s for s in exporter.get_finished_spans()
             if s.context is not None and s.context.trace_id == int(TRACE_ID, 16)]  # fmt: skip
    # One server span for the whole session, not one per message (33 went in).
    [server] = [s for s in spans if s.kind is SpanKind.SERVER]
    assert server.attributes is not None
    assert str(server.attributes["whisper.realtime.session_id"]).startswith("sess_")
    assert len(spans) < 10, sorted(s.name for s in spans)
    turn = next(s for s in spans if s.name == "realtime.transcribe")
    assert turn.parent is not None
    assert server.context is not None
    assert turn.parent.span_id == server.context.span_id
    assert turn.attributes is not None
    assert turn.attributes["whisper.realtime.turn"] == "final"
    assert turn.attributes["whisper.audio.duration_seconds"] == 3.0
    assert any(s.name == "queue.wait" and s.parent and s.parent.span_id == turn.context.span_id
               for s in spans)  # fmt: skip
