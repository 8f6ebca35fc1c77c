"""The latency oracle: a local server answers ``POST /embed`` after delays drawn from a known,
seeded distribution and logs each one; a real one-cell Locust run of 1,000 requests against it must
give the report's exact p50 / p90 / p95 / p99 within 1% + a few ms of the oracle's own percentiles
of the delays it slept. Locust's CSV percentiles of the same run, rounded to two significant digits,
fail that same check.

The delays run from 1 to 6 s: 1 s plus a log-normal tail (median about 1.25 s, p99 about 3 s). To
stay fast the test scales out, not down: 100 users send 10 requests each, so 1,000 requests take
about 20 s. Most percentiles lie between 1 and 2 s, where Locust's 100 ms buckets err by up to 50 ms
(up to 5%), so its eight printed percentiles cannot all pass by luck.

"A few ms" of client overhead is measured, not assumed: on a loaded machine (two cores shared by
several test runs) the load generator's own scheduling adds tens of ms to every request. The oracle
sends ``x-total-time`` (the delay it slept), so each record's ``latency_ms - server_total_ms`` is
that request's client overhead; the target is the oracle's percentile plus the median overhead. The
overhead is not the same for every request, so a percentile of the sum strays from that target by up
to the overhead's own spread: the report's band widens by the overheads' interquartile range (a few
ms on a quiet machine; CI once missed p90 by 30.2 ms against a 28.7 ms band without it). Locust's
rounded percentiles are held to the tight band, which they miss by their 100 ms buckets.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from reports.load.records import RECORDS_FILE
from reports.load.runs import load_run
from reports.metrics.runs import run_metrics
from tests.load.runs import run_headless

pytestmark = [pytest.mark.usefixtures("spawn"), pytest.mark.serial]

USERS, REQUESTS_PER_USER = 100, 10
REQUESTS = USERS * REQUESTS_PER_USER
SEED = 20250101
CELL = f"b=1 t=16 c={USERS}"
PERCENTILES = (50, 90, 95, 99)
LOCUST_PERCENTILES = (50, 66, 75, 80, 90, 95, 98, 99)  # the ones locust_stats.csv prints in this range
RELATIVE, FEW_MS = 0.01, 10.0  # 1% + a few ms


def oracle_delays_ms(count: int = REQUESTS, seed: int = SEED) -> np.ndarray:
    """1 s plus a log-normal tail (median 250 ms, sigma 0.9), clipped at 6 s."""
    rng = np.random.default_rng(seed)
    return np.clip(1000.0 + rng.lognormal(mean=np.log(250.0), sigma=0.9, size=count), 1000.0, 6000.0)


class OracleServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # 200 users connect at once: a short backlog would drop SYNs (1 s retries)

    def __init__(self, delays_ms: np.ndarray) -> None:
        super().__init__(("127.0.0.1", 0), OracleHandler)
        self.pending = list(delays_ms)
        self.slept_ms: list[float] = []
        self.lock = threading.Lock()

    def next_delay_ms(self) -> float:
        with self.lock:
            delay = self.pending.pop() if self.pending else 1000.0
            self.slept_ms.append(delay)
            return delay


class OracleHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the bundled server: no connect per request
    # Headers and body leave in two writes; with Nagle's algorithm the body waits for the client's
    # delayed ACK of the headers, which added a steady ~40 ms to every request (measured, then fixed).
    disable_nagle_algorithm = True
    server: OracleServer

    def do_POST(self) -> None:
        texts = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["texts"]
        delay_ms = self.server.next_delay_ms()
        threading.Event().wait(delay_ms / 1000)
        body = json.dumps(
            {"embeddings": [[0.5, 0.25, 0.125, 0.0625]] * len(texts), "model": "oracle"}
        ).encode()
        self.send_response(200)
        self.send_header("x-total-time", f"{delay_ms:.3f}")  # what the oracle slept, as a server says
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:  # the oracle's log is ``slept_ms``
        pass


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, np.ndarray, object]]:
    server = OracleServer(oracle_delays_ms())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    run_dir = tmp_path_factory.mktemp("oracle") / "run"
    try:
        run = run_headless(
            "self_hosted.py", run_dir, "-H", f"http://127.0.0.1:{server.server_address[1]}",
            "-u", str(USERS), "--batch-size", "1", "--passage-tokens", "16",
            "--requests-per-user", str(REQUESTS_PER_USER), "--warmup-requests", "0",
            timeout_s=240,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert run.returncode == 0, run.describe()
    yield run_dir, np.array(server.slept_ms), run


def oracle_targets(slept_ms: np.ndarray, overhead_ms: float, percentiles=PERCENTILES) -> dict[int, float]:
    return {p: float(np.percentile(slept_ms, p)) + overhead_ms for p in percentiles}


def misses(figures: dict[int, float], targets: dict[int, float], slack_ms: float = 0.0) -> dict[int, float]:
    """Percentiles farther from their target than 1% + a few ms (+ ``slack_ms``): {percentile: error ms}."""
    return {
        p: figures[p] - targets[p]
        for p in targets
        if abs(figures[p] - targets[p]) > RELATIVE * targets[p] + FEW_MS + slack_ms
    }


def overhead_spread_ms(run_dir: Path) -> float:
    """The interquartile range of the per-request client overhead (latency - x-total-time)."""
    measured = load_run(run_dir).records.measured
    overhead = measured["latency_ms"] - measured["server_total_ms"]
    return float(overhead.quantile(0.75) - overhead.quantile(0.25))


def client_overhead_ms(run_dir: Path, slept_ms: np.ndarray, run) -> float:
    """Median of each request's latency - the delay the oracle slept for it (its x-total-time), from
    the records; without them, Locust's exact mean response time - the oracle's mean delay."""
    records = load_run(run_dir).records
    if records is not None and records.measured["server_total_ms"].notna().all():
        measured = records.measured
        return float((measured["latency_ms"] - measured["server_total_ms"]).median())
    return float(run.stats()[CELL]["Average Response Time"]) - float(slept_ms.mean())


def test_the_oracle_slept_every_request(oracle_run) -> None:
    run_dir, slept, run = oracle_run
    assert len(slept) == REQUESTS
    assert int(run.stats()[CELL]["Request Count"]) == REQUESTS
    assert slept.min() >= 1000 and slept.max() <= 6000
    print(f"client overhead: {client_overhead_ms(run_dir, slept, run):.1f} ms")


def test_locusts_csv_percentiles_fail_the_oracle_check(oracle_run) -> None:
    """Shown, not assumed: Locust's rounded percentiles of this very run miss the oracle."""
    run_dir, slept, run = oracle_run
    row = run.stats()[CELL]
    locust = {p: float(row[f"{p}%"]) for p in LOCUST_PERCENTILES}
    targets = oracle_targets(slept, client_overhead_ms(run_dir, slept, run), LOCUST_PERCENTILES)
    missed = misses(locust, targets)
    assert missed, (locust, targets)
    print(f"Locust's CSV percentiles {locust} miss the oracle's {targets} at {missed}")


