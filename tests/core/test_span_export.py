"""OTLP export from a helper process (``embed_bench.core.span_export``): what reaches a collector is
what the SDK's exporter would have sent in process, a flush waits for it, a shutdown sends the rest,
and a helper that dies costs spans, never the run."""

from __future__ import annotations

import logging
import pickle

import pytest

from embed_bench.core.otel import tracer_provider
from embed_bench.core.span_export import HelperProcessExporter, flatten, rebuild
from tests.support.otlp_receiver import otlp_receiver


def finished_spans() -> list:
    """SDK spans with everything a span can hold: a parent and a trace state, attributes of each
    type, events, links, an error status, two instrumentation scopes, a limit that drops attributes."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import (
        Link,
        SpanContext,
        SpanKind,
        Status,
        StatusCode,
        TraceFlags,
        TraceState,
        set_span_in_context,
    )

    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "round-trip", "deployment.environment": "test"}),
        span_limits=SpanLimits(max_span_attributes=6),
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer(
        "embed_bench.test", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.21.0"
    )
    other = provider.get_tracer("embed_bench.other", attributes={"scope.kind": "second"})
    remote = SpanContext(
        0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1), trace_state=TraceState([("vendor", "x")])
    )
    parent = tracer.start_span("parent", kind=SpanKind.SERVER)
    child = tracer.start_span(
        "child",
        context=set_span_in_context(parent),
        kind=SpanKind.CLIENT,
        attributes={
            "text": "a",
            "number": 3,
            "ratio": 0.5,
            "flag": True,
            "many": [1, 2, 3],
            "names": ["x", "y"],
        },
        links=[Link(remote, {"link.reason": "batched"})],
    )
    child.set_attribute("dropped.one", 1)  # over the limit of six
    child.add_event("queued", {"depth": 4}, timestamp=1_700_000_000_000_000_000)
    child.set_status(Status(StatusCode.ERROR, "status 503"))
    child.end()
    parent.end()
    lone = other.start_span("lone")
    lone.end()
    return list(exporter.get_finished_spans())


def test_a_rebuilt_batch_encodes_to_the_bytes_the_sdk_would_send() -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    spans = finished_spans()
    assert spans[0].dropped_attributes == 1 and spans[0].events and spans[0].links
    shipped = pickle.loads(pickle.dumps(flatten(spans)))
    rebuilt = rebuild(*shipped)
    assert encode_spans(rebuilt).SerializeToString() == encode_spans(spans).SerializeToString()
    assert [span.to_json() for span in rebuilt] == [span.to_json() for span in spans]


def traced_provider(receiver_url: str) -> object:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver_url, "OTEL_TRACES_SAMPLER": "always_on"}
    return tracer_provider("helper-test", env)


def helper_of(provider) -> HelperProcessExporter:
    (processor,) = provider._active_span_processor._span_processors
    exporter = processor.span_exporter
    assert isinstance(exporter, HelperProcessExporter)
    return exporter


@pytest.mark.usefixtures("spawn")
def test_a_flush_waits_until_the_receiver_has_every_span_and_shutdown_ends_the_helper() -> None:
    with otlp_receiver() as receiver:
        provider = traced_provider(receiver.url)
        tracer = provider.get_tracer("t")
        for index in range(1200):  # more than two of the processor's batches of 512
            tracer.start_span(f"span {index}", attributes={"index": index}).end()
        assert provider.force_flush()
        spans = receiver.of("helper-test")
        assert sorted(span.attributes["index"] for span in spans) == list(range(1200))
        helper = helper_of(provider)._process
        assert helper is not None and helper.poll() is None  # still there for more
        tracer.start_span("the last").end()
        provider.shutdown()  # without a flush: the rest is sent before the helper exits
        assert helper.returncode == 0
        assert [span.name for span in receiver.of("helper-test")][-1] == "the last"
        assert receiver.errors == []


@pytest.mark.usefixtures("spawn")
def test_a_helper_that_dies_costs_its_spans_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    from opentelemetry.sdk.trace.export import SpanExportResult

    with otlp_receiver() as receiver:
        exporter = HelperProcessExporter("otlp", {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url})
        spans = finished_spans()
        assert exporter.export(spans) == SpanExportResult.SUCCESS
        assert exporter.force_flush()
        assert len(receiver.of("round-trip")) == len(spans)
        exporter._process.kill()
        exporter._process.wait()
        with caplog.at_level(logging.WARNING, logger="embed_bench.core.span_export"):
            results = [exporter.export(spans) for _ in range(3)]
        assert results == [SpanExportResult.FAILURE] * 3
        said = [r.getMessage() for r in caplog.records if r.name == "embed_bench.core.span_export"]
        assert len(said) == 1 and "spans from here on are dropped" in said[0]
        assert not exporter.force_flush()
        exporter.shutdown()  # nothing left to wait for: returns at once
        assert len(receiver.of("round-trip")) == len(spans)


@pytest.mark.usefixtures("spawn")
def test_a_flush_gives_up_at_its_timeout_and_a_later_one_still_gets_its_own_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A collector that takes the connection and never answers holds the helper's export until the
    exporter's own timeout (2 s here): a flush allowed 0.3 s gives up, and one allowed 15 s skips the
    first flush's late answer and returns on its own."""
    import socket
    import time

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the backlog; nothing reads or answers
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{silent.getsockname()[1]}",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
        }
        exporter = HelperProcessExporter("otlp", env)
        try:
            exporter.export(finished_spans())
            began = time.monotonic()
            with caplog.at_level(logging.WARNING, logger="embed_bench.core.span_export"):
                assert not exporter.force_flush(timeout_millis=300)
            assert time.monotonic() - began < 1.5
            assert any("did not finish a flush" in record.getMessage() for record in caplog.records)
            assert exporter.force_flush(timeout_millis=15000)
        finally:
            exporter.shutdown()
        assert exporter._process.returncode == 0
