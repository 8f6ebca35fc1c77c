"""Rate cells through the real Locust path: ``--request-rate`` cells of the EmbeddingUser against the
bundled server (one process and ``--processes 2``), and coordinated omission against the stall server."""

from __future__ import annotations

import json
import math
import urllib.request

import pytest

from tests.doubles.process import running_double
from tests.doubles.stall_server import StallSchedule
from tests.load.runs import LocustRun, run_headless

pytestmark = [pytest.mark.usefixtures("spawn"), pytest.mark.serial]

RATE, DURATION_S = 20.0, 6.0


@pytest.fixture(scope="module")
def target_url():
    from tests.support.target import running_target_server

    # One torch thread: the cores are shared with other suites (docs/open-loop.md, notes).
    with running_target_server("--batching", "continuous", env={"OMP_NUM_THREADS": "1"}) as url:
        yield url


def rate_cell(tmp_path, url: str, *args: str) -> LocustRun:
    run = run_headless(
        "self_hosted.py", tmp_path / "run", "-H", url, "--request-rate", f"{RATE:g}",
        "--cell-duration", f"{DURATION_S:g}", "--max-in-flight", "16", "--batch-size", "1",
        "--passage-tokens", "32", "--warmup-requests", "1", *args,
    )  # fmt: skip
    assert run.returncode == 0, run.describe()
    return run


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)]


def assert_open_loop_records(run: LocustRun, processes: int) -> None:
    """Every arrival sent on time and on record: latency from the planned time, the lag beside it,
    the offered rate what the cell asked for, and Locust's counts the records'."""
    name = f"r={RATE:g} b=1 t=32"
    (cell,) = run.cells()
    records = run.records()
    measured = records[records["warmup"] == 0]
    assert set(records["cell"]) == {name} and len(records[records["warmup"] == 1]) == processes
    assert (cell["request_rate"], cell["users"], cell["dropped"]) == (f"{RATE:g}", "16", "0")
    assert int(cell["planned"]) == int(cell["succeeded"]) == len(measured)
    assert int(run.stats()[name]["Request Count"]) == len(measured)
    assert (records["ok"] == 1).all() and (records["dropped"] == 0).all()
    start = float(cell["start"])
    assert records["planned_at"].between(start, start + DURATION_S).all()
    lag_ms = (records["sent_at"] - records["planned_at"]) * 1000
    latency_ms = (records["completed_at"] - records["planned_at"]) * 1000
    assert (records["lag_ms"] - lag_ms).abs().max() < 1e-3 and (records["lag_ms"] >= 0).all()
    assert (records["latency_ms"] - latency_ms).abs().max() < 1e-3
    assert (records["latency_ms"] >= records["lag_ms"]).all()
    assert percentile(records["lag_ms"], 50) < 50  # generous: benchmarks/ prints the real figures
    # Poisson: RATE x DURATION arrivals within 4 sigma, every one sent within the cell.
    expected = RATE * DURATION_S
    assert len(records) == pytest.approx(expected, abs=4 * math.sqrt(expected))
    assert records["sent_at"].max() - start < DURATION_S + 1.0


def test_a_rate_cell_sends_on_schedule_and_records_latency_from_the_planned_time(tmp_path, target_url):
    run = rate_cell(tmp_path, target_url, "--seed", "3")
    assert_open_loop_records(run, processes=1)
    assert set(run.records()["worker"]) == {"local"}


def test_two_processes_each_send_their_share_of_a_rate_cell(tmp_path, target_url):
    run = rate_cell(tmp_path, target_url, "--processes", "2", "--seed", "3")
    assert_open_loop_records(run, processes=2)
    records = run.records()
    shares = records.groupby("worker")["planned_at"]
    assert len(shares) == 2
    for _worker, planned in shares:  # each an independent stream of about half the rate
        assert len(planned) == pytest.approx(RATE * DURATION_S / 2, abs=4 * math.sqrt(RATE * DURATION_S / 2))


