"""The study's metrics, per cell and per run, as pure functions over loaded run data.

What Locust's CSVs can and cannot say shapes these definitions (locust/stats.py, 2.4x):

- ``Request Count`` counts every completed request, failed ones included; successes are
  ``Request Count - Failure Count``.
- Response times (mean, median, percentiles) also cover failed requests: Locust logs the time of
  every request before it logs the error. The study measured the same way (its self-hosted
  "standard" setup lists response times for cells where every request failed), and its normalized
  latency (latency / success rate) is what penalises a fast failure.
- ``Average Content Size`` is ``sum(response_length) / Request Count`` over all requests. The Locust
  side reports tokens embedded as ``response_length`` and 0 for a failed request (it embedded
  nothing), so ``Average Content Size x Request Count`` is the cell's successful tokens and
  tokens per successful request is that sum divided by the successes.
- ``Requests/s`` divides by the time from the start of the whole run to the cell's last request, so
  it is the cell's own rate only for a one-cell run: cells are timed by ``cells.csv`` instead and
  Locust's figure is only the fallback.

With per-request records (``requests.csv.gz``) none of this guessing is needed: counts, exact
latencies (all requests and successful ones), tokens and time splits come from the records
(``record_cells``), and Locust's CSVs only fill in for runs that have no records.

A cell's duration is ``cells.csv`` end - start: GridShape records the start when it spawns the
cell's users (before their warm-up requests) and the end when the last user is done, so the window
slightly understates a cell's steady-state rate; it is the same window for every run compared.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from embed_bench.core.contract import Cell, parse_cell_name
from reports.errors import ReportError
from reports.load.records import RECORDS_FILE, Records
from reports.load.runs import STATS_FILE, RunData
from reports.metrics.record_cells import RecordCell, Timeline, record_cells, timeline
from reports.metrics.record_counts import count_alerts
from reports.metrics.records import LatencyDistribution, MeanCI, PeakWindow, TimeSplit
from reports.metrics.token_counts import CLIENT, COUNTS, SERVER, TokenCountCheck, token_count_check

# How a cell's duration was found, from the most to the least exact.
TIMED_BY_CELLS = "cells.csv start and end"
TIMED_TO_LAST_WRITE = "cells.csv start to Locust's last stats write (cell interrupted)"
TIMED_BY_LOCUST_RATE = (
    "Locust's Requests/s (no cells.csv row): from the run's start to the cell's last request"
)
UNTIMED = "no end (cell interrupted, no stats history)"
LATENCY_FROM_RECORDS = f"exact, from {RECORDS_FILE}"
LATENCY_FROM_LOCUST = "Locust's CSV (percentiles rounded to two significant digits)"


@dataclass(frozen=True)
class CellMetrics:
    """One grid cell of one run. Latencies cover all completed requests (see module docstring)."""

    cell: str
    concurrency: int
    batch_size: int
    passage_tokens: int
    request_count: int
    success_count: int
    failure_count: int
    success_rate_pct: float
    mean_latency_ms: float
    median_latency_ms: float | None
    p95_latency_ms: float | None
    p99_latency_ms: float | None
    normalized_latency_ms: float | None
    study_request_throughput_rps: float | None
    measured_request_throughput_rps: float | None
    successful_tokens: float
    tokens_per_request: float | None
    nominal_tokens_per_request: int
    throughput_tokens_per_s: float | None
    duration_s: float | None
    timed_by: str
    latency_source: str = LATENCY_FROM_LOCUST
    latency_all: LatencyDistribution | None = None  # records only: every measured request
    latency_ok: LatencyDistribution | None = None  # records only: successful requests
    time_split: TimeSplit | None = None
    planned: int | None = None  # cells.csv, where the run wrote it
    completed: int | None = None
    dropped_count: int = 0  # open loop: requests never sent
    repeats: dict[str, MeanCI] | None = None  # figure key -> mean and 95% CI over repeats

    @property
    def short(self) -> bool:
        """Whether the cell completed fewer requests than it planned."""
        return self.planned is not None and self.completed is not None and self.completed < self.planned

    @property
    def key(self) -> Cell:
        return Cell(
            concurrency=self.concurrency, batch_size=self.batch_size, passage_tokens=self.passage_tokens
        )


@dataclass(frozen=True)
class RunMetrics:
    """One run, summarised the way the study's headline and split tables are."""

    label: str
    directory: str
    info: dict[str, Any]
    cells: tuple[CellMetrics, ...]
    request_count: int
    success_count: int
    success_rate_pct: float
    success_rate_by_batch_size_pct: dict[int, float]
    success_rate_by_concurrency_pct: dict[int, float]
    success_rate_by_passage_tokens_pct: dict[int, float]
    mean_latency_ms: float
    normalized_latency_ms: float
    mean_throughput_tokens_per_s: float | None
    overall_throughput_tokens_per_s: float | None
    peak_throughput_tokens_per_s: float | None
    peak_cell: str | None
    failures: tuple[tuple[str, str, int], ...]
    notes: tuple[str, ...]
    token_count: str = CLIENT
    latency_source: str = LATENCY_FROM_LOCUST
    timeline: Timeline | None = None
    token_check: TokenCountCheck | None = None
    repeats: int = 1
    partial: tuple[str, ...] = ()  # why the run is incomplete; empty for a complete run
    latencies_ms: dict[str, np.ndarray] | None = None  # records only: every measured latency, by cell

    @property
    def peak_window(self) -> PeakWindow | None:
        return self.timeline.peak if self.timeline else None

    @property
    def peak_or_best_cell_tokens_per_s(self) -> float | None:
        """The true peak (best sustained window) where records give one, else the best cell."""
        return self.peak_window.tokens_per_s if self.peak_window else self.peak_throughput_tokens_per_s

    def cell(self, key: Cell) -> CellMetrics | None:
        return next((cell for cell in self.cells if cell.key == key), None)