def test_the_reports_exact_percentiles_match_the_oracle(oracle_run) -> None:
    run_dir, slept, run = oracle_run
    if not (run_dir / RECORDS_FILE).is_file():
        pytest.skip(f"the Locust side writes no {RECORDS_FILE} yet (per-request records, issue 10 item 1)")
    cell = run_metrics(load_run(run_dir)).cells[0]
    assert cell.request_count == REQUESTS and cell.success_count == REQUESTS
    server_total = load_run(run_dir).records.measured["server_total_ms"]
    assert server_total.notna().all(), "the records lost the oracle's x-total-time header"
    assert np.allclose(
        np.sort(server_total), np.sort(slept), atol=1e-3
    )  # the oracle's log, request by request
    report = {p: cell.latency_all.at(p) for p in PERCENTILES}
    targets = oracle_targets(slept, client_overhead_ms(run_dir, slept, run))
    spread = overhead_spread_ms(run_dir)
    print(f"client overhead interquartile range: {spread:.1f} ms")
    assert misses(report, targets, spread) == {}, (report, targets, spread)
    assert all(report[p] >= np.percentile(slept, p) for p in PERCENTILES)  # the client only adds time
    values = [report[p] for p in PERCENTILES]
    assert values == sorted(values)  # monotone
    assert report == {p: cell.latency_ok.at(p) for p in PERCENTILES}  # nothing failed
