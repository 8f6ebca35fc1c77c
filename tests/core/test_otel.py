"""When the Locust side traces, and what its tracer provider is built from (embed_bench.core.otel)."""

from __future__ import annotations

import pytest

from embed_bench.core.otel import TracingSetupError, tracer_provider, tracing_requested


@pytest.mark.parametrize(
    ("flag", "env", "wanted"),
    [
        (False, {}, False),
        (
            False,
            {"OTEL_SERVICE_NAME": "x", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            False,
        ),  # says nothing of where
        (True, {}, True),  # Locust's --otel
        (False, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        (False, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        (False, {"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
        (False, {"OTEL_TRACES_EXPORTER": "console"}, True),
        (True, {"OTEL_TRACES_EXPORTER": "none"}, False),
        (False, {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, False),
        (True, {"OTEL_SDK_DISABLED": "true"}, False),
        (True, {"OTEL_SDK_DISABLED": "false"}, True),
    ],
)
def test_tracing_is_off_unless_asked_for(flag, env, wanted) -> None:
    assert tracing_requested(flag, env) is wanted


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "thrift"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ],
)
def test_a_setting_that_cannot_work_is_an_error_that_names_it(env, named) -> None:
    with pytest.raises(TracingSetupError, match=named):
        tracer_provider("embed-bench", env)


def test_the_provider_names_the_service_unless_the_environment_does() -> None:
    ours = tracer_provider("embed-bench", {"OTEL_TRACES_EXPORTER": "none"})
    assert ours.resource.attributes["service.name"] == "embed-bench"
    ours.shutdown()


def test_given_exporters_receive_every_span_at_once() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = tracer_provider("embed-bench", {}, exporters=[exporter])
    provider.get_tracer("test").start_span("one").end()
    assert [span.name for span in exporter.get_finished_spans()] == ["one"]
    provider.shutdown()