def success_rate_pct(success_count: int, request_count: int) -> float:
    """Successful requests / all completed requests, in percent."""
    return 100.0 * success_count / request_count


def normalized_latency_ms(latency_ms: float, success_pct: float) -> float | None:
    """Latency / success rate: the study's penalty for failures; None when nothing succeeded."""
    return latency_ms / (success_pct / 100.0) if success_pct > 0 else None


def study_request_throughput_rps(concurrency: int, mean_latency_ms: float) -> float | None:
    """The study's request throughput: concurrency / mean response time in seconds (Little's law
    for users that send back to back)."""
    return concurrency / (mean_latency_ms / 1000.0) if mean_latency_ms > 0 else None


def successful_tokens(avg_content_size: float, request_count: int) -> float:
    """Tokens embedded by a cell's successful requests (failed requests report 0 tokens)."""
    return avg_content_size * request_count


def cell_timing(
    name: str,
    request_count: int,
    locust_requests_per_s: float,
    cells: pd.DataFrame | None,
    last_stats_write_s: float | None,
) -> tuple[float | None, str]:
    """A cell's duration in seconds and how it was found (one of the ``TIMED_*`` / ``UNTIMED``)."""
    if cells is not None and name in cells.index:
        start, end = cells.at[name, "start_s"], cells.at[name, "end_s"]
        if pd.notna(end):
            return _positive(end - start), TIMED_BY_CELLS
        if last_stats_write_s is not None:
            return _positive(last_stats_write_s - start), TIMED_TO_LAST_WRITE
        return None, UNTIMED
    rate = locust_requests_per_s if pd.notna(locust_requests_per_s) else 0.0
    return (request_count / rate if rate > 0 else None), TIMED_BY_LOCUST_RATE


def _positive(seconds: float) -> float | None:
    return float(seconds) if pd.notna(seconds) and seconds > 0 else None


