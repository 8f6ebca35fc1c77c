"""Traces end to end: a real ``locust --headless --otel`` run against the bundled server, both
exporting OTLP/HTTP to a real receiver that decodes ``ExportTraceServiceRequest``. The client's span
of each measured request carries its cell, batch size, tokens and status; the server continues each
trace, and its pass spans link the client spans of the requests they served."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.load.runs import assert_complete_run, run_headless, wait_for, write_grid
from tests.support.otlp_receiver import otlp_receiver
from tests.support.target import running_target_server

pytestmark = pytest.mark.usefixtures("spawn")
CELL = (4, 2, 16)  # 4 users, 2 passages of 16 tokens
REQUESTS_PER_USER = 4
CLIENT_KIND, SERVER_KIND = 3, 2  # OTLP's Span.SpanKind: SPAN_KIND_CLIENT, SPAN_KIND_SERVER


def otel_env(endpoint: str, sampler: str | None = "parentbased_always_on") -> dict[str, str]:
    """Tracing to the receiver; every request traced unless ``sampler`` is None (the default: one in twenty)."""
    return {
        **({"OTEL_TRACES_SAMPLER": sampler} if sampler else {}),
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # export every 200 ms, so the server's spans arrive soon
        # Locust's --otel also exports its own metrics and logs (over gRPC unless told): not here.
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }


def test_a_traced_run_links_each_server_pass_to_the_client_spans_it_served(tmp_path: Path) -> None:
    grid = write_grid(tmp_path / "grid.toml", [CELL])
    with otlp_receiver() as receiver:
        env = otel_env(receiver.url)
        server_args = ("--model", "null:8", "--no-warmup", "--batching", "timeout", "--batch-timeout", "0.2")
        with running_target_server(*server_args, env=env) as url:
            run = run_headless(
                "self_hosted.py", tmp_path / "run", "-H", url, "--otel", "--grid", str(grid),
                "--requests-per-user", str(REQUESTS_PER_USER), env=env,
            )  # fmt: skip
            assert_complete_run(run, [CELL], REQUESTS_PER_USER, 1, tokens_per_request=lambda b, t: b * t)
            assert "tracing on" in run.stderr
            # Locust flushes its spans as it quits; the server's come within its export interval.
            clients = receiver.of("embed-bench")
            client_ids = {(span.trace_id, span.span_id) for span in clients}

            def continued() -> set[tuple[str, str]]:
                spans = receiver.of("embed-bench-target")
                return {(span.trace_id, span.parent_span_id) for span in spans if span.kind == SERVER_KIND}

            assert wait_for(lambda: client_ids <= continued(), timeout_s=20)
            time.sleep(0.5)  # the pass spans of the last requests: exported with them, or just after
        assert receiver.errors == []
        server_spans = receiver.of("embed-bench-target")

    # One client span per measured request (warm-ups are not measured), with what it was.
    assert len(clients) == CELL[0] * REQUESTS_PER_USER, run.describe()
    assert {span.kind for span in clients} == {CLIENT_KIND}
    cell = run.cells()[0]["cell"]
    for span in clients:
        assert span.name == "POST /embed"
        assert span.attributes["embed_bench.cell"] == cell
        assert span.attributes["embed_bench.batch_size"] == CELL[1]
        assert span.attributes["embed_bench.passage_tokens"] == CELL[2]
        assert span.attributes["embed_bench.tokens"] == CELL[1] * CELL[2]
        assert span.attributes["http.response.status_code"] == 200
        assert "error.type" not in span.attributes

    # The server continued each client's trace from its traceparent.
    requests = [span for span in server_spans if span.kind == SERVER_KIND]
    assert {(span.trace_id, span.parent_span_id) for span in requests if span.parent_span_id} == client_ids
    assert len(requests) == len(clients) + CELL[0]  # and the warm-ups, each the root of its own trace

    # Every client span is linked from a pass span, and some pass served several of them.
    passes = [span for span in server_spans if span.name == "embed pass"]
    linked = [set(span.links) & client_ids for span in passes]
    assert set().union(*linked) == client_ids
    assert max(len(links) for links in linked) >= 2, [len(links) for links in linked]
    for span in passes:
        assert span.attributes["embed.pass.requests"] == len(span.links)
        assert span.attributes["embed.pass.inputs"] == CELL[1] * len(span.links)
    assert sum(len(span.links) for span in passes) == len(requests)  # each request in exactly one pass


def test_by_default_one_request_in_twenty_is_traced_and_the_server_follows_the_clients_choice(
    tmp_path: Path,
) -> None:
    """No OTEL_TRACES_SAMPLER: the client samples one trace in twenty (800 measured requests:
    40 expected; 3.4 standard deviations either side), the server records exactly the requests the
    client sampled (their traceparent says so) and a pass span for each of them."""
    cell = (8, 1, 16)
    per_user = 100
    grid = write_grid(tmp_path / "grid.toml", [cell])
    with otlp_receiver() as receiver:
        env = otel_env(receiver.url, sampler=None)
        with running_target_server("--model", "null:8", "--no-warmup", env=env) as url:
            run = run_headless(
                "self_hosted.py", tmp_path / "run", "-H", url, "--otel", "--grid", str(grid),
                "--requests-per-user", str(per_user), env=env,
            )  # fmt: skip
            assert_complete_run(run, [cell], per_user, 1, tokens_per_request=lambda b, t: b * t)
            client_ids = {(span.trace_id, span.span_id) for span in receiver.of("embed-bench")}

            def continued() -> set[tuple[str, str]]:
                spans = receiver.of("embed-bench-target")
                return {(span.trace_id, span.parent_span_id) for span in spans if span.kind == SERVER_KIND}

            assert wait_for(lambda: client_ids <= continued(), timeout_s=20)
            time.sleep(0.5)
        server_spans = receiver.of("embed-bench-target")
    assert 18 <= len(client_ids) <= 62, len(client_ids)
    continued_ids = {
        (s.trace_id, s.parent_span_id) for s in server_spans if s.kind == SERVER_KIND and s.parent_span_id
    }
    assert continued_ids == client_ids  # nothing of the unsampled requests
    linked = set().union(*(set(s.links) for s in server_spans if s.name == "embed pass"))
    assert client_ids <= linked


def test_a_run_without_otel_settings_traces_nothing(tmp_path: Path) -> None:
    """Off by default: no ``--otel`` and no OTEL_* variable that says where spans go, no tracer."""
    grid = write_grid(tmp_path / "grid.toml", [(2, 1, 16)])
    with running_target_server("--model", "null:8", "--no-warmup") as url:
        env = {"OTEL_SERVICE_NAME": "not-configured"}  # a name alone turns nothing on
        run = run_headless("self_hosted.py", tmp_path / "run", "-H", url, "--grid", str(grid),
                           "--requests-per-user", "2", env=env)  # fmt: skip
    assert_complete_run(run, [(2, 1, 16)], 2, 1, tokens_per_request=lambda b, t: b * t)
    assert "tracing on" not in run.stderr
