"""OpenTelemetry: tracer and meter providers, created per worker after the fork.

Exporters are OTLP over HTTP/protobuf and only exist when an endpoint is configured
(``OTEL_EXPORTER_OTLP_ENDPOINT``, or the per-signal ``..._TRACES_ENDPOINT`` /
``..._METRICS_ENDPOINT``); every standard ``OTEL_*`` variable (service name, resource
attributes, headers, batch delays, sampler) is honoured by the SDK itself.

Incoming context: W3C ``traceparent``/``baggage`` and Google's
``X-Cloud-Trace-Context`` (W3C wins when both arrive), unless ``OTEL_PROPAGATORS``
chooses otherwise.
"""

from __future__ import annotations

import os

# The FastAPI instrumentation reads this at import: use the stable HTTP semantic
# conventions (http.request.method, http.route, http.response.status_code, url.path).
os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")

from opentelemetry import metrics, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.cloud_trace_propagator import (
    CloudTraceFormatPropagator,
)
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import (
    TraceContextTextMapPropagator,
)

from whisper_service import __version__
from whisper_service.config import Settings

TRACER_NAME = "whisper_service"


def _endpoint(signal: str) -> str | None:
    return os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )


def build_resource(settings: Settings) -> Resource:
    """service.name/version plus Cloud Run's K_SERVICE/K_REVISION; OTEL_SERVICE_NAME and
    OTEL_RESOURCE_ATTRIBUTES (read by Resource.create) take precedence."""
    attributes: dict[str, str] = {
        "service.name": os.environ.get("K_SERVICE", "whisper-service"),
        "service.version": __version__,
        "deployment.environment.name": settings.app_env.value,
        "whisper.engine": settings.engine.value,
        "whisper.model": settings.model,
    }
    if "K_SERVICE" in os.environ:
        attributes["cloud.provider"] = "gcp"
        attributes["cloud.platform"] = "gcp_cloud_run"
        attributes["faas.name"] = os.environ["K_SERVICE"]
    if "K_REVISION" in os.environ:
        attributes["faas.version"] = os.environ["K_REVISION"]
        attributes["service.instance.id"] = f"{os.environ['K_REVISION']}-{os.getpid()}"
    # Resource.create lets its arguments override the environment; merging the
    # environment's own detector last gives OTEL_SERVICE_NAME/OTEL_RESOURCE_ATTRIBUTES
    # the final word, as the OTel specification asks.
    return Resource.create(attributes).merge(OTELResourceDetector().detect())


def build_tracer_provider(settings: Settings) -> TracerProvider:
    """A tracer provider exporting over OTLP/HTTP when an endpoint is configured."""
    provider = TracerProvider(resource=build_resource(settings))
    if _endpoint("TRACES"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def build_meter_provider(settings: Settings) -> MeterProvider:
    """A meter provider exporting over OTLP/HTTP when an endpoint is configured."""
    readers = []
    if _endpoint("METRICS"):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    return MeterProvider(resource=build_resource(settings), metric_readers=readers)


def install_propagators() -> None:
    """W3C trace context and baggage plus X-Cloud-Trace-Context, unless OTEL_PROPAGATORS
    (read by the SDK at import) names others."""
    if os.environ.get("OTEL_PROPAGATORS"):
        return
    propagate.set_global_textmap(
        CompositePropagator(
            # Later propagators override earlier ones: traceparent wins over Cloud's.
            [CloudTraceFormatPropagator(), TraceContextTextMapPropagator(), W3CBaggagePropagator()]
        )
    )


def tracer(provider: trace.TracerProvider) -> trace.Tracer:
    """The service's tracer from ``provider``."""
    return provider.get_tracer(TRACER_NAME, __version__)


def meter(provider: metrics.MeterProvider) -> metrics.Meter:
    """The service's meter from ``provider``."""
    return provider.get_meter(TRACER_NAME, __version__)
