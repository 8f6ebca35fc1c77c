"""Samples a target's Prometheus endpoint while a run goes on, into ``server_metrics.csv``.

The client's figures say what happened; the server's say why (what waited, how full each forward
pass was, how busy the CPU and the GPU were). A background thread of the ``embed-bench run`` process
-- not a Locust process, so the load generator's event loop never waits on it -- fetches the endpoint
about once a second and appends every sample to the run directory in long format (``time``,
``metric``, ``labels``, ``value``): one row per series per scrape, any endpoint's series as they come.

- Parsing is prometheus-client's own text parser (``text_string_to_metric_families``), the format's
  reference implementation, so labels with escapes, histograms and any exporter's output read right.
- Histogram buckets are left out: a mean per interval needs only ``_sum`` and ``_count``, and the
  buckets would be most of the file. Everything else is kept.
- Memory stays bounded: each scrape's rows go to the file at once; an answer over ``max_bytes`` is
  an error, not a buffer.
- A scrape that fails (nothing listens, a timeout, an HTTP error, a body that does not parse) is a
  row ``up`` = 0 whose labels name the error; the run goes on and the next scrape tries again. A
  scrape that answers writes ``up`` = 1 and ``scrape_duration_seconds``, as Prometheus itself does.

Times are wall-clock epoch seconds, as in ``cells.csv`` and the request records, taken when the
answer arrived.
"""

from __future__ import annotations

import csv
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

SERVER_METRICS_COLUMNS = ("time", "metric", "labels", "value")
UP = "up"  # 1: the scrape answered; 0: it failed, its labels say why
SCRAPE_SECONDS = "scrape_duration_seconds"
DEFAULT_INTERVAL_S = 1.0
MAX_BYTES = 8_000_000
_SKIPPED_SUFFIXES = ("_bucket", "_created")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


class ScrapeError(Exception):
    """An endpoint that did not give parseable Prometheus text."""


def format_labels(labels: Mapping[str, str]) -> str:
    """Labels as PromQL writes them, sorted, without braces: ``gpu="0",gpu_name="NVIDIA H200"``."""

    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return ",".join(f'{name}="{escape(str(labels[name]))}"' for name in sorted(labels))


def parse_labels(text: str) -> dict[str, str]:
    """The inverse of :func:`format_labels` (an empty string: no labels)."""

    def unescape(value: str) -> str:
        return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)

    return {name: unescape(value) for name, value in _LABEL.findall(text or "")}


def parse_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of a Prometheus text body except histogram buckets: (name, labels, value)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        return [
            (sample.name, dict(sample.labels), float(sample.value))
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if not sample.name.endswith(_SKIPPED_SUFFIXES)
        ]
    except ValueError as error:  # the parser's only complaint about a malformed body
        raise ScrapeError(f"not Prometheus text ({error})") from None


def fetch(url: str, timeout_s: float, max_bytes: int = MAX_BYTES) -> str:
    """The endpoint's body as text; ScrapeError naming the failure (status, refusal, timeout, size)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = response.read(max_bytes + 1)
    except urllib.error.HTTPError as error:
        raise ScrapeError(f"HTTP {error.code}") from None
    except urllib.error.URLError as error:
        raise ScrapeError(str(error.reason)) from None
    except (OSError, ValueError) as error:  # a timeout mid-body, a reset, a bad URL
        raise ScrapeError(str(error) or type(error).__name__) from None
    if len(body) > max_bytes:
        raise ScrapeError(f"answer over {max_bytes:,} bytes")
    return body.decode("utf-8", errors="replace")


@dataclass
class SamplerSummary:
    """What run.json records about the sampling: where, how often, how many scrapes, how many failed."""

    url: str
    interval_s: float
    scrapes: int = 0
    failed: int = 0
    first_error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class ServerMetricsSampler:
    """A daemon thread that scrapes ``url`` every ``interval_s`` into ``path`` until :meth:`stop`.

    ``on_error`` hears the first failure and the first success after failures (for the console);
    ``clock`` gives the timestamps (epoch seconds)."""

    def __init__(
        self,
        url: str,
        path: Path,
        interval_s: float = DEFAULT_INTERVAL_S,
        *,
        timeout_s: float | None = None,
        max_bytes: int = MAX_BYTES,
        on_error: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.path = path
        self.interval_s = interval_s
        self.timeout_s = timeout_s if timeout_s is not None else max(1.0, interval_s)
        self.max_bytes = max_bytes
        self.on_error = on_error or (lambda message: None)
        self.clock = clock
        self.summary = SamplerSummary(url, interval_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> ServerMetricsSampler:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="", encoding="utf-8") as stream:
            csv.writer(stream).writerow(SERVER_METRICS_COLUMNS)
        self._thread = threading.Thread(target=self._run, name="server-metrics", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> SamplerSummary:
        """Stop after the scrape under way (if any) and return the summary; idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 5)
        return self.summary

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            self.scrape_once()
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - began)))

    def scrape_once(self) -> None:
        """One scrape: its rows appended to the file, the summary and the console told."""
        began = time.monotonic()
        try:
            samples = parse_samples(fetch(self.url, self.timeout_s, self.max_bytes))
        except ScrapeError as error:
            self._failed(str(error))
            return
        now = self.clock()
        rows: list[tuple[object, ...]] = [
            (now, UP, "", 1),
            (now, SCRAPE_SECONDS, "", round(time.monotonic() - began, 6)),
        ]
        rows += [(now, name, format_labels(labels), value) for name, labels, value in samples]
        self._append(rows)
        self.summary.scrapes += 1
        if self._failing:
            self._failing = False
            self.on_error(f"server metrics: {self.url} answers again")

    def _failed(self, message: str) -> None:
        self._append([(self.clock(), UP, format_labels({"error": message}), 0)])
        self.summary.scrapes += 1
        self.summary.failed += 1
        if self.summary.first_error is None:
            self.summary.first_error = message
        if not self._failing:
            self._failing = True
            self.on_error(f"server metrics: {self.url} failed ({message}); the run goes on, retrying")

    def _append(self, rows: Iterable[tuple[object, ...]]) -> None:
        try:
            with open(self.path, "a", newline="", encoding="utf-8") as stream:
                csv.writer(stream).writerows(rows)
        except OSError as error:  # a full disk ends the sampling, never the run
            self.summary.first_error = self.summary.first_error or f"cannot write {self.path}: {error}"
            self._stop.set()
