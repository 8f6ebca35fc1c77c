"""The client's span path (``embed_bench.core.request_spans``): the sampler is asked first,
an unsampled request carries the ``traceparent`` the SDK would write and no span, a sampled one is the
SDK's span on the very trace id the sampler judged."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from embed_bench.core.otel import tracer_provider
from embed_bench.core.request_spans import (
    LOW_64_BITS,
    JudgedTraceIds,
    RequestTracer,
    Unsampled,
    request_tracer,
)

URL = "http://127.0.0.1:8000/embed"


def traced(env: Mapping[str, str]) -> tuple[RequestTracer, object]:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    ids = JudgedTraceIds()
    provider = tracer_provider("embed-bench", env, exporters=[exporter], id_generator=ids)
    return request_tracer(provider, ids), exporter


def one_request(tracer: RequestTracer, status: int = 200, failure: str | None = None) -> tuple[object, str]:
    span = tracer.start("POST /embed", "b=1 t=16 c=8", 1, 16, 16, URL)
    headers = tracer.headers(span, {"Content-Type": "application/json"})
    tracer.end(span, status, failure)
    return span, headers["traceparent"]


def sdk_traceparent(trace_id: int, span_id: int, flags: int) -> str:
    """What the SDK's own propagator writes for a span context of these ids and flags."""
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    context = SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(flags))
    TraceContextTextMapPropagator().inject(carrier, context=set_span_in_context(NonRecordingSpan(context)))
    return carrier["traceparent"]


def test_an_unsampled_request_carries_the_traceparent_the_sdk_writes_for_a_dropped_root() -> None:
    from opentelemetry.trace import get_current_span
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    tracer, exporter = traced({"OTEL_TRACES_SAMPLER": "always_off"})
    seen = set()
    for _ in range(200):
        span, traceparent = one_request(tracer)
        assert isinstance(span, Unsampled)
        context = get_current_span(TraceContextTextMapPropagator().extract({"traceparent": traceparent}))
        found = context.get_span_context()
        assert found.is_valid and not found.trace_flags.sampled
        assert traceparent == sdk_traceparent(found.trace_id, found.span_id, 0x02)
        # the SDK's start_span would have written the same flags for this root (random trace id)
        sdk_span = tracer.tracer.start_span("POST /embed", context=tracer.root)
        assert not sdk_span.is_recording() and int(sdk_span.get_span_context().trace_flags) == 0x02
        seen.add(found.trace_id)
    assert len(seen) == 200  # a trace of its own each
    assert exporter.get_finished_spans() == ()


def test_a_sampled_request_is_the_sdks_span_on_the_trace_id_the_sampler_judged() -> None:
    """Default sampling (one in twenty by trace id): 4,000 requests give 155-245 spans (3.3 standard
    deviations of 200). Had the SDK drawn a new id and judged again, one in 400 would remain."""
    tracer, exporter = traced({})
    kept = []
    for _ in range(4000):
        span, traceparent = one_request(tracer)
        if not isinstance(span, Unsampled):  # an SDK span (ended: no longer recording)
            context = span.get_span_context()
            assert traceparent == sdk_traceparent(context.trace_id, context.span_id, 0x03)
            kept.append(context.trace_id)
        else:
            assert traceparent.endswith("-02")
    spans = exporter.get_finished_spans()
    assert 155 <= len(spans) <= 245
    assert [span.context.trace_id for span in spans] == kept
    bound = round(0.05 * (1 << 64))  # TraceIdRatioBased: the trace id's low 64 bits under the bound
    assert all((trace_id & 0xFFFFFFFFFFFFFFFF) < bound for trace_id in kept)
    assert spans[0].attributes["embed_bench.cell"] == "b=1 t=16 c=8"
    assert spans[0].attributes["http.response.status_code"] == 200


