"""When the Locust side traces, and what its tracer provider is built from (embed_bench.core.otel)."""

from __future__ import annotations

import pytest

from embed_bench.core.otel import (
    DEFAULT_SAMPLE_RATIO,
    TracingSetupError,
    sampler,
    tracer_provider,
    tracing_requested,
)


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
    provider = tracer_provider("embed-bench", {"OTEL_TRACES_SAMPLER": "always_on"}, exporters=[exporter])
    provider.get_tracer("test").start_span("one").end()
    assert [span.name for span in exporter.get_finished_spans()] == ["one"]
    provider.shutdown()


def recorded(env: dict[str, str], spans: int = 1, links: list | None = None) -> int:
    """How many of ``spans`` root spans the provider built from ``env`` records."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = tracer_provider("embed-bench", env, exporters=[exporter])
    tracer = provider.get_tracer("test")
    for _ in range(spans):
        tracer.start_span("root", links=links).end()
    provider.shutdown()
    return len(exporter.get_finished_spans())


def test_unset_the_sampler_keeps_one_trace_in_ten_and_follows_the_parent() -> None:
    """The default: parent-based, one root in twenty by trace id (4,000 roots: 200 expected, 3.3 standard
    deviations either side; a sampler that kept all or none fails)."""
    from opentelemetry.sdk.trace import sampling

    assert DEFAULT_SAMPLE_RATIO == 0.05
    assert 155 <= recorded({}, spans=4000) <= 245
    description = sampler({}).get_description()
    assert "ParentBased" in description and "TraceIdRatioBased{0.05}" in description
    assert isinstance(sampler({}), sampling.Sampler)


def test_a_named_sampler_and_its_ratio_are_honoured() -> None:
    assert recorded({"OTEL_TRACES_SAMPLER": "always_on"}, spans=50) == 50
    assert recorded({"OTEL_TRACES_SAMPLER": "parentbased_always_off"}, spans=50) == 0
    assert recorded({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"}, spans=50) == 0
    assert recorded({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio"}, spans=50) == 50  # no ARG: 1.0


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER: unknown sampler 'sometimes'"),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"},
            "OTEL_TRACES_SAMPLER_ARG",
        ),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
            "OTEL_TRACES_SAMPLER_ARG",
        ),
    ],
)
def test_a_sampler_that_cannot_work_is_an_error_that_names_it(env, named) -> None:
    with pytest.raises(TracingSetupError, match=named):
        tracer_provider("embed-bench", env)


def test_a_root_span_linked_to_a_sampled_span_is_recorded_whatever_the_ratio() -> None:
    """The server's pass span: a root of its own, recorded when a request it served was sampled."""
    from opentelemetry.trace import Link, SpanContext, TraceFlags

    def link(sampled: bool) -> Link:
        flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
        return Link(SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=flags))

    never = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"}
    assert recorded(never, spans=20) == 0
    assert recorded(never, spans=20, links=[link(False), link(True)]) == 20
    assert recorded(never, spans=20, links=[link(False)]) == 0
