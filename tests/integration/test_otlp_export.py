"""Traces and OTel metrics exported over OTLP/HTTP by a real server to a receiver on
127.0.0.1 (the span tree itself is checked in-process in tests/http/test_tracing.py)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support import LiveServer, free_port

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


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
