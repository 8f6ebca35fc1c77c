"""A small, thread-safe Prometheus registry: counters, gauges and histograms in the text format 0.0.4.

The server needs a handful of series (requests, queue depth, batch shapes, rejections, OOM splits);
a dependency for that is more weight than it is worth.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Sequence


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    escaped = (str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for v in values)
    return "{" + ",".join(f'{n}="{v}"' for n, v in zip(names, escaped, strict=True)) + "}"


class _Metric:
    kind = ""

    def __init__(self, name: str, help_: str, labelnames: Sequence[str] = ()) -> None:
        self.name, self.help, self.labelnames = name, help_, tuple(labelnames)
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_, labelnames)
        self._values: dict[tuple[str, ...], float] = {}
        if not labelnames:
            self._values[()] = 0.0

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(self.labelnames, k)} {v:g}" for k, v in items]


class Gauge(_Metric):
    """A gauge read from a callback at scrape time, so it can never drift from the real state."""

    kind = "gauge"

    def __init__(self, name: str, help_: str, read: Callable[[], float]) -> None:
        super().__init__(name, help_)
        self._read = read

    def render(self) -> list[str]:
        return [*self.header(), f"{self.name} {self._read():g}"]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_: str, buckets: Sequence[float]) -> None:
        super().__init__(name, help_)
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * (len(self.buckets) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        with self._lock:
            self._counts[bisect.bisect_left(self.buckets, value)] += 1
            self._sum += value

    @property
    def count(self) -> int:
        with self._lock:
            return sum(self._counts)

    def render(self) -> list[str]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        lines, cumulative = self.header(), 0
        for bound, count in zip(self.buckets, counts[:-1], strict=True):
            cumulative += count
            lines.append(f'{self.name}_bucket{{le="{bound:g}"}} {cumulative}')
        cumulative += counts[-1]
        lines += [
            f'{self.name}_bucket{{le="+Inf"}} {cumulative}',
            f"{self.name}_sum {total:g}",
            f"{self.name}_count {cumulative}",
        ]
        return lines


def _powers_of_two(limit: int) -> list[float]:
    return [float(2**i) for i in range(limit.bit_length() + 1)]


class ServerMetrics:
    """The series the target server exports on ``GET /metrics``."""

    def __init__(self) -> None:
        self.requests = Counter("embed_requests_total", "HTTP requests answered", ("endpoint", "status"))
        self.inputs = Counter("embed_inputs_total", "Inputs embedded")
        self.tokens = Counter("embed_tokens_total", "Tokens embedded (special tokens included)")
        self.rejections = Counter(
            "embed_admission_rejections_total", "Requests answered 429 by admission control"
        )
        self.oom_splits = Counter(
            "embed_oom_splits_total", "Batches split in half after an out-of-memory error"
        )
        self.oom_failures = Counter("embed_oom_failures_total", "Single inputs that failed even alone")
        self.batch_size = Histogram("embed_batch_size", "Inputs per forward pass", _powers_of_two(4096))
        self.batch_tokens = Histogram(
            "embed_batch_padded_tokens", "Padded tokens per forward pass", _powers_of_two(1 << 20)
        )
        self.batch_seconds = Histogram(
            "embed_batch_seconds", "Forward pass time", [0.001 * 2**i for i in range(17)]
        )
        self.request_seconds = Histogram(
            "embed_request_seconds", "Time from admission to answer", [0.001 * 2**i for i in range(18)]
        )
        self._gauges: list[Gauge] = []

    def gauge(self, name: str, help_: str, read: Callable[[], float]) -> None:
        self._gauges.append(Gauge(name, help_, read))

    def render(self) -> str:
        metrics: list[_Metric] = [
            self.requests,
            self.inputs,
            self.tokens,
            self.rejections,
            self.oom_splits,
            self.oom_failures,
            self.batch_size,
            self.batch_tokens,
            self.batch_seconds,
            self.request_seconds,
            *self._gauges,
        ]
        return "\n".join(line for metric in metrics for line in metric.render()) + "\n"
