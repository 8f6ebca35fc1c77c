"""The open-loop dispatcher: requests leave on schedule whatever earlier ones do, late ones count,
hopeless ones are dropped and reported, and latency counts from the planned send time.

The first tests drive the dispatcher with senders that sleep (gevent) instead of doing I/O, with
margins of hundreds of milliseconds. The slow ones send real HTTP requests (geventhttpclient, as
Locust's FastHttpSession does) to ``tests.doubles.stall_server`` on 127.0.0.1: rate accuracy, and the
coordinated-omission comparison with a closed-loop client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import gevent
import numpy as np
import pytest

from embed_bench.core.arrivals import Mix, arrival_schedule
from embed_bench.load.open_loop import (
    Dropped,
    OpenLoopDispatcher,
    OpenLoopError,
    Outcome,
    run_open_loop,
)
from tests.doubles.process import REPO, DoubleServer, running_double
from tests.doubles.stall_server import StallSchedule
from tests.support.open_loop_http import http_sender


def sleeper(seconds: float) -> Callable[[str, float], str]:
    def send(payload: str, planned_at: float) -> str:
        gevent.sleep(seconds)
        return payload

    return send


def run_collecting(arrivals, send, **kwargs) -> tuple[list[Outcome], object]:
    outcomes: list[Outcome] = []
    summary = run_open_loop(arrivals, send, on_outcome=outcomes.append, **kwargs)
    return sorted(outcomes, key=lambda outcome: outcome.index), summary


def test_requests_leave_on_schedule_while_earlier_ones_are_still_out() -> None:
    arrivals = [(0.05 * k, f"r{k}") for k in range(20)]  # one per 50 ms; each takes 1 s to answer
    outcomes, summary = run_collecting(arrivals, sleeper(1.0), max_in_flight=50, duration_s=1.0)
    assert [outcome.payload for outcome in outcomes] == [payload for _offset, payload in arrivals]
    assert not any(outcome.dropped for outcome in outcomes)
    sent = np.array([outcome.sent_at for outcome in outcomes])
    assert np.all(np.diff(sent) > 0.02)  # not bunched behind the first answer
    assert max(outcome.lag_ms for outcome in outcomes) < 200
    assert all(900 < outcome.latency_ms < 1500 for outcome in outcomes)
    assert (summary.offered, summary.sent, summary.dropped) == (20, 20, 0)
    assert summary.offered_rate_per_s == 20.0


def test_a_request_waits_for_a_free_sender_and_its_wait_counts() -> None:
    arrivals = [(0.0, "a"), (0.05, "b"), (0.1, "c")]
    outcomes, summary = run_collecting(arrivals, sleeper(0.4), max_in_flight=1, duration_s=0.2)
    a, b, c = outcomes
    assert b.sent_at >= a.completed_at and c.sent_at >= b.completed_at
    assert b.lag_ms > 300 and c.lag_ms > 600  # queued behind 0.4 s answers
    assert c.latency_ms > 1000  # its wait for a sender counts in its latency
    assert c.latency_ms == pytest.approx(c.lag_ms + (c.completed_at - c.sent_at) * 1000)
    assert summary.late == 2 and summary.dropped == 0
    assert summary.achieved_rate_per_s < summary.offered_rate_per_s  # the last send came after the cell


def test_requests_past_the_lag_bound_are_dropped_and_reported() -> None:
    arrivals = [(0.0, "a"), (0.1, "b"), (0.2, "c"), (1.5, "d")]
    outcomes, summary = run_collecting(arrivals, sleeper(1.0), max_in_flight=1, duration_s=2.0, max_lag_s=0.3)
    assert [(outcome.payload, outcome.dropped) for outcome in outcomes] == [
        ("a", False),
        ("b", True),
        ("c", True),
        ("d", False),
    ]
    dropped = outcomes[1]
    assert dropped.sent_at is None and dropped.lag_ms is None and dropped.latency_ms is None
    assert outcomes[3].lag_ms < 300
    assert (summary.offered, summary.sent, summary.dropped) == (4, 2, 2)


def test_stop_ends_the_cell_and_drops_what_was_due() -> None:
    drops: list[Dropped] = []
    dispatcher = OpenLoopDispatcher(
        ((0.01 * k, k) for k in range(1000)), start_at=time.time(), duration_s=10.0, on_drop=drops.append
    )
    dispatcher.start()
    first = dispatcher.take()
    gevent.sleep(0.3)  # about 30 more come due; nobody takes them
    dispatcher.stop()
    assert first is not None and first.index == 0
    assert dispatcher.take() is None and dispatcher.take() is None  # every sender sees the end
    summary = dispatcher.summary()
    assert summary.sent == 1 and summary.dropped == summary.offered - 1 == len(drops) > 10
    assert [drop.index for drop in drops] == list(range(1, summary.offered))


def test_arrivals_out_of_order_are_an_error() -> None:
    with pytest.raises(OpenLoopError, match=r"arrival 2 at 0\.050000 s comes before its predecessor"):
        run_open_loop([(0.0, 1), (0.1, 2), (0.05, 3)], sleeper(0), max_in_flight=2, duration_s=1.0)


def test_a_failing_sender_ends_the_cell_loudly() -> None:
    def broken(payload: int, planned_at: float) -> None:
        raise ConnectionError("client misconfigured")

    with pytest.raises(ConnectionError, match="client misconfigured"):
        run_open_loop([(0.0, 1), (0.01, 2)], broken, max_in_flight=2, duration_s=1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_in_flight": 0}, "max in flight must be a positive integer"),
        ({"duration_s": 0}, "cell duration must be a positive number"),
        ({"max_lag_s": 0}, "max lag must be a positive number"),
    ],
)
def test_bad_settings_are_rejected(kwargs: dict, message: str) -> None:
    arguments = {"max_in_flight": 4, "duration_s": 1.0, **kwargs}
    with pytest.raises(OpenLoopError, match=message):
        run_open_loop([], sleeper(0), **arguments)


# --- against real local servers ----------------------------------------------------------------
@pytest.fixture(scope="module")
def fast_server() -> Iterator[DoubleServer]:
    with running_double("stall_server", "--stall-s", "0", "--latency-ms", "0") as server:
        yield server


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q, method="inverted_cdf"))


@pytest.mark.serial
@pytest.mark.usefixtures("spawn")
@pytest.mark.parametrize("rate", [20.0, 100.0, 400.0])
def test_achieved_rate_matches_the_offered_rate(fast_server: DoubleServer, rate: float) -> None:
    duration = 10.0
    schedule = [
        (arrival.offset_s, None) for arrival in arrival_schedule(rate, duration, Mix.single(1, 32), seed=11)
    ]
    outcomes, summary = run_collecting(
        schedule, http_sender(fast_server.url, 64), max_in_flight=64, duration_s=duration
    )
    lags = [outcome.lag_ms for outcome in outcomes]
    print(
        f"\n{rate:g}/s: offered {summary.offered_rate_per_s:.2f}/s, achieved {summary.achieved_rate_per_s:.2f}/s, "
        f"lag p50 {summary.lag_p50_ms:.2f} ms, p99 {summary.lag_p99_ms:.2f} ms, max {summary.lag_max_ms:.2f} ms"
    )
    assert summary.offered == len(schedule) and summary.dropped == 0
    assert all(outcome.result == 200 for outcome in outcomes)
    assert summary.achieved_rate_per_s == pytest.approx(summary.offered_rate_per_s, rel=0.02)
    assert percentile(lags, 50) < 50 and max(lags) < 1000  # generous: the figures are for the benchmark


@pytest.mark.serial
@pytest.mark.usefixtures("spawn")
def test_open_loop_latency_shows_the_stalls_that_a_closed_loop_client_hides() -> None:
    """50 requests/s for 30 s against a server that answers in 5 ms but stalls 3 s of every 10 s.

    Open loop, the requests due during a stall wait for its end: 30% of them, with waits spread
    evenly over 0..3 s, so the p99 is about 2.9 s. The expected p99 is computed from the planned
    times and the server's stall windows. A closed-loop client (two greenlets, each sending its next
    request 40 ms after the previous one was sent or as soon as it returned: 50 requests/s, Locust's
    ``constant_pacing``) sends only two requests into each stall, and nothing else until it ends: it
    sends 30% fewer requests and reports a p99 of milliseconds.
    """
    duration, rate = 30.0, 50.0
    with running_double("stall_server", "--latency-ms", "5", "--period-s", "10", "--stall-s", "3") as server:
        schedule = StallSchedule(**server_json(server, "/schedule"))
        send = http_sender(server.url, 300)
        closed_latencies_ms: list[float] = []

        def closed_loop_user(pacing_s: float, until: float) -> None:
            while (sent_at := time.time()) < until:
                send(None, sent_at)
                closed_latencies_ms.append((time.time() - sent_at) * 1000)
                gevent.sleep(max(0.0, pacing_s - (time.time() - sent_at)))

        start = time.time() + 0.2
        closed = [gevent.spawn(closed_loop_user, 0.04, start + duration) for _ in range(2)]
        arrivals = [(a.offset_s, None) for a in arrival_schedule(rate, duration, Mix.single(1, 32), seed=5)]
        outcomes, summary = run_collecting(
            arrivals, send, max_in_flight=300, duration_s=duration, start_at=start
        )
        gevent.joinall(closed, raise_error=True)

    assert summary.dropped == 0 and all(outcome.result == 200 for outcome in outcomes)
    expected_ms = [(schedule.release_at(o.planned_at) - o.planned_at) * 1000 for o in outcomes]
    open_p99 = percentile([o.latency_ms for o in outcomes], 99)
    expected_p99 = percentile(expected_ms, 99)
    closed_p99 = percentile(closed_latencies_ms, 99)
    print(
        f"\nopen loop: {len(outcomes)} requests, p99 {open_p99:.0f} ms (schedule implies {expected_p99:.0f} ms); "
        f"closed loop: {len(closed_latencies_ms)} requests, p99 {closed_p99:.1f} ms, max {max(closed_latencies_ms):.0f} ms"
    )
    assert 2700 < expected_p99 < 3000
    assert open_p99 == pytest.approx(expected_p99, abs=150)
    # Paced at 50/s, the closed loop sent nothing while its two requests sat in a stall: 21 s of sending.
    assert len(closed_latencies_ms) == pytest.approx(rate * (duration - 3 * schedule.stall_s), rel=0.15)
    assert max(closed_latencies_ms) > 2000  # the closed loop met the stalls too ...
    assert closed_p99 < open_p99 / 10  # ... and its p99 hides them


def server_json(server: DoubleServer, path: str) -> dict:
    with urllib.request.urlopen(server.url + path, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.usefixtures("spawn")
def test_locust_users_can_be_the_senders(tmp_path: Path) -> None:
    """A real ``locust --headless`` process: 100 users pull from one dispatcher (100 requests/s for
    4 s) against a server that stalls 1 s of every 2 s. Every arrival is sent once, Locust counts
    each of them, and Locust's own response times count from the planned send time: they include
    the stalls the schedule implies, and their sum equals the sum of the latencies from planned_at."""
    report = tmp_path / "report.json"
    with running_double("stall_server", "--latency-ms", "5", "--period-s", "2", "--stall-s", "1") as server:
        schedule = StallSchedule(**server_json(server, "/schedule"))
        variables = {"OPEN_LOOP_RATE": "100", "OPEN_LOOP_DURATION": "4"}
        run_locust(["-u", "100", "-H", server.url], variables, report)
    result = json.loads(report.read_text())
    assert result["offered"] == result["sent"] == result["locust_requests"] > 300
    assert result["dropped"] == 0 and result["locust_failures"] == 0
    latencies = result["latencies"]
    assert sum(latency for _planned, latency in latencies) == pytest.approx(
        result["locust_total_response_time_ms"]
    )
    expected_ms = [(schedule.release_at(planned) - planned) * 1000 for planned, _latency in latencies]
    observed_p90 = percentile([latency for _planned, latency in latencies], 90)
    print(
        f"\nLocust p90 from planned_at {observed_p90:.0f} ms, the schedule implies {percentile(expected_ms, 90):.0f} ms"
    )
    assert observed_p90 == pytest.approx(percentile(expected_ms, 90), abs=100)
    assert result["locust_max_response_time_ms"] > 800


@pytest.mark.serial
@pytest.mark.usefixtures("spawn")
def test_two_locust_processes_send_their_shares(fast_server: DoubleServer, tmp_path: Path) -> None:
    """``locust --processes 2``: each worker plans half of 200 requests/s for 5 s from its own stream;
    together they offer the cell's rate, each sends its whole share on time, and the master counts
    every request."""
    report = tmp_path / "report.json"
    variables = {"OPEN_LOOP_RATE": "200", "OPEN_LOOP_DURATION": "5", "OPEN_LOOP_PROCESSES": "2"}
    run_locust(["--processes", "2", "-u", "60", "-H", fast_server.url], variables, report)
    shares = [json.loads(Path(f"{report}.{index}").read_text()) for index in range(2)]
    offered = sum(share["offered"] for share in shares)
    print(
        f"\noffered {[share['offered'] for share in shares]}, achieved {[round(share['achieved_rate_per_s'], 1) for share in shares]}/s"
    )
    assert offered == pytest.approx(1000, abs=4 * 1000**0.5)  # Poisson: 200/s x 5 s, within 4 sigma
    for share in shares:
        assert share["sent"] == share["offered"] > 400 and share["dropped"] == 0
        assert share["achieved_rate_per_s"] == pytest.approx(share["offered"] / 5, rel=0.02)
    assert shares[0]["latencies"][:5] != shares[1]["latencies"][:5]  # independent streams
    master = json.loads(report.read_text())
    assert master["locust_requests"] == offered and master["locust_failures"] == 0


def run_locust(options: list[str], variables: dict[str, str], report: Path) -> None:
    """``locust --headless`` with ``open_loop_users.py``; its report lands in ``report`` (and
    ``report.<i>`` per worker)."""
    command = [sys.executable, "-m", "locust", "-f", "tests/load/open_loop_users.py", "--headless"]
    command += ["-r", "1000", "--run-time", "12s", "--only-summary", *options]
    environment = {**os.environ, **variables, "OPEN_LOOP_REPORT": str(report)}
    subprocess.run(command, env=environment, cwd=REPO, check=True, capture_output=True, timeout=90)
