"""The server continues the client's trace: request spans under the client's, one span per forward
pass that links every request it served (the SDK's in-memory exporter, the real app and batcher)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from target_server import create_app, service_of
from target_server.cli import check_tracing
from target_server.tracing import ServerTracing, tracer_provider

REQUESTS = 4


def in_memory() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def traced(config: dict) -> tuple:
    provider, exporter = in_memory()
    app = create_app({"model": "null:8", "warmup": False, **config}, tracing=ServerTracing(provider))
    return app, exporter


@pytest.fixture
def traced_app() -> Iterator[tuple]:
    """The real app on ``null:8`` with the timeout batcher, for one request at a time."""
    app, exporter = traced({"batching": "timeout", "batch_timeout_s": 0.5})
    yield app, exporter
    service_of(app).close()


def tokens_of(texts: list[str]) -> int:
    """The real tokens a request of ``texts`` queues (its usage, from an untraced app)."""
    app = create_app({"model": "null:8", "warmup": False, "batching": "none"})
    try:
        response = app.test_client().post("/v1/embeddings", json={"input": texts, "model": "null:8"})
        return response.get_json()["usage"]["total_tokens"]
    finally:
        service_of(app).close()


@pytest.fixture
def gathering_app(request) -> Iterator[tuple]:
    """The timeout batcher whose pass fires when exactly ``REQUESTS`` requests are queued.

    A fixed short timeout made sharing a pass a race: on a loaded machine the fourth thread could
    arrive after the first's timeout (seen in CI). The token budget ends the wait as soon as all
    four are in; the long timeout only bounds a failing run. The budget also caps a pass's padded
    tokens, so the body's inputs are of one length: the four requests then fill exactly one pass.
    """
    path, body = request.param
    texts = body.get("texts") or body["input"]
    assert len({tokens_of([text]) for text in texts}) == 1, "inputs of one length"
    budget = REQUESTS * tokens_of(texts)
    app, exporter = traced({"batching": "timeout", "batch_timeout_s": 60.0, "max_batch_tokens": budget})
    yield app, exporter, path, body
    service_of(app).close()


def send_together(app, path: str, body: dict) -> tuple[list, list[int]]:
    """``REQUESTS`` requests at once, each under a client span whose ``traceparent`` it carries."""
    client_provider, client_exporter = in_memory()
    tracer = client_provider.get_tracer("test client")
    propagator = TraceContextTextMapPropagator()
    barrier = threading.Barrier(REQUESTS)
    statuses: list[int] = []

    def one(index: int) -> None:
        span = tracer.start_span(f"client {index}", kind=SpanKind.CLIENT)
        headers: dict[str, str] = {}
        propagator.inject(headers, context=set_span_in_context(span))
        barrier.wait()
        response = app.test_client().post(path, json=body, headers=headers)
        statuses.append(response.status_code)
        span.end()

    threads = [threading.Thread(target=one, args=(index,)) for index in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return list(client_exporter.get_finished_spans()), statuses


@pytest.mark.parametrize(
    "gathering_app",
    [("/embed", {"texts": ["a passage to embed", "one more to embed"]}),
     ("/v1/embeddings", {"input": ["a passage to embed", "one more to embed"], "model": "null:8"})],
    indirect=True,
)  # fmt: skip
def test_one_pass_span_links_the_client_spans_of_the_requests_it_served(gathering_app) -> None:
    app, exporter, path, body = gathering_app
    clients, statuses = send_together(app, path, body)
    assert statuses == [200] * REQUESTS
    spans = list(exporter.get_finished_spans())
    passes = [span for span in spans if span.name == "embed pass"]
    assert len(passes) == 1, [span.name for span in spans]  # the batcher took all four at once
    (pass_span,) = passes
    client_contexts = {(span.context.trace_id, span.context.span_id) for span in clients}
    linked = {(link.context.trace_id, link.context.span_id) for link in pass_span.links}
    assert linked == client_contexts and len(linked) == REQUESTS
    assert pass_span.attributes["embed.pass.requests"] == REQUESTS
    assert pass_span.attributes["embed.pass.inputs"] == 2 * REQUESTS
    assert pass_span.parent is None  # a pass is no one request's: the root of its own trace

    # Each request's server span continues its client's trace, with its steps as children.
    servers = [span for span in spans if span.kind == SpanKind.SERVER]
    assert {(span.context.trace_id, span.parent.span_id) for span in servers} == client_contexts
    assert all(span.name == f"POST {path}" for span in servers)
    assert all(span.attributes["http.response.status_code"] == 200 for span in servers)
    for server in servers:
        children = {
            span.name: span
            for span in spans
            if span.parent is not None and span.parent.span_id == server.context.span_id
        }
        assert set(children) == {"parse", "tokenize", "queue wait", "forward pass", "encode"}
        assert server.attributes["embed.inputs"] == 2
        # The request's pass step links back to the pass span, and follows its queue wait.
        assert [link.context.span_id for link in children["forward pass"].links] == [
            pass_span.context.span_id
        ]
        assert children["queue wait"].end_time <= children["forward pass"].start_time + 1000
        assert children["parse"].end_time <= children["tokenize"].start_time
        assert children["forward pass"].end_time <= children["encode"].start_time


def test_a_request_without_traceparent_starts_a_trace_the_pass_links(traced_app) -> None:
    app, exporter = traced_app
    assert app.test_client().post("/embed", json={"texts": ["no trace header"]}).status_code == 200
    spans = list(exporter.get_finished_spans())
    (server,) = [span for span in spans if span.kind == SpanKind.SERVER]
    (pass_span,) = [span for span in spans if span.name == "embed pass"]
    assert server.parent is None
    assert [link.context.span_id for link in pass_span.links] == [server.context.span_id]


def test_a_refused_request_ends_its_span_with_the_status(traced_app) -> None:
    app, exporter = traced_app
    assert app.test_client().post("/embed", json={"texts": []}).status_code == 400
    (server,) = [span for span in exporter.get_finished_spans() if span.kind == SpanKind.SERVER]
    assert server.attributes["http.response.status_code"] == 400
    assert not [span for span in exporter.get_finished_spans() if span.name == "embed pass"]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ],
)
def test_a_setting_that_cannot_work_is_an_error_that_names_it(monkeypatch, env, named) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    error = check_tracing(True)
    assert error is not None and named in error
    with pytest.raises(ValueError, match=named):
        tracer_provider(env)


def test_without_otel_settings_the_server_traces_nothing(monkeypatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    app = create_app({"model": "null:8", "warmup": False})
    try:
        service = service_of(app)
        assert service.tracing is None and service.batcher.tracing is None
        assert app.test_client().post("/embed", json={"texts": ["x"]}).status_code == 200
    finally:
        service_of(app).close()


def test_the_server_records_what_the_client_sampled_and_nothing_else() -> None:
    """The server's own sampler (parent-based, roots never sampled here): a request whose
    ``traceparent`` says sampled gets its spans and its pass span (recorded for its sampled link);
    one that says not sampled, or carries none, costs no span at all."""
    exporter = InMemorySpanExporter()
    never = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"}
    app = create_app(
        {"model": "null:8", "warmup": False, "batching": "none"},
        tracing=ServerTracing(tracer_provider(never, exporters=[exporter])),
    )
    client = app.test_client()
    trace_id, parent_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    try:
        for headers in ({"traceparent": f"00-{trace_id}-{parent_id}-00"}, {}):
            assert client.post("/embed", json={"texts": ["left out"]}, headers=headers).status_code == 200
        assert exporter.get_finished_spans() == ()
        sampled = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
        assert client.post("/embed", json={"texts": ["kept"]}, headers=sampled).status_code == 200
    finally:
        service_of(app).close()
    spans = list(exporter.get_finished_spans())
    (server,) = [span for span in spans if span.kind == SpanKind.SERVER]
    assert (format(server.context.trace_id, "032x"), format(server.parent.span_id, "016x")) == (
        trace_id,
        parent_id,
    )
    (pass_span,) = [span for span in spans if span.name == "embed pass"]
    assert [format(link.context.span_id, "016x") for link in pass_span.links] == [parent_id]
    assert {span.name for span in spans} == {
        "POST /embed", "parse", "tokenize", "queue wait", "forward pass", "encode", "embed pass",
    }  # fmt: skip


TRACE_ID, PARENT_ID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"


@pytest.mark.parametrize(
    ("traceparent", "unsampled"),
    [
        (f"00-{TRACE_ID}-{PARENT_ID}-00", True),
        (f"00-{TRACE_ID}-{PARENT_ID}-02", True),  # random trace id flag, as embed-bench's client sends
        (f" 00-{TRACE_ID}-{PARENT_ID}-00 ", True),
        (f"00-{TRACE_ID}-{PARENT_ID}-01", False),
        (f"00-{TRACE_ID}-{PARENT_ID}-03", False),
        (None, False),
        ("", False),
        (f"00-{TRACE_ID.upper()}-{PARENT_ID}-00", False),  # not lowercase hex: no parent at all
        (f"01-{TRACE_ID}-{PARENT_ID}-00", False),  # a version this shortcut does not read
        (f"00-{'0' * 32}-{PARENT_ID}-00", False),  # invalid trace id
        (f"00-{TRACE_ID}-{'0' * 16}-00", False),  # invalid parent id
        (f"00-{TRACE_ID}-{PARENT_ID}-0", False),
    ],
)
def test_the_shortcut_reads_an_unsampled_parent_as_the_sdk_does(traceparent, unsampled) -> None:
    from opentelemetry.trace import get_current_span

    from target_server.tracing import unsampled_parent

    assert unsampled_parent(traceparent) is unsampled
    if unsampled:  # the SDK's extract agrees: a valid remote parent, not sampled
        found = get_current_span(TraceContextTextMapPropagator().extract({"traceparent": traceparent}))
        assert found.get_span_context().is_valid and not found.get_span_context().trace_flags.sampled


@pytest.mark.parametrize(
    ("env", "drops"),
    [
        ({}, True),  # the default: parent-based, one root in twenty
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_on"}, True),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_off"}, True),
        ({"OTEL_TRACES_SAMPLER": "always_off"}, True),
        ({"OTEL_TRACES_SAMPLER": "always_on"}, False),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1"}, False),
    ],
)
def test_unsampled_parents_are_skipped_only_where_the_sampler_drops_them_all(env, drops) -> None:
    """With ``always_on`` the server records a request whatever its parent said, so the shortcut must
    not apply: such a request gets its span from the SDK."""
    exporter = InMemorySpanExporter()
    tracing = ServerTracing(tracer_provider(env, exporters=[exporter]))
    trace = tracing.begin({"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-02"}, "POST", "/embed")
    if drops:
        assert trace is None
    else:
        assert trace is not None
        trace.finish(200)
        (span,) = exporter.get_finished_spans()
        assert f"{span.context.trace_id:032x}" == TRACE_ID and f"{span.parent.span_id:016x}" == PARENT_ID
