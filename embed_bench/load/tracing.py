"""Client spans of measured requests, when tracing is on (``embed_bench.core.otel`` says when).

Locust's ``--otel`` instruments ``requests``-based users only; ``EmbeddingUser`` is a
``FastHttpUser``, so its requests are traced here: one span per measured request (warm-ups are not
measured and get none), a W3C ``traceparent`` header on the request (the SDK's propagator, so the
target continues the trace), and the request's cell, batch size, tokens, status and failure class
as attributes. The sampler (``embed_bench.core.otel.sampler``: one trace in twenty unless
``OTEL_TRACES_SAMPLER`` says otherwise) decides which spans are recorded and sent; the header carries
its decision, so the server records the same requests.

Off, the cost is one ``None`` check per request: :func:`tracer_of` returns None and nothing of the
SDK is imported. On, each Locust process builds its own tracer provider once, in its first user
(after ``--processes`` forked it), and flushes it when Locust quits. The provider is ours, not the
global one Locust's ``--otel`` sets up for its metrics and logs, so our spans go where the OTEL_*
variables say, over ``http/protobuf`` unless told otherwise.

Spans are never made current: a user's greenlet starts and ends its span explicitly and the header
is injected from the span's own context, so nothing depends on how context variables behave under
gevent.
"""

from __future__ import annotations

import logging
from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, Runner

from embed_bench.core.otel import TracingSetupError, tracer_provider, tracing_requested
from embed_bench.core.request_spans import JudgedTraceIds, RequestTracer, request_tracer

log = logging.getLogger(__name__)
SERVICE_NAME = "embed-bench"
_ATTRIBUTE = "_embed_bench_tracer"  # on the Environment: this process's RequestTracer, or False


def tracer_of(environment: Environment) -> RequestTracer | None:
    """This process's tracer, built on the first call; None when tracing is off. Raises
    ``TracingSetupError`` when tracing is asked for but cannot work (no SDK, an unknown exporter)."""
    found = getattr(environment, _ATTRIBUTE, None)
    if found is not None:
        return found or None
    options = environment.parsed_options
    tracer: RequestTracer | None = None
    if tracing_requested(bool(getattr(options, "otel", False))):
        tracer = _build(environment)
    setattr(environment, _ATTRIBUTE, tracer or False)
    return tracer


def _build(environment: Environment) -> RequestTracer:
    ids = JudgedTraceIds()  # before the SDK: tracer_provider says clearly when it is missing
    provider = tracer_provider(SERVICE_NAME, id_generator=ids)

    def flush(**_: Any) -> None:
        provider.shutdown()  # exports what is still batched

    environment.events.quit.add_listener(flush)
    log.info(
        "tracing on: a span per measured request, traceparent on each request; sampler %s",
        provider.sampler.get_description(),
    )
    return request_tracer(provider, ids)


@events.init.add_listener
def _check_on_init(environment: Environment, runner: Runner | None = None, **_kwargs: Any) -> None:
    """Set tracing up as a process starts (a master sends no requests: none there), so a setting
    that cannot work stops the run with its reason instead of failing every user."""
    if runner is None or isinstance(runner, MasterRunner):
        return
    try:
        tracer_of(environment)
    except TracingSetupError as error:
        raise SystemExit(f"error: tracing: {error}") from None
