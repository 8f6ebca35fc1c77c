"""The series the target server exports on ``GET /metrics``, kept by ``prometheus-client``.

Each app gets its own :class:`~prometheus_client.CollectorRegistry` (never the process-wide default),
so several apps in one process -- tests, one per GPU -- keep separate counts and never clash.
Gauges are callbacks read at scrape time, so they cannot drift from the batcher's real state.

What explains a saturated server is here: how much waits (``embed_queue_requests``,
``embed_queue_tokens``, ``embed_queue_depth``), how full each forward pass is (inputs, requests, real
and padded tokens per pass) and how long it takes, how busy the process is (``process_*``: CPU
seconds, memory, from prometheus-client's ``ProcessCollector``) and, on a GPU, how busy the device is
(``embed_gpu_*``, ``target_server.gpu_metrics``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    start_wsgi_server,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

log = logging.getLogger("target_server.metrics")

# The text format generate_latest writes (newer clients call it CONTENT_TYPE_PLAIN_0_0_4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# No ``*_created`` series: in the text format each is an extra gauge family per counter and
# histogram, and a server whose counters start with its process has nothing to say there.
disable_created_metrics()


def _powers_of_two(limit: int) -> list[float]:
    return [float(2**i) for i in range(limit.bit_length() + 1)]


def _milliseconds_doubling(count: int) -> list[float]:
    return [0.001 * 2**i for i in range(count)]


class ServerMetrics:
    """Counters and histograms updated by the batcher and routes; gauges added by the batcher."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        # process_cpu_seconds_total, process_resident_memory_bytes, ...: of the process that serves
        # this registry, the one that holds the model (read from /proc at scrape time): the gunicorn
        # worker, or with serve --frontends N the model process (the front ends' are not in them).
        ProcessCollector(registry=registry)
        self.requests = Counter(
            "embed_requests_total", "HTTP requests answered", ("endpoint", "status"), registry=registry
        )
        self.inputs = Counter("embed_inputs_total", "Inputs embedded", registry=registry)
        self.tokens = Counter(
            "embed_tokens_total", "Tokens embedded (special tokens included)", registry=registry
        )
        self.rejections = Counter(
            "embed_admission_rejections_total",
            "Requests answered 429 by admission control",
            registry=registry,
        )
        self.oom_splits = Counter(
            "embed_oom_splits_total",
            "Batches split in half after an out-of-memory error",
            registry=registry,
        )
        self.oom_failures = Counter(
            "embed_oom_failures_total", "Single inputs that failed even alone", registry=registry
        )
        self.batch_size = Histogram(
            "embed_batch_size", "Inputs per forward pass", buckets=_powers_of_two(4096), registry=registry
        )
        self.batch_tokens = Histogram(
            "embed_batch_padded_tokens",
            "Tokens a forward pass computed on: longest x rows, or only the real ones when packed (--attention)",
            buckets=_powers_of_two(1 << 20),
            registry=registry,
        )
        self.batch_real_tokens = Histogram(
            "embed_batch_tokens",
            "Real tokens per forward pass (padding excluded)",
            buckets=_powers_of_two(1 << 20),
            registry=registry,
        )
        self.batch_requests = Histogram(
            "embed_batch_requests",
            "Requests with inputs in a forward pass",
            buckets=_powers_of_two(4096),
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "embed_batch_seconds", "Forward pass time", buckets=_milliseconds_doubling(17), registry=registry
        )
        self.request_seconds = Histogram(
            "embed_request_seconds",
            "Time from admission to answer",
            buckets=_milliseconds_doubling(18),
            registry=registry,
        )

    def gauge(self, name: str, help_: str, read: Callable[[], float]) -> None:
        """A gauge whose value is ``read()`` at scrape time."""
        Gauge(name, help_, registry=self.registry).set_function(read)

    def collector(self, collector: Collector) -> None:
        """A collector read at scrape time (the GPU's, ``target_server.gpu_metrics``)."""
        self.registry.register(collector)

    def value(self, name: str, **labels: str) -> float:
        """One sample's current value (0 before its first update), e.g. ``value("embed_oom_splits_total")``."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def render(self) -> bytes:
        return generate_latest(self.registry)


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> int:
    """``/metrics`` on a listener of its own (prometheus-client's, a daemon thread): the request
    threads may all be busy with queued work exactly when a scrape matters most. Returns its port
    (``port`` 0: any free one)."""
    server, _thread = start_wsgi_server(port, addr=host, registry=registry)
    log.info("metrics also on %s:%d/metrics", host, server.server_port)
    return server.server_port