def _optional(value: float) -> float | None:
    return None if pd.isna(value) else float(value)


def cell_metrics(row: Any, duration_s: float | None, timed_by: str, count: str = CLIENT) -> CellMetrics:
    """Metrics of one ``RunData.stats`` row (an ``itertuples`` record). The client count is the
    nominal batch x passage tokens per successful request; the server count is Locust's Average
    Content Size (the Locust side reports the server's usage there, where there is one)."""
    success_count = row.request_count - row.failure_count
    success_pct = success_rate_pct(success_count, row.request_count)
    cell = Cell(concurrency=row.concurrency, batch_size=row.batch_size, passage_tokens=row.passage_tokens)
    if count == SERVER:
        size = 0.0 if pd.isna(row.avg_content_size) else row.avg_content_size
        tokens = successful_tokens(size, row.request_count)
    else:
        tokens = float(cell.nominal_tokens_per_request * success_count)
    return CellMetrics(
        cell=cell.name,
        concurrency=cell.concurrency,
        batch_size=cell.batch_size,
        passage_tokens=cell.passage_tokens,
        request_count=row.request_count,
        success_count=success_count,
        failure_count=row.failure_count,
        success_rate_pct=success_pct,
        mean_latency_ms=float(row.mean_latency_ms),
        median_latency_ms=_optional(row.median_latency_ms),
        p95_latency_ms=_optional(row.p95_latency_ms),
        p99_latency_ms=_optional(row.p99_latency_ms),
        normalized_latency_ms=normalized_latency_ms(row.mean_latency_ms, success_pct),
        study_request_throughput_rps=study_request_throughput_rps(cell.concurrency, row.mean_latency_ms),
        measured_request_throughput_rps=row.request_count / duration_s if duration_s else None,
        successful_tokens=tokens,
        tokens_per_request=tokens / success_count if success_count else None,
        nominal_tokens_per_request=cell.nominal_tokens_per_request,
        throughput_tokens_per_s=tokens / duration_s if duration_s else None,
        duration_s=duration_s,
        timed_by=timed_by,
    )


def success_rate_by(
    cells: Iterable[CellMetrics], dimension: Callable[[CellMetrics], int]
) -> dict[int, float]:
    """Success rate per value of one dimension, pooled: successes / requests over those cells."""
    successes: dict[int, int] = defaultdict(int)
    requests: dict[int, int] = defaultdict(int)
    for cell in cells:
        successes[dimension(cell)] += cell.success_count
        requests[dimension(cell)] += cell.request_count
    return {value: success_rate_pct(successes[value], requests[value]) for value in sorted(requests)}


def throughput_summary(cells: Iterable[CellMetrics]) -> tuple[float | None, float | None, CellMetrics | None]:
    """(mean over timed cells of per-cell token throughput, all successful tokens / total timed
    duration, the timed cell with the highest token throughput)."""
    timed = [cell for cell in cells if cell.throughput_tokens_per_s is not None and cell.duration_s]
    if not timed:
        return None, None, None
    mean = statistics.fmean(cell.throughput_tokens_per_s for cell in timed)
    overall = sum(cell.successful_tokens for cell in timed) / sum(cell.duration_s for cell in timed)
    return mean, overall, max(timed, key=lambda cell: cell.throughput_tokens_per_s)


def top_failures(run: RunData, limit: int | None = None) -> tuple[tuple[str, str, int], ...]:
    """(cell, error, occurrences), most frequent first."""
    ranked = run.failures.sort_values(["occurrences", "name"], ascending=[False, True], kind="stable")
    rows = ranked.head(limit) if limit else ranked
    return tuple((row.name, row.error, int(row.occurrences)) for row in rows.itertuples())


