"""Writes realistic run directories: Locust's own CSV layouts, run.json and cells.csv.

The layouts follow locust/stats.py (2.4x): ``Request Count`` includes failures, ``Average Content
Size`` is sum(response_length) / all requests (failures report 0 tokens), ``Requests/s`` divides by
the time from the run's start to the entry's last request, percentiles are rounded to about two
significant digits, lines end in CRLF (Python's csv writer), and the last row is ``Aggregated``.

``study_cells`` turns one of the study's per-cell latency tables (the package's copy) into cells of
5 x concurrency requests each, as the study repeated every cell five times; users send back to
back, so a cell lasts five mean response times.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

PERCENTILES = (0.5, 0.66, 0.75, 0.8, 0.9, 0.95, 0.98, 0.99, 0.999, 0.9999, 1.0)
PERCENTILE_TITLES = ("50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%")
STATS_HEADER = (
    "Type",
    "Name",
    "Request Count",
    "Failure Count",
    "Median Response Time",
    "Average Response Time",
    "Min Response Time",
    "Max Response Time",
    "Average Content Size",
    "Requests/s",
    "Failures/s",
    *PERCENTILE_TITLES,
)
HISTORY_HEADER = (
    "Timestamp",
    "User Count",
    "Type",
    "Name",
    "Requests/s",
    "Failures/s",
    *PERCENTILE_TITLES,
    "Total Request Count",
    "Total Failure Count",
    "Total Median Response Time",
    "Total Average Response Time",
    "Total Min Response Time",
    "Total Max Response Time",
    "Total Average Content Size",
)
FAILURES_HEADER_OLD = ("Method", "Name", "Error", "Occurrences")
FAILURES_HEADER_NEW = (*FAILURES_HEADER_OLD, "First Seen", "Last Seen")
RUN_START_S = 1_750_000_000.0
WARMUP_S = 2.0
GAP_S = 1.0
REPEATS = 5  # the study ran every cell five times

# The study's per-cell latency tables: system -> (file in reports/data, column prefix).
STUDY_LATENCY = {
    "jina_api": ("study_latency_jina_api.csv", ""),
    "sagemaker": ("study_latency_sagemaker.csv", ""),
    "self_hosted_standard": ("study_latency_self_hosted.csv", "standard_"),
    "self_hosted_dynamic_batching": ("study_latency_self_hosted.csv", "dynamic_batching_"),
}
OOM_ERROR = "HTTP 500 CUDA out of memory"


@dataclass(frozen=True)
class CellSpec:
    """One cell to write. ``tokens_per_request`` defaults to batch x passage tokens."""

    batch_size: int
    passage_tokens: int
    concurrency: int
    mean_latency_ms: float
    requests: int
    failures: int = 0
    error: str = OOM_ERROR
    tokens_per_request: int | None = None

    @property
    def name(self) -> str:
        return f"b={self.batch_size} t={self.passage_tokens} c={self.concurrency}"

    @property
    def duration_s(self) -> float:
        """Users send back to back: each does requests / concurrency requests of mean latency."""
        return self.requests / self.concurrency * self.mean_latency_ms / 1000

    @property
    def tokens(self) -> int:
        return (
            self.tokens_per_request
            if self.tokens_per_request is not None
            else self.batch_size * self.passage_tokens
        )

    @property
    def successful_tokens(self) -> int:
        return self.tokens * (self.requests - self.failures)


@dataclass
class RunLayout:
    """How a run directory deviates from a clean ``embed-bench run``."""

    failures_layout: str = "new"  # "new": with First/Last Seen (Locust >= 2.44); "old": without
    write_cells_csv: bool = True
    write_run_json: bool = True
    write_history: bool = True
    interrupted: bool = False  # Locust killed in the last cell: no end, cut-off last lines
    warmup_requests: int = 3
    extra_names: Sequence[str] = field(default_factory=tuple)  # foreign request names (e.g. a health check)


def bucket(response_time: float) -> int:
    """Locust's bucket_response_time: about two significant digits."""
    if response_time < 100:
        return round(response_time)
    digits = -1 if response_time < 1000 else -2 if response_time < 10000 else -3
    return int(round(response_time, digits))


def response_times(mean_ms: float, count: int) -> list[float]:
    """``count`` times spread +-20% around ``mean_ms``, whose mean is exactly ``mean_ms``."""
    if count == 1:
        return [mean_ms]
    return [mean_ms * (0.8 + 0.4 * index / (count - 1)) for index in range(count)]


def percentile(times: Sequence[float], fraction: float) -> int:
    ordered = sorted(times)
    return bucket(ordered[max(0, math.ceil(fraction * len(ordered)) - 1)])


