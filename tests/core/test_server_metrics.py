"""The sampler of a target's Prometheus endpoint: what it parses and keeps, how it writes
server_metrics.csv, and that a failing, hanging or oversized endpoint is recorded and never stops it."""

from __future__ import annotations

import contextlib
import csv
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from embed_bench.core.server_metrics import (
    SERVER_METRICS_COLUMNS,
    ScrapeError,
    ServerMetricsSampler,
    format_labels,
    parse_labels,
    parse_samples,
)

BODY = """# HELP embed_queue_requests Requests waiting
# TYPE embed_queue_requests gauge
embed_queue_requests {queue}
# HELP embed_batch_size Inputs per forward pass
# TYPE embed_batch_size histogram
embed_batch_size_bucket{{le="1.0"}} 3
embed_batch_size_bucket{{le="+Inf"}} 5
embed_batch_size_count 5
embed_batch_size_sum 12
# HELP embed_requests_total Requests
# TYPE embed_requests_total counter
embed_requests_total{{endpoint="embed",status="200"}} 7
# HELP embed_gpu_power_watts Power
# TYPE embed_gpu_power_watts gauge
embed_gpu_power_watts{{gpu="0",gpu_name="NVIDIA \\"H200\\""}} 612.5
"""


def test_labels_round_trip_with_escapes() -> None:
    labels = {"gpu_name": 'NVIDIA "H200"\nSXM', "gpu": "0", "path": "C:\\x"}
    text = format_labels(labels)
    assert text.startswith('gpu="0",gpu_name=')  # sorted, PromQL's own spelling
    assert parse_labels(text) == labels
    assert format_labels({}) == "" and parse_labels("") == {}


def test_samples_keep_sums_counts_and_labels_but_not_buckets() -> None:
    samples = parse_samples(BODY.format(queue=4))
    assert ("embed_queue_requests", {}, 4.0) in samples
    assert ("embed_batch_size_sum", {}, 12.0) in samples and ("embed_batch_size_count", {}, 5.0) in samples
    assert ("embed_requests_total", {"endpoint": "embed", "status": "200"}, 7.0) in samples
    assert ("embed_gpu_power_watts", {"gpu": "0", "gpu_name": 'NVIDIA "H200"'}, 612.5) in samples
    assert not [name for name, _, _ in samples if name.endswith("_bucket")]


def test_a_body_that_is_not_prometheus_text_is_a_scrape_error() -> None:
    with pytest.raises(ScrapeError, match="not Prometheus text"):
        parse_samples("<html>502 Bad Gateway</html>\n")


@contextlib.contextmanager
def text_server(answer: Callable[[int], tuple[int, str, float]]) -> Iterator[str]:
    """Serves ``answer(n)`` -> (status, body, delay before answering) to the n-th GET (from 0)."""
    count = {"n": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with lock:
                number = count["n"]
                count["n"] += 1
            status, body, delay = answer(number)
            time.sleep(delay)
            payload = body.encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the client gave up (a timeout): nothing to answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        assert tuple(reader.fieldnames or ()) == SERVER_METRICS_COLUMNS
        return list(reader)


def test_the_sampler_records_failures_and_goes_on(tmp_path: Path, spawn: None) -> None:
    """Scrapes 0-2 answer, 3-4 are HTTP 503, 5 is not Prometheus text, 6 hangs past the timeout, 7 is
    too large, then it answers again: every scrape is a row, failures as ``up`` 0 naming the error."""

    def answer(number: int) -> tuple[int, str, float]:
        if number in (3, 4):
            return 503, "busy", 0.0
        if number == 5:
            return 200, "<html>oops</html>", 0.0
        if number == 6:
            return 200, BODY.format(queue=number), 1.0
        if number == 7:
            return 200, "# padding\n" * 20_000, 0.0
        return 200, BODY.format(queue=number), 0.0

    messages: list[str] = []
    path = tmp_path / "server_metrics.csv"
    with text_server(answer) as url:
        sampler = ServerMetricsSampler(
            url, path, interval_s=0.05, timeout_s=0.4, max_bytes=100_000, on_error=messages.append
        )
        began = time.time()
        sampler.start()
        deadline = time.monotonic() + 20
        while sampler.summary.scrapes < 11 and time.monotonic() < deadline:
            time.sleep(0.05)
        summary = sampler.stop()
        ended = time.time()
    rows = read_rows(path)
    ups = [row for row in rows if row["metric"] == "up"]
    assert len(ups) == summary.scrapes >= 11
    errors = [parse_labels(row["labels"]).get("error", "") for row in ups[:9]]
    assert [row["value"] for row in ups[:9]] == ["1", "1", "1", "0", "0", "0", "0", "0", "1"]
    assert errors[3:5] == ["HTTP 503", "HTTP 503"]
    assert errors[5].startswith("not Prometheus text")
    assert "timed out" in errors[6]
    assert errors[7] == "answer over 100,000 bytes"
    assert summary.failed == 5 and summary.first_error == "HTTP 503"
    assert messages[0].endswith("failed (HTTP 503); the run goes on, retrying")
    assert messages[1].endswith("answers again") and len(messages) == 2
    queue = [float(row["value"]) for row in rows if row["metric"] == "embed_queue_requests"]
    assert queue[:4] == [0.0, 1.0, 2.0, 8.0]  # what each answering scrape said, in order
    times = [float(row["time"]) for row in rows]
    assert times == sorted(times) and began <= times[0] and times[-1] <= ended
    assert not [row for row in rows if row["metric"].endswith("_bucket")]


def test_stop_returns_while_the_endpoint_hangs(tmp_path: Path, spawn: None) -> None:
    """A run must never wait long on its sampler: stop() returns within the scrape timeout."""
    with text_server(lambda number: (200, BODY.format(queue=0), 30.0)) as url:
        sampler = ServerMetricsSampler(url, tmp_path / "m.csv", interval_s=1.0, timeout_s=0.5).start()
        time.sleep(0.2)
        began = time.monotonic()
        summary = sampler.stop()
        assert time.monotonic() - began < 2.0
    assert summary.failed == summary.scrapes == 1