def _timing_notes(cells: Iterable[CellMetrics]) -> list[str]:
    by_source: dict[str, list[str]] = defaultdict(list)
    for cell in cells:
        if cell.timed_by != TIMED_BY_CELLS:
            by_source[cell.timed_by].append(cell.cell)
    return [f"timed by {source}: {', '.join(names)}" for source, names in by_source.items()]


def _expected_cells(run: RunData) -> set[Cell]:
    """Cells the run planned (run.json ``cells``) or started (cells.csv)."""
    planned = run.info.get("cells") or []
    started = list(run.cells.index) if run.cells is not None else []
    return {cell for cell in map(parse_cell_name, [*map(str, planned), *started]) if cell is not None}


def _no_success_message(run: RunData, request_count: int, failures: Sequence[tuple[str, str, int]]) -> str:
    failures = failures[:3]
    listed = "; ".join(f"{error} ({count}x in {name})" for name, error, count in failures)
    reason = f" Most frequent failures: {listed}." if listed else ""
    return (
        f"run {run.label!r} ({run.directory}): none of its {request_count} measured requests succeeded, so it has "
        f"no latency or throughput to report.{reason}"
    )


def _from_record(cell: RecordCell) -> CellMetrics:
    """A cell computed from its records: the study's figures (latency over all requests) exact."""
    key = parse_cell_name(cell.cell)
    assert key is not None  # records.py keeps grid cells only
    success_pct = success_rate_pct(cell.success_count, cell.request_count) if cell.request_count else 0.0
    mean = cell.latency_all.mean_ms
    return CellMetrics(
        cell=cell.cell,
        concurrency=key.concurrency,
        batch_size=key.batch_size,
        passage_tokens=key.passage_tokens,
        request_count=cell.request_count,
        success_count=cell.success_count,
        failure_count=cell.request_count - cell.success_count,
        success_rate_pct=success_pct,
        mean_latency_ms=mean if mean is not None else float("nan"),
        median_latency_ms=cell.latency_all.p50_ms,
        p95_latency_ms=cell.latency_all.p95_ms,
        p99_latency_ms=cell.latency_all.p99_ms,
        normalized_latency_ms=normalized_latency_ms(mean, success_pct) if mean is not None else None,
        study_request_throughput_rps=study_request_throughput_rps(key.concurrency, mean) if mean else None,
        measured_request_throughput_rps=cell.request_count / cell.duration_s if cell.duration_s else None,
        successful_tokens=cell.successful_tokens,
        tokens_per_request=cell.successful_tokens / cell.success_count if cell.success_count else None,
        nominal_tokens_per_request=key.nominal_tokens_per_request,
        throughput_tokens_per_s=cell.successful_tokens / cell.duration_s if cell.duration_s else None,
        duration_s=cell.duration_s,
        timed_by=cell.timed_by,
        latency_source=LATENCY_FROM_RECORDS,
        latency_all=cell.latency_all,
        latency_ok=cell.latency_ok,
        time_split=cell.time_split,
        planned=cell.planned,
        completed=cell.completed,
        dropped_count=cell.dropped_count,
        repeats=cell.repeats,
    )


def _csv_cells(run: RunData, count: str) -> tuple[CellMetrics, ...]:
    """Cells from Locust's CSVs, with cells.csv's planned / completed counts where it has them."""
    counts: dict[str, tuple[int | None, int | None]] = {}
    for window in run.windows:
        planned, completed = counts.get(window.cell, (None, None))
        counts[window.cell] = (
            _add(planned, window.planned),
            _add(completed, window.completed),
        )
    cells = []
    for row in run.stats.itertuples(index=False):
        timing = cell_timing(
            row.name, row.request_count, row.locust_requests_per_s, run.cells, run.last_stats_write_s
        )
        planned, completed = counts.get(row.name, (None, None))
        cells.append(replace(cell_metrics(row, *timing, count), planned=planned, completed=completed))
    return tuple(cells)


def _add(total: int | None, value: int | None) -> int | None:
    return value if total is None else total if value is None else total + value


