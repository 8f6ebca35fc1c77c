"""The server's side of a trace: it continues the client's W3C ``traceparent`` (OpenTelemetry SDK).

Off unless ``serve --otel`` (``EMBED_BENCH_OTEL=1``) or the standard OTEL_* variables that say where
spans go (``OTEL_TRACES_EXPORTER``, ``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``
keep it off. Off, nothing of the SDK is imported and each request pays one ``None`` check.

On, an embedding request becomes a server span, child of the client's span, with children:

- ``parse``: the JSON body read and validated;
- ``tokenize``: the inputs to token ids (request threads, in parallel: the CPU's tokenizer);
- ``queue wait``: admission to the first forward pass that took one of its inputs;
- ``forward pass``: the first pass to the last result, linked to each ``embed pass`` span it joined;
- ``encode``: the vectors to the JSON answer.

The batcher thread makes one ``embed pass`` span per forward pass, the root of a trace of its own
(a pass serves many requests and belongs to none of them), with a link to every request that
shared it: to the client's span when the request carried a ``traceparent`` (as OpenTelemetry's
messaging conventions link a batch to each message's creator), else to the request's server span.
Its attributes are the pass's inputs, requests, real and padded tokens.

When tracing is on, and how the provider and its exporters are built, are
``embed_bench.core.otel``'s rules, the load generator's too: the server imports that Locust-free
core module and nothing else of embed-bench (the import contract in pyproject.toml).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from embed_bench.core.otel import TracingSetupError as TracingSetupError  # the CLI's error
from embed_bench.core.otel import tracer_provider as core_tracer_provider
from embed_bench.core.otel import tracing_requested as tracing_requested

log = logging.getLogger(__name__)
SERVICE_NAME = "embed-bench-target"


def tracer_provider(env: Mapping[str, str] | None = None, exporters: list[Any] | None = None) -> Any:
    """The server's TracerProvider: ``embed_bench.core.otel``'s, named ``embed-bench-target``."""
    return core_tracer_provider(SERVICE_NAME, env, exporters)


@dataclass
class RequestTrace:
    """One request's server span and what its children need; ``link`` is what a pass links to."""

    tracing: ServerTracing
    span: Any
    context: Any  # the server span as a parent context
    link: Any  # SpanContext: the client's span, else this server span
    passes: list[Any] = field(default_factory=list)  # SpanContexts of the passes it joined

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[Any]:
        """A child span around a block of this request thread's own work."""
        span = self.tracing.tracer.start_span(name, context=self.context)
        try:
            yield span
        except BaseException as error:
            span.set_status(self.tracing.error_status(f"{type(error).__name__}: {error}"))
            raise
        finally:
            span.end()

    def interval(self, name: str, start_perf: float, end_perf: float, links: Sequence[Any] = ()) -> None:
        """A child span over a stretch the batcher measured (``time.perf_counter`` seconds)."""
        tracing = self.tracing
        span = tracing.tracer.start_span(
            name,
            context=self.context,
            links=[tracing.link(context) for context in links],
            start_time=tracing.epoch_ns(start_perf),
        )
        span.end(end_time=tracing.epoch_ns(end_perf))

    def finish(self, status: int) -> None:
        self.span.set_attribute("http.response.status_code", status)
        if status >= 500:
            self.span.set_status(self.tracing.error_status(f"HTTP {status}"))
        self.span.end()


@dataclass
class PassLinks:
    """What the passes of a request traced in another process (a front end: target_server.frontend)
    need: the span context to link, and the passes' contexts to send back."""

    link: Any  # SpanContext
    passes: list[Any] = field(default_factory=list)


def trace_job(
    trace: RequestTrace,
    inputs: int,
    tokens: int,
    enqueued_at: float,
    started_at: float | None,
    finished_at: float | None,
) -> None:
    """The queue wait and the passes, as the batcher measured them (``time.perf_counter``, which is
    the same clock in every process of a machine); a job cut short by its timeout has only the part
    it lived through."""
    trace.span.set_attribute("embed.inputs", inputs)
    trace.span.set_attribute("embed.tokens", tokens)
    trace.interval("queue wait", enqueued_at, started_at if started_at is not None else time.perf_counter())
    if started_at is not None:
        trace.interval("forward pass", started_at, finished_at or time.perf_counter(), trace.passes)


def span_ids(context: Any) -> tuple[int, int, int]:
    """A SpanContext as plain ints (trace id, span id, flags), to cross a process boundary."""
    return context.trace_id, context.span_id, int(context.trace_flags)