def test_every_request_is_a_span_when_the_sampler_says_so_and_failures_are_marked() -> None:
    from opentelemetry.trace import StatusCode

    tracer, exporter = traced({"OTEL_TRACES_SAMPLER": "parentbased_always_on"})
    for index in range(50):
        one_request(tracer, 503 if index % 5 == 0 else 200, "status 503" if index % 5 == 0 else None)
    spans = exporter.get_finished_spans()
    assert len(spans) == 50
    failed = [span for span in spans if span.status.status_code == StatusCode.ERROR]
    assert len(failed) == 10 and all(span.attributes["error.type"] == "status 503" for span in failed)


def test_the_ids_are_random_and_a_judged_trace_id_is_used_once() -> None:
    ids = JudgedTraceIds()
    drawn = {ids.generate_trace_id() for _ in range(1000)}
    assert len(drawn) == 1000 and 0 not in drawn
    assert all(0 < ids.generate_span_id() < 1 << 64 for _ in range(1000))
    ids.judged = 12345
    assert ids.generate_trace_id() == 12345
    assert ids.generate_trace_id() != 12345


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_TRACES_SAMPLER": "always_on"},
        {"OTEL_TRACES_SAMPLER": "always_off"},
        {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
        {"OTEL_TRACES_SAMPLER": "parentbased_always_off"},
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.37"},
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.002"},
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1"},
    ],
)
def test_the_root_rule_the_client_applies_is_the_samplers_own_decision(env) -> None:
    """The client judges its roots by the sampler's bound in one comparison; for every sampler and
    ratio it keeps exactly the trace ids the SDK's sampler keeps (ids drawn at random, and ids
    either side of the bound, where an off-by-one would show)."""
    import random

    from opentelemetry.context import Context
    from opentelemetry.trace import SpanKind

    tracer, _ = traced(env)
    assert tracer.root_bound is not None
    chooser = random.Random(7)
    edge = [tracer.root_bound + shift for shift in (-1, 0, 1) if 0 <= tracer.root_bound + shift < 1 << 64]
    trace_ids = [chooser.getrandbits(128) or 1 for _ in range(3000)] + [(5 << 64) | low for low in edge]
    for trace_id in trace_ids:
        decision = tracer.provider.sampler.should_sample(Context(), trace_id, "POST /embed", SpanKind.CLIENT)
        assert ((trace_id & LOW_64_BITS) < tracer.root_bound) == decision.decision.is_recording()


def test_a_sampler_without_the_rule_is_asked_for_each_request() -> None:
    """A provider whose sampler is not embed-bench's (no root rule): the client asks it for every
    request, and keeps exactly the requests it keeps (here: the even trace ids)."""
    from opentelemetry.sdk.trace import TracerProvider, sampling
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    asked: list[int] = []

    class EvenTraceIds(sampling.Sampler):
        def should_sample(
            self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None
        ):
            asked.append(trace_id)
            keep = trace_id % 2 == 0
            decision = sampling.Decision.RECORD_AND_SAMPLE if keep else sampling.Decision.DROP
            return sampling.SamplingResult(decision, attributes)

        def get_description(self) -> str:
            return "EvenTraceIds"

    exporter = InMemorySpanExporter()
    ids = JudgedTraceIds()
    provider = TracerProvider(sampler=EvenTraceIds(), id_generator=ids)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = request_tracer(provider, ids)
    assert tracer.root_bound is None
    traceparents = [one_request(tracer)[1] for _ in range(200)]
    trace_ids = [int(header.split("-")[1], 16) for header in traceparents]
    assert len(set(asked)) == 200 and set(asked) == set(trace_ids)
    kept = [trace_id for trace_id in trace_ids if trace_id % 2 == 0]
    assert 60 <= len(kept) <= 140
    assert [span.context.trace_id for span in exporter.get_finished_spans()] == kept
    assert all(
        header[-2:] == ("03" if trace_id % 2 == 0 else "02")
        for header, trace_id in zip(traceparents, trace_ids, strict=True)
    )
