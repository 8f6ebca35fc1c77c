"""A run's cells and timeline computed from its per-request records.

Used by ``metrics.run_metrics`` whenever a run directory has ``requests.csv.gz``; every figure
here is exact (unrounded latencies, one row per request). A cell's window -- what its throughput
divides by -- is its ``cells.csv`` start to end, summed over its repeats; a cell or repeat without a
``cells.csv`` row (or without an end) is timed from its first record's send to its last record's
completion, warm-ups included, as ``cells.csv`` would have timed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from embed_bench.core.contract import parse_cell_name
from reports.load.records import CellWindow, Records
from reports.metrics.records import (
    LatencyDistribution,
    MeanCI,
    PeakWindow,
    TimeSplit,
    latency_distribution,
    mean_ci,
    peak_window,
    throughput_series,
    time_split,
)
from reports.metrics.token_counts import counted_tokens

TIMED_BY_WINDOWS = "cells.csv start and end"
TIMED_BY_RECORDS = "records: first send to last completion (no cells.csv end)"
REPEAT_FIGURES = (
    ("mean_latency_ms", "mean latency (ms)"),
    ("p50_latency_ms", "p50 latency (ms)"),
    ("p95_latency_ms", "p95 latency (ms)"),
    ("p99_latency_ms", "p99 latency (ms)"),
    ("throughput_tokens_per_s", "token throughput (tokens/s)"),
)


@dataclass(frozen=True)
class Span:
    """One walk of one cell on the run's clock (seconds since the timeline's start)."""

    cell: str
    repeat: int
    start_s: float
    end_s: float
    timed_by: str


@dataclass(frozen=True)
class RecordCell:
    """One cell of one run, all repeats pooled, from its records."""

    cell: str
    request_count: int
    success_count: int
    dropped_count: int
    latency_all: LatencyDistribution
    latency_ok: LatencyDistribution
    successful_tokens: float
    duration_s: float | None
    timed_by: str
    time_split: TimeSplit | None
    planned: int | None
    completed: int | None
    repeats: dict[str, MeanCI] | None  # figure key (REPEAT_FIGURES) -> mean and CI; None: one repeat


@dataclass(frozen=True)
class Timeline:
    """The run's successful tokens per second (one column per cell), its walks and its peak window."""

    start_epoch_s: float
    series: pd.DataFrame
    spans: tuple[Span, ...]
    peak: PeakWindow | None


def _spans(records: Records, windows: Sequence[CellWindow], start: float) -> list[Span]:
    """Every (cell, repeat) that has records: its ``cells.csv`` window, else its records' span."""
    by_key = {(window.cell, window.repeat): window for window in windows}
    spans = []
    grouped = records.frame.groupby(["cell", "repeat"], sort=False)
    for (cell, repeat), rows in grouped:
        window = by_key.get((cell, int(repeat)))
        if window is not None and window.end_s is not None and window.end_s > window.start_s:
            first, last, timed_by = window.start_s, window.end_s, TIMED_BY_WINDOWS
        else:
            sent = rows["sent_at"].fillna(rows["planned_at"])
            first, last, timed_by = float(sent.min()), float(rows["completed_at"].max()), TIMED_BY_RECORDS
        spans.append(Span(cell, int(repeat), first - start, last - start, timed_by))
    return sorted(spans, key=lambda span: span.start_s)


def timeline(records: Records, windows: Sequence[CellWindow], count: str) -> Timeline:
    frame = records.frame
    start = float(min(frame["sent_at"].fillna(frame["planned_at"]).min(), *(w.start_s for w in windows)))
    spans = _spans(records, windows, start)
    end = max(float(frame["completed_at"].max()), *(start + span.end_s for span in spans))
    measured = records.measured.assign(counted=counted_tokens(records.measured, count))
    series = throughput_series(measured, start, end, "counted")
    return Timeline(start, series, tuple(spans), peak_window(series))


def _repeat_figures(rows: pd.DataFrame, tokens: pd.Series, spans: Sequence[Span]) -> dict[str, float | None]:
    latency = latency_distribution(rows["latency_ms"])
    duration = sum(span.end_s - span.start_s for span in spans)
    return {
        "mean_latency_ms": latency.mean_ms,
        "p50_latency_ms": latency.p50_ms,
        "p95_latency_ms": latency.p95_ms,
        "p99_latency_ms": latency.p99_ms,
        "throughput_tokens_per_s": float(tokens[rows["ok"]].sum()) / duration if duration > 0 else None,
    }


def _sum_known(values: list[int | None]) -> int | None:
    known = [value for value in values if value is not None]
    return sum(known) if known else None


def record_cells(
    records: Records, windows: Sequence[CellWindow], spans: Sequence[Span], count: str
) -> list[RecordCell]:
    """Every cell that has records, in the study's order (concurrency, batch size, passage tokens)."""
    cells = []
    names = sorted(records.frame["cell"].unique(), key=parse_cell_name)
    for name in names:
        everything = records.frame[records.frame["cell"] == name]
        measured = everything[~everything["warmup"] & ~everything["dropped"]]
        if measured.empty:  # only warm-ups or never-sent requests: the run's notes name the cell
            continue
        tokens = counted_tokens(measured, count)
        mine = [span for span in spans if span.cell == name]
        duration = sum(span.end_s - span.start_s for span in mine)
        timed_by = TIMED_BY_WINDOWS if all(s.timed_by == TIMED_BY_WINDOWS for s in mine) else TIMED_BY_RECORDS
        repeats = None
        if measured["repeat"].nunique() > 1:
            per_repeat = [
                _repeat_figures(rows, tokens[rows.index], [s for s in mine if s.repeat == repeat])
                for repeat, rows in measured.groupby("repeat")
            ]
            repeats = {
                key: ci
                for key, _ in REPEAT_FIGURES
                if (ci := mean_ci([figures[key] for figures in per_repeat])) is not None
            }
        own_windows = [window for window in windows if window.cell == name]
        cells.append(
            RecordCell(
                cell=name,
                request_count=len(measured),
                success_count=int(measured["ok"].sum()),
                dropped_count=int((~everything["warmup"] & everything["dropped"]).sum()),
                latency_all=latency_distribution(measured["latency_ms"]),
                latency_ok=latency_distribution(measured.loc[measured["ok"], "latency_ms"]),
                successful_tokens=float(tokens[measured["ok"]].sum()),
                duration_s=duration if duration > 0 else None,
                timed_by=timed_by,
                time_split=time_split(measured),
                planned=_sum_known([window.planned for window in own_windows]),
                completed=_sum_known([window.completed for window in own_windows]),
                repeats=repeats,
            )
        )
    return cells