def _record_failures(measured: pd.DataFrame) -> tuple[tuple[str, str, int], ...]:
    failed = measured[~measured["ok"]]
    counts = failed.groupby(["cell", "failure"]).size().reset_index(name="occurrences")
    ranked = counts.sort_values(["occurrences", "cell"], ascending=[False, True], kind="stable")
    return tuple((row.cell, row.failure or "(no class)", int(row.occurrences)) for row in ranked.itertuples())


def _partial(run: RunData, cells: Sequence[CellMetrics], never_measured: Sequence[Cell]) -> list[str]:
    """Why a run is incomplete, one short phrase each; empty for a complete run."""
    reasons = []
    status = run.info.get("status")
    if status not in (None, "completed"):
        reasons.append(f"run.json status {status!r}")
    elif "ended_at" in run.info and run.info["ended_at"] is None:
        reasons.append("run.json has no end")
    unended = sorted({window.cell for window in run.windows if window.end_s is None})
    if unended:
        reasons.append(f"cell(s) never ended: {', '.join(unended)}")
    reasons += [
        f"{cell.cell} completed {cell.completed}/{cell.planned} requests" for cell in cells if cell.short
    ]
    if never_measured:
        reasons.append(
            f"cell(s) with no request on record: {', '.join(cell.name for cell in never_measured)}"
        )
    rows = run.records.frame if run.records is not None else None
    return reasons + count_alerts(rows, run.windows)


@dataclass(frozen=True)
class _Measured:
    """A run's cells as one source gives them -- the per-request records or, for a run without
    them, Locust's CSVs -- with what that source adds: notes, the failures ranked, and the figures
    only records can give. ``run_metrics`` then summarises either source the same way."""

    cells: tuple[CellMetrics, ...]
    notes: tuple[str, ...]
    failures: tuple[tuple[str, str, int], ...]
    latency_source: str = LATENCY_FROM_LOCUST
    timeline: Timeline | None = None
    token_check: TokenCountCheck | None = None
    repeats: int = 1
    latencies_ms: dict[str, np.ndarray] | None = None


def run_metrics(run: RunData, count_tokens: str = CLIENT) -> RunMetrics:
    """Per-cell and per-run metrics, from the records where the run has them, else from Locust's
    CSVs; tokens under ``count_tokens`` (client or server). Raises ReportError when the run has no
    successful request."""
    if count_tokens not in COUNTS:
        raise ReportError(f"unknown token count {count_tokens!r}; choose one of {', '.join(COUNTS)}")
    records = run.records if run.records is not None and len(run.records.measured) else None
    if records is not None:
        measured = _measured_by_records(run, records, count_tokens)
    else:
        measured = _measured_by_locust(run, count_tokens)
    _refuse_unmeasured(run, measured)
    return _summarise(run, measured, count_tokens)


def _measured_by_records(run: RunData, records: Records, count_tokens: str) -> _Measured:
    """The cells computed from the records: exact latencies, the run's timeline and token check,
    failures by class, and every measured latency for the per-cell distributions. Arrivals an open
    loop never sent are counted in a note, since they appear in no figure."""
    run_timeline = timeline(records, run.windows, count_tokens)
    cells = tuple(
        _from_record(cell) for cell in record_cells(records, run.windows, run_timeline.spans, count_tokens)
    )
    notes = [*records.notes, f"latencies and percentiles are exact, from {RECORDS_FILE}"]
    failures = _record_failures(records.measured)
    check = token_count_check(records.measured)
    dropped = sum(cell.dropped_count for cell in cells)
    if dropped:
        notes.append(f"{dropped} request(s) were due but never sent (no free user): not in any figure")
    return _Measured(
        cells=cells,
        notes=tuple(notes),
        failures=failures,
        latency_source=LATENCY_FROM_RECORDS,
        timeline=run_timeline,
        token_check=check,
        repeats=records.repeats,
        latencies_ms={
            cell: rows.to_numpy(dtype=float) for cell, rows in records.measured.groupby("cell")["latency_ms"]
        },
    )


