"""The client's span for each measured request: the sampler asked first, the SDK's span for what it
keeps, only a ``traceparent`` for what it leaves out.

Locust-free, so the tests and benchmarks drive it as it is; ``embed_bench.load.tracing`` builds one
per Locust process and the users call it. Most requests are not sampled (one trace in twenty by
default, ``embed_bench.core.otel``), and the SDK's path for one (a non-recording span, a context to
inject it from, the propagator's checks, two parent lookups in the parent-based sampler) cost the load
generator as much CPU per request as its own bookkeeping; this path asks the configured sampler
once and writes the header itself where nothing will ever read a span. Where the sampler is
embed-bench's own (``embed_bench.core.otel.sampler``), its rule for a root span without links (the
trace id's low 64 bits under a bound) is applied as one comparison instead of through the sampler's
layers: an unsampled request's path went from 8.6 to 3.3 us in a microbenchmark.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

LOW_64_BITS = 2**64 - 1  # TraceIdRatioBased judges these bits of the trace id


@dataclass(frozen=True, slots=True)
class Unsampled:
    """A request the sampler left out: its ``traceparent`` (sampled flag clear, so the target leaves
    it out too) and nothing else; the SDK would make a non-recording span that nothing reads."""

    traceparent: str

    def is_recording(self) -> bool:
        return False


class JudgedTraceIds:
    """Random ids as the SDK's ``RandomIdGenerator`` draws them, except that the next trace id can be
    the one the sampler has just judged, so the span the SDK starts for a sampled request is the
    trace the sampler kept. Each request's greenlet judges and starts with nothing yielding in
    between. (Duck-typed to the SDK's ``IdGenerator``, so that building one needs no SDK.)"""

    def __init__(self) -> None:
        self.judged: int | None = None

    def generate_span_id(self) -> int:
        return random.getrandbits(64) or self.generate_span_id()  # 0 is the invalid id

    def generate_trace_id(self) -> int:
        judged, self.judged = self.judged, None
        if judged is not None:
            return judged
        return random.getrandbits(128) or self.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        return True


@dataclass
class RequestTracer:
    """This process's tracer and the few SDK names a request needs (bound once, at setup).

    Most requests are not sampled, and the SDK's path for one (a non-recording span, a context to
    inject it from, the propagator's checks) cost the load generator about as much CPU as the
    request's own bookkeeping. So the sampler is asked first, with a trace id drawn as the SDK draws
    it; a request it leaves out gets only its ``traceparent`` (an :class:`Unsampled`), one it keeps
    is started by the SDK on that same trace id (:class:`JudgedTraceIds`) and injected by the SDK's
    propagator. The decision is the configured sampler's either way."""

    tracer: Any
    provider: Any
    propagator: Any
    client_kind: Any
    in_context: Any  # opentelemetry.trace.set_span_in_context
    error_status: Any  # Status(StatusCode.ERROR, description)
    root: Any  # an empty Context: each request's span is a root, found without contextvars
    ids: JudgedTraceIds
    root_bound: int | None = None  # embed_bench.core.otel.sampler's rule for roots, where it has one

    def start(self, name: str, cell: str, inputs: int, passage_tokens: int, tokens: int, url: str) -> Any:
        """The request's span, or an :class:`Unsampled` where the sampler leaves the request out."""
        trace_id = self.ids.generate_trace_id()
        if self.root_bound is not None:  # the sampler's own rule for a root without links
            sampled = trace_id & LOW_64_BITS < self.root_bound
        else:
            judged = self.provider.sampler.should_sample(self.root, trace_id, name, self.client_kind)
            sampled = judged.decision.is_recording() or bool(judged.trace_state)
        if not sampled:
            # flags 02 as the SDK writes them for a dropped root: not sampled, random trace id
            return Unsampled(f"00-{trace_id:032x}-{self.ids.generate_span_id():016x}-02")
        self.ids.judged = trace_id
        span = self.tracer.start_span(name, context=self.root, kind=self.client_kind)
        if span.is_recording():
            span.set_attributes(
                {
                    "embed_bench.cell": cell,
                    "embed_bench.batch_size": inputs,
                    "embed_bench.passage_tokens": passage_tokens,
                    "embed_bench.tokens": tokens,
                    "http.request.method": "POST",
                    "url.full": url,
                }
            )
        return span

    def headers(self, span: Any, headers: dict[str, str]) -> dict[str, str]:
        """A copy of the user's headers with this span's ``traceparent`` (and ``tracestate``)."""
        carrier = dict(headers)
        if isinstance(span, Unsampled):
            carrier["traceparent"] = span.traceparent
        else:
            self.propagator.inject(carrier, context=self.in_context(span))
        return carrier

    def end(self, span: Any, status: int, failure: str | None, lag_ms: float = 0.0) -> None:
        """Close the span with the answer: its status, and the failure class where there is one."""
        if not span.is_recording():
            return
        if status:
            span.set_attribute("http.response.status_code", status)
        if lag_ms:
            span.set_attribute("embed_bench.lag_ms", lag_ms)
        if failure is not None:
            span.set_attribute("error.type", failure)
            span.set_status(self.error_status(failure))
        span.end()


def request_tracer(provider: Any, ids: JudgedTraceIds) -> RequestTracer:
    """A RequestTracer over ``provider`` (``embed_bench.core.otel.tracer_provider``'s, built with
    ``id_generator=ids``)."""
    from opentelemetry.context import Context
    from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return RequestTracer(
        tracer=provider.get_tracer("embed_bench.load"),
        provider=provider,
        propagator=TraceContextTextMapPropagator(),
        client_kind=SpanKind.CLIENT,
        in_context=set_span_in_context,
        error_status=lambda failure: Status(StatusCode.ERROR, failure),
        root=Context(),
        ids=ids,
        root_bound=getattr(provider.sampler, "root_bound", None),
    )