def test_a_rate_cell_shows_the_stalls_a_closed_loop_hides(tmp_path):
    """Coordinated omission through the real Locust path: 50 requests/s for 20 s against a server
    that answers in 5 ms but stalls 3 s of every 10 s. Latency from the planned send times has the
    p99 the stall windows imply (about 2.9 s). The server's answer ``{}`` is a bad body for the
    EmbeddingUser: every request fails its check, which leaves its timing intact."""
    with running_double("stall_server", "--latency-ms", "5", "--period-s", "10", "--stall-s", "3") as server:
        with urllib.request.urlopen(server.url + "/schedule", timeout=5) as response:
            schedule = StallSchedule(**json.loads(response.read()))
        run = run_headless(
            "self_hosted.py", tmp_path / "run", "-H", server.url, "--request-rate", "50",
            "--cell-duration", "20", "--max-in-flight", "200", "--passage-tokens", "16",
            "--warmup-requests", "0", "--seed", "5", "--exit-code-on-error", "0",
        )  # fmt: skip
    assert run.returncode == 0, run.describe()
    records = run.records()
    assert (records["dropped"] == 0).all() and len(records) > 800
    assert set(records["failure"]) == {next(iter(set(records["failure"])))}  # one class: the bad body
    expected_ms = [(schedule.release_at(p) - p) * 1000 for p in records["planned_at"]]
    observed_p99, expected_p99 = percentile(records["latency_ms"], 99), percentile(expected_ms, 99)
    print(f"\nLocust rate cell p99 {observed_p99:.0f} ms; the schedule implies {expected_p99:.0f} ms")
    assert 2500 < expected_p99 < 3000
    assert observed_p99 == pytest.approx(expected_p99, abs=150)
    name = "r=50 b=1 t=16"
    assert int(run.stats()[name]["99%"]) == pytest.approx(observed_p99, rel=0.1)  # Locust's own, too


def test_requests_no_user_takes_in_time_are_dropped_and_counted(tmp_path):
    """One user for 20 requests/s against a server that stalls 2 s of every 4 s: arrivals that wait
    past --max-lag 0.5 s are dropped, each on record (never sent, ok 0, status 0) and counted as a
    failure by Locust and in cells.csv."""
    with running_double("stall_server", "--latency-ms", "5", "--period-s", "4", "--stall-s", "2") as server:
        run = run_headless(
            "self_hosted.py", tmp_path / "run", "-H", server.url, "--request-rate", "20",
            "--cell-duration", "6", "--max-in-flight", "1", "--max-lag", "0.5", "--passage-tokens", "16",
            "--warmup-requests", "0", "--seed", "2", "--exit-code-on-error", "0",
        )  # fmt: skip
    assert run.returncode == 0, run.describe()
    records = run.records()
    dropped = records[records["dropped"] == 1]
    assert len(dropped) > 10
    assert set(dropped["failure"]) == {"dropped: no free user within 0.5 s"}
    assert (dropped["ok"] == 0).all() and (dropped["status"] == 0).all()
    assert dropped["sent_at"].isna().all() and dropped["latency_ms"].isna().all()
    (cell,) = run.cells()
    assert int(cell["dropped"]) == len(dropped) and int(cell["planned"]) == len(records)
    assert run.failure_classes()["dropped: no free user within 0.5 s"] == len(dropped)


def test_a_mix_cell_records_each_requests_own_shape(tmp_path, target_url):
    grid = tmp_path / "mix.toml"
    grid.write_text(
        '[[cells]]\nrequest_rate = 10\nduration_s = 4\nname = "search"\n'
        "mix = [{batch_size = 1, passage_tokens = 16, weight = 3}, {batch_size = 4, passage_tokens = 32, weight = 1}]\n"
    )
    run = run_headless(
        "self_hosted.py", tmp_path / "run", "-H", target_url, "--grid", str(grid), "--max-in-flight", "8",
        "--seed", "4",
    )  # fmt: skip
    assert run.returncode == 0, run.describe()
    records = run.records()
    assert set(records["cell"]) == {"r=10 mix=search"} and (records["ok"] == 1).all()
    shapes = records.groupby(["batch_size", "passage_tokens"]).size().to_dict()
    assert set(shapes) == {(1, 16), (4, 32)} and shapes[(1, 16)] > shapes[(4, 32)]
    assert (records["tokens_client"] == records["batch_size"] * records["passage_tokens"]).all()