def _stats_row(
    name: str, times: Sequence[float], failures: int, tokens: float, elapsed_s: float, method: str = "POST"
) -> list[object]:
    count = len(times)
    return [
        method,
        name,
        count,
        failures,
        percentile(times, 0.5),
        sum(times) / count,
        min(times),
        max(times),
        tokens / count,
        count / elapsed_s,
        failures / elapsed_s,
        *(percentile(times, p) for p in PERCENTILES),
    ]


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _cut_last_line(text: str) -> str:
    """What a killed writer leaves: the last row only half written, no newline."""
    body = text.rstrip("\r\n")
    last_start = body.rfind("\n") + 1
    return body[: last_start + (len(body) - last_start) // 2]


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _history_rows(
    timeline: Sequence[tuple[CellSpec, float, float]], all_times: Sequence[float], run_end: float
) -> list[list[object]]:
    """One Aggregated row per second, as Locust writes without --csv-full-history."""
    rows: list[list[object]] = []
    for second in range(int(RUN_START_S), int(run_end) + 1):
        done = sum(spec.requests for spec, _, end in timeline if end <= second)
        users = next((spec.concurrency for spec, start, end in timeline if start <= second <= end), 0)
        percentiles = [percentile(all_times, p) for p in PERCENTILES] if done else ["N/A"] * len(PERCENTILES)
        rate = f"{done / max(second - RUN_START_S, 1):2f}"
        rows.append([second, users, "", "Aggregated", rate, "0.000000", *percentiles, done, 0, 0, 0, 0, 0, 0])
    return rows


def write_run(
    directory: Path,
    cells: Sequence[CellSpec],
    *,
    label: str | None = None,
    backend: str = "self-hosted",
    pricing: str | None = None,
    layout: RunLayout | None = None,
) -> Path:
    """Write a run directory as ``embed-bench run`` would; returns ``directory``."""
    layout = layout or RunLayout()
    directory.mkdir(parents=True, exist_ok=True)
    clock = RUN_START_S + (WARMUP_S if layout.warmup_requests else 0.0)
    timeline = []  # (spec, start, end)
    for spec in cells:
        timeline.append((spec, clock, clock + spec.duration_s))
        clock += spec.duration_s + GAP_S
    run_end = timeline[-1][2] if timeline else clock

    rows: list[list[object]] = []
    all_times: list[float] = []
    for spec, _, end in timeline:
        times = response_times(spec.mean_latency_ms, spec.requests)
        all_times += times
        rows.append(_stats_row(spec.name, times, spec.failures, spec.successful_tokens, end - RUN_START_S))
        if layout.warmup_requests:
            warm = response_times(spec.mean_latency_ms * 1.5, layout.warmup_requests)
            rows.append(
                _stats_row(f"warmup {spec.name}", warm, 0, spec.tokens * len(warm), end - RUN_START_S)
            )
    rows += [_stats_row(name, [5.0], 0, 0, WARMUP_S, method="GET") for name in layout.extra_names]
    rows.sort(key=lambda row: str(row[1]))
    total_failures = sum(spec.failures for spec in cells)
    total_tokens = sum(spec.successful_tokens for spec in cells)
    if all_times:
        rows.append(
            _stats_row("Aggregated", all_times, total_failures, total_tokens, run_end - RUN_START_S, "")
        )
    stats = _csv_text(STATS_HEADER, rows)
    (directory / "locust_stats.csv").write_text(
        _cut_last_line(stats) if layout.interrupted else stats, newline=""
    )

    if layout.write_history:
        history = _csv_text(HISTORY_HEADER, _history_rows(timeline, all_times, run_end))
        (directory / "locust_stats_history.csv").write_text(
            _cut_last_line(history) if layout.interrupted else history, newline=""
        )

    header = FAILURES_HEADER_NEW if layout.failures_layout == "new" else FAILURES_HEADER_OLD
    failure_rows = []
    for spec, start, end in timeline:
        if spec.failures:
            seen = [_utc(start), _utc(end)] if layout.failures_layout == "new" else []
            failure_rows.append(["POST", spec.name, spec.error, spec.failures, *seen])
    failures = _csv_text(header, failure_rows)
    (directory / "locust_failures.csv").write_text(
        _cut_last_line(failures) if layout.interrupted and failure_rows else failures, newline=""
    )

    if layout.write_cells_csv:
        cell_rows = [
            [spec.name, f"{start:.3f}", f"{end:.3f}", spec.concurrency] for spec, start, end in timeline
        ]
        if layout.interrupted and cell_rows:
            cell_rows[-1][2] = ""
        (directory / "cells.csv").write_text(
            _csv_text(("cell", "start", "end", "users"), cell_rows), newline=""
        )

    if layout.write_run_json:
        info = {
            "name": directory.name,
            "label": label or directory.name,
            "backend": backend,
            "host": "http://127.0.0.1:8000",
            "model": "jinaai/jina-embeddings-v3",
            "grid": "article",
            "cells": [spec.name for spec in cells],
            "workers": 1,
            "started_at": _utc(RUN_START_S),
            "ended_at": None if layout.interrupted else _utc(run_end),
            "status": "running" if layout.interrupted else "completed",  # a killed run never rewrote it
            "pricing": pricing,
            "versions": {"locust": "2.47.0", "embed-bench": "0.1.0"},
        }
        (directory / "run.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return directory


def study_rows(system: str) -> list[dict[str, str]]:
    """The study's per-cell latency rows of one system, from the package's copy."""
    filename, _ = STUDY_LATENCY[system]
    text = (resources.files("reports") / "data" / filename).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def study_cells(system: str) -> list[CellSpec]:
    """Cells built from the study's latency table; the self-hosted standard setup fails every request
    of 32 or more passages (out of memory, as the study reports)."""
    _, prefix = STUDY_LATENCY[system]
    cells = []
    for row in study_rows(system):
        concurrency, batch = int(row["concurrency"]), int(row["batch_size"])
        requests = REPEATS * concurrency
        oom = system == "self_hosted_standard" and batch >= 32
        cells.append(
            CellSpec(
                batch_size=batch,
                passage_tokens=int(row["passage_tokens"]),
                concurrency=concurrency,
                mean_latency_ms=float(row[f"{prefix}response_time_ms"]),
                requests=requests,
                failures=requests if oom else 0,
            )
        )
    return cells


def study_throughput_rps(system: str) -> dict[str, float]:
    """The study's printed request throughput per cell name."""
    _, prefix = STUDY_LATENCY[system]
    return {
        f"b={row['batch_size']} t={row['passage_tokens']} c={row['concurrency']}": float(
            row[f"{prefix}request_throughput_rps"]
        )
        for row in study_rows(system)
    }
