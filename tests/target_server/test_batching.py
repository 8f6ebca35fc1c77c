"""Scheduling behaviour of the three batching modes, with the real model behind them."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from target_server import service_of
from target_server.batching import cut_batches
from target_server.batching.base import Job


def entries_of(lengths: list[int]):
    return Job(ids=[[1] * n for n in lengths], task=None, tokens=sum(lengths)).entries()


def test_cut_batches_respects_padded_budget_and_order() -> None:
    batches = cut_batches(entries_of([10, 10, 30, 5, 40, 40]), max_batch_tokens=80)
    assert [[e.length for e in batch] for batch in batches] == [[10, 10], [30, 5], [40, 40]]
    for batch in batches:
        assert max(e.length for e in batch) * len(batch) <= 80


def test_cut_batches_gives_an_oversized_input_its_own_batch() -> None:
    batches = cut_batches(entries_of([5, 300, 5]), max_batch_tokens=64)
    assert [[e.length for e in batch] for batch in batches] == [[5], [300], [5]]


class Recorder:
    """Wraps the service's embedder: records every forward pass's rows, optionally slows the first."""

    def __init__(self, app, first_delay_s: float = 0.0) -> None:
        self.embedder = service_of(app).embedder
        self.inner = self.embedder.embed
        self.rows: list[int] = []
        self.first_delay_s = first_delay_s
        self.lock = threading.Lock()
        self.embedder.embed = self.embed

    def embed(self, batch, task=None):
        with self.lock:
            self.rows.append(len(batch))
            first = len(self.rows) == 1
        if first and self.first_delay_s:
            time.sleep(self.first_delay_s)  # lets the other requests queue up behind a busy device
        return self.inner(batch, task)


def post_many(client, bodies: list[dict], workers: int) -> list:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda body: client.post("/embed", json=body), bodies))


def test_continuous_batches_concurrent_requests_together(make_app) -> None:
    app = make_app(batching="continuous")
    recorder = Recorder(app, first_delay_s=0.5)
    responses = post_many(app.test_client(), [{"texts": [f"request number {i}"]} for i in range(12)], 12)
    assert all(r.status_code == 200 for r in responses)
    assert max(recorder.rows) > 1, f"no forward pass held inputs of two requests: {recorder.rows}"
    assert sum(recorder.rows) == 12


def test_continuous_sorts_queued_inputs_by_length(make_app) -> None:
    app = make_app(batching="continuous", max_batch_tokens=256)
    service = service_of(app)
    lengths: list[list[int]] = []
    inner = service.embedder.embed

    def record(batch, task=None):
        lengths.append([len(ids) for ids in batch])
        time.sleep(0.3 if len(lengths) == 1 else 0)
        return inner(batch, task)

    service.embedder.embed = record
    texts = [" ".join(["token"] * n) for n in (60, 5, 60, 5, 30, 5, 60, 30)]
    post_many(app.test_client(), [{"texts": [t]} for t in texts], 8)
    rounds = lengths[1:]  # after the first (delayed) pass, queued inputs ran as sorted batches
    flat = [n for batch in rounds for n in batch]
    assert flat == sorted(flat), lengths


def test_none_mode_never_mixes_requests(make_app) -> None:
    app = make_app(batching="none")
    recorder = Recorder(app, first_delay_s=0.3)
    responses = post_many(app.test_client(), [{"texts": [f"request {i}"]} for i in range(8)], 8)
    assert all(r.status_code == 200 for r in responses)
    assert recorder.rows == [1] * 8


def test_none_mode_cuts_a_large_request_into_budget_sized_passes(make_app) -> None:
    app = make_app(batching="none", max_batch_tokens=128)
    recorder = Recorder(app)
    response = app.test_client().post("/embed", json={"texts": [" ".join(["word"] * 30)] * 10})
    assert response.status_code == 200
    assert len(recorder.rows) > 1 and sum(recorder.rows) == 10


def test_timeout_mode_holds_a_lone_request_for_the_timeout(make_app) -> None:
    app = make_app(batching="timeout", batch_timeout_s=0.5)
    response = app.test_client().post("/embed", json={"texts": ["a lone small request"]})
    assert response.status_code == 200
    assert float(response.headers["x-queue-time"]) >= 0.5 * 1000 * 0.95


def test_timeout_mode_runs_at_once_when_the_budget_fills(make_app) -> None:
    app = make_app(batching="timeout", batch_timeout_s=30, max_batch_tokens=64)
    response = app.test_client().post("/embed", json={"texts": [" ".join(["word"] * 100)]})
    assert response.status_code == 200
    assert float(response.headers["x-queue-time"]) < 10_000


@pytest.mark.parametrize("mode", ["continuous", "timeout", "none"])
def test_batcher_survives_a_bug_in_the_forward_pass(make_app, mode: str) -> None:
    app = make_app(batching=mode, batch_timeout_s=0.05)
    service = service_of(app)
    inner = service.embedder.embed
    calls = {"n": 0}

    def broken_once(batch, task=None):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("a bug")
        return inner(batch, task)

    service.embedder.embed = broken_once
    client = app.test_client()
    failed = client.post("/embed", json={"texts": ["first"]})
    assert failed.status_code == 500 and failed.json["error_type"] == "internal_error"
    assert client.get("/health").status_code == 200
    assert client.post("/embed", json={"texts": ["second"]}).status_code == 200


def test_none_mode_answers_503_when_the_device_stays_busy_past_the_request_timeout(make_app) -> None:
    app = make_app(batching="none", request_timeout_s=0.3)
    Recorder(app, first_delay_s=1.5)
    responses = post_many(app.test_client(), [{"texts": ["first"]}, {"texts": ["second"]}], 2)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 503], statuses
    timed_out = next(r for r in responses if r.status_code == 503)
    assert timed_out.json["error_type"] == "timeout" and timed_out.headers["Retry-After"]
    assert service_of(app).batcher.in_flight_tokens == 0