class ServerTracing:
    """The server's tracer: request spans from route threads, pass spans from the batcher thread."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry.trace import (
            Link,
            SpanKind,
            Status,
            StatusCode,
            get_current_span,
            set_span_in_context,
        )
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.tracer = provider.get_tracer("target_server")
        self.propagator = TraceContextTextMapPropagator()
        self.link = Link
        self._server_kind = SpanKind.SERVER
        self._in_context = set_span_in_context
        self._span_of = get_current_span
        self.error_status = lambda description: Status(StatusCode.ERROR, description)
        # perf_counter seconds (the batcher's clock) to epoch nanoseconds (the spans' clock)
        self._offset_ns = time.time_ns() - time.perf_counter_ns()
        self._drops_unsampled_parents = drops_unsampled_parents(provider.sampler)

    @classmethod
    def configured(cls, flag: bool) -> ServerTracing | None:
        """From ``--otel`` and the environment; None when tracing is off."""
        if not tracing_requested(flag):
            return None
        tracing = cls(tracer_provider())
        log.info("tracing on: spans continue each request's traceparent; a span per forward pass")
        return tracing

    def epoch_ns(self, perf_s: float) -> int:
        return int(perf_s * 1e9) + self._offset_ns

    def begin(self, headers: Mapping[str, str], method: str, route: str) -> RequestTrace | None:
        """The server span of one request, continuing the client's trace if it sent ``traceparent``;
        None when the sampler leaves it out (the client's decision, where it sent one).

        A well-formed ``traceparent`` whose sampled flag is clear is answered None at once where the
        sampler drops every such request (a parent-based one, the default): most requests of a
        traced run are such, and the SDK's extract and non-recording span would cost each of them
        about 30 us (an in-process microbenchmark) for a span nothing reads."""
        if self._drops_unsampled_parents and unsampled_parent(headers.get("traceparent")):
            return None
        parent = self.propagator.extract(headers)
        span = self.tracer.start_span(
            f"{method} {route}",
            context=parent,
            kind=self._server_kind,
            attributes={"http.request.method": method, "http.route": route},
        )
        if not span.is_recording():  # not sampled: no children, no pass link, nothing more to pay
            return None
        remote = self._span_of(parent).get_span_context()
        link = remote if remote.is_valid else span.get_span_context()
        return RequestTrace(self, span, self._in_context(span), link)

    def forward_pass(self, part: Sequence[Any], seconds: float) -> None:
        """One ``embed pass`` span, ending now, linked to every traced request with an input in
        ``part`` (the batcher's entries); each request learns the pass it joined."""
        traces: dict[int, RequestTrace] = {}
        for entry in part:
            trace = entry.job.trace
            if trace is not None:
                traces.setdefault(id(trace), trace)
        if not traces:
            return  # a warm-up pass: nobody asked for it
        tokens = sum(entry.length for entry in part)
        padded = max(entry.length for entry in part) * len(part)
        end = time.time_ns()
        span = self.tracer.start_span(
            "embed pass",
            links=[self.link(trace.link) for trace in traces.values()],
            start_time=end - int(seconds * 1e9),
            attributes={
                "embed.pass.inputs": len(part),
                "embed.pass.requests": len({id(entry.job) for entry in part}),
                "embed.pass.tokens": tokens,
                "embed.pass.padded_tokens": padded,
            },
        )
        span.end(end_time=end)
        context = span.get_span_context()
        for trace in traces.values():
            trace.passes.append(context)

    def remote_context(self, ids: tuple[int, int, int]) -> Any:
        """The SpanContext :func:`span_ids` gave, in this process."""
        from opentelemetry.trace import SpanContext, TraceFlags

        trace_id, span_id, flags = ids
        return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))

    def close(self) -> None:
        self.provider.shutdown()  # exports what is still batched


# W3C trace context, version 00: version-trace id-parent id-flags, lowercase hex
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
INVALID_TRACE_ID, INVALID_SPAN_ID = "0" * 32, "0" * 16


def unsampled_parent(traceparent: str | None) -> bool:
    """Whether ``traceparent`` names a valid remote parent with its sampled flag clear (a malformed or
    all-zero one is no parent at all: the SDK ignores it, and so does this)."""
    if traceparent is None:
        return False
    found = TRACEPARENT.fullmatch(traceparent.strip())
    return (
        found is not None
        and found[1] != INVALID_TRACE_ID
        and found[2] != INVALID_SPAN_ID
        and not int(found[3], 16) & 0x01
    )


def drops_unsampled_parents(sampler: Any) -> bool:
    """Whether ``sampler`` drops every span whose remote parent was not sampled, asked of the sampler
    itself: a parent-based one does; ``always_on`` or a ratio sampler judges by its own rule."""
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

    for trace_id in (1, (1 << 128) - 1):  # the ids any ratio above 0 keeps and drops
        parent = SpanContext(trace_id, 1, is_remote=True, trace_flags=TraceFlags(0x02))
        context = set_span_in_context(NonRecordingSpan(parent))
        if sampler.should_sample(context, trace_id, "probe").decision.is_recording():
            return False
    return True


NO_TRACE = contextlib.nullcontext()


def step(trace: RequestTrace | None, name: str) -> contextlib.AbstractContextManager[Any]:
    """``trace.step(name)``, or a context that does nothing when the request is not traced."""
    return NO_TRACE if trace is None else trace.step(name)