def _measured_by_locust(run: RunData, count_tokens: str) -> _Measured:
    """The cells of a run from before per-request records, from Locust's CSVs; the note says the
    latencies are Locust's rounded ones, so nobody reads them as exact."""
    failures = top_failures(run)
    cells = _csv_cells(run, count_tokens)
    lost = run.info.get("records_lost")
    why = (
        f"the run could not write its records, run.json records_lost {lost}"
        if lost
        else "a run from before per-request records"
    )
    note = (
        f"no {RECORDS_FILE} ({why}): latencies are Locust's, its percentiles rounded to two "
        "significant digits"
    )
    return _Measured(cells=cells, notes=(note,), failures=failures)


def _refuse_unmeasured(run: RunData, measured: _Measured) -> None:
    """A run without a measured request, or without a successful one, has no latency or throughput
    to report: raise ReportError saying so (with its most frequent failures) rather than report
    a column of blanks."""
    if not measured.cells:
        raise ReportError(
            f"run {run.label!r} ({run.directory}): {STATS_FILE} holds no measured request "
            "(warm-up and Aggregated rows do not count)"
        )
    if sum(cell.success_count for cell in measured.cells) == 0:
        request_count = sum(cell.request_count for cell in measured.cells)
        raise ReportError(_no_success_message(run, request_count, measured.failures))


def _summarise(run: RunData, measured: _Measured, count_tokens: str) -> RunMetrics:
    """The run's figures over its cells, pooled the study's way, with the run's notes and the
    reasons it is partial (cells planned but never measured among them)."""
    cells = measured.cells
    request_count = sum(cell.request_count for cell in cells)
    success_count = sum(cell.success_count for cell in cells)
    success_pct = success_rate_pct(success_count, request_count)
    mean_latency = statistics.fmean(cell.mean_latency_ms for cell in cells)
    mean_throughput, overall_throughput, peak = throughput_summary(cells)
    never_measured = sorted(_expected_cells(run) - {cell.key for cell in cells})
    return RunMetrics(
        label=run.label,
        directory=str(run.directory),
        info=run.info,
        cells=cells,
        request_count=request_count,
        success_count=success_count,
        success_rate_pct=success_pct,
        success_rate_by_batch_size_pct=success_rate_by(cells, lambda cell: cell.batch_size),
        success_rate_by_concurrency_pct=success_rate_by(cells, lambda cell: cell.concurrency),
        success_rate_by_passage_tokens_pct=success_rate_by(cells, lambda cell: cell.passage_tokens),
        mean_latency_ms=mean_latency,
        normalized_latency_ms=normalized_latency_ms(mean_latency, success_pct),
        mean_throughput_tokens_per_s=mean_throughput,
        overall_throughput_tokens_per_s=overall_throughput,
        peak_throughput_tokens_per_s=peak.throughput_tokens_per_s if peak else None,
        peak_cell=peak.cell if peak else None,
        failures=measured.failures,
        notes=_run_notes(run, measured, never_measured),
        token_count=count_tokens,
        latency_source=measured.latency_source,
        timeline=measured.timeline,
        token_check=measured.token_check,
        repeats=measured.repeats,
        partial=tuple(_partial(run, cells, never_measured)),
        latencies_ms=measured.latencies_ms,
    )


def _run_notes(run: RunData, measured: _Measured, never_measured: Sequence[Cell]) -> tuple[str, ...]:
    """What a reader should know about the figures: the loader's notes, the source's, cells not
    timed by cells.csv, and planned cells without any recorded request."""
    notes = [*run.notes, *measured.notes, *_timing_notes(measured.cells)]
    if never_measured:
        notes.append(
            f"grid cells without any recorded request: {', '.join(cell.name for cell in never_measured)}"
        )
    return tuple(notes)
