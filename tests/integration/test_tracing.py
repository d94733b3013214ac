"""Traces: request -> decode -> queue -> inference spans in the caller's trace, in
memory and exported over OTLP/HTTP to a receiver on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support import MODEL_CACHE, LiveServer, free_port
from whisper_service.app import create_app
from whisper_service.config import load_settings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def traced_client() -> Iterator[tuple[TestClient, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = load_settings(app_env="development", model_cache_dir=MODEL_CACHE, cpu_threads=2)
    app = create_app(settings, tracer_provider=provider)
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


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_otlp_http_export_to_a_receiver(tmp_path: Path, audio_dir: Path) -> None:
    import httpx

    port = free_port()
    receiver = HTTPServer(("127.0.0.1", port), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        server = LiveServer(
            tmp_path,
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
            OTEL_BSP_SCHEDULE_DELAY="100",
            OTEL_METRIC_EXPORT_INTERVAL="500",
            OTEL_SERVICE_NAME="whisper-under-test",
        ).start()
        try:
            with (audio_dir / "jfk.flac").open("rb") as fp:
                response = httpx.post(
                    f"{server.url}/transcribe",
                    files={"file": ("jfk.flac", fp)},
                    headers={"traceparent": TRACEPARENT},
                    timeout=60,
                )
            assert response.status_code == 200
            names: set[str] = set()
            metric_names: set[str] = set()
            give_up = time.monotonic() + 30
            while time.monotonic() < give_up and not (
                {"inference", "audio.decode"} <= names
                and "whisper.inference.duration" in metric_names
            ):
                time.sleep(0.2)
                for path, body in list(_Receiver.received):
                    if path == "/v1/traces":
                        request = ExportTraceServiceRequest.FromString(body)
                        for resource_spans in request.resource_spans:
                            attrs = {
                                a.key: a.value.string_value
                                for a in resource_spans.resource.attributes
                            }
                            assert attrs["service.name"] == "whisper-under-test"
                            for scope_spans in resource_spans.scope_spans:
                                for span in scope_spans.spans:
                                    if span.trace_id.hex() == TRACE_ID:
                                        names.add(span.name)
                    elif path == "/v1/metrics":
                        metrics_request = ExportMetricsServiceRequest.FromString(body)
                        for rm in metrics_request.resource_metrics:
                            for sm in rm.scope_metrics:
                                metric_names.update(m.name for m in sm.metrics)
            assert {"POST /transcribe", "audio.decode", "queue.wait", "inference"} <= names
            assert "whisper.inference.duration" in metric_names
        finally:
            server.stop()
    finally:
        receiver.shutdown()
