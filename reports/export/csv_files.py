"""Machine-readable exports: ``cells.csv`` (every metric of every cell of every run, long format)
and ``summary.csv`` (the headline table in the study's own layout: one row per metric, one column
per run, so it lines up with the study's ``summary.csv``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from reports.cost.columns import Column, RunColumn
from reports.cost.headline import SUMMARY_METRICS
from reports.metrics.rates import RateRun


def cells_frame(runs: Sequence[RunColumn]) -> pd.DataFrame:
    """One row per cell; nested figures flattened into columns such as ``latency_ok_p99_ms``,
    ``time_split_mean_queue_ms`` and ``repeats_p95_latency_ms_half_width``."""
    rows = [
        {
            "run": run.label,
            "run_directory": run.metrics.directory,
            "tokens_counted": run.metrics.token_count,
            **asdict(cell),
        }
        for run in runs
        for cell in run.metrics.cells
    ]
    return pd.json_normalize(rows, sep="_")


def summary_frame(columns: Sequence[Column]) -> pd.DataFrame:
    rows = [
        {"metric": metric.key, **{column.label: metric.value(column) for column in columns}}
        for metric in SUMMARY_METRICS
    ]
    return pd.DataFrame(rows)


def write_cells_csv(path: Path, runs: Sequence[RunColumn]) -> None:
    cells_frame(runs).to_csv(path, index=False)


def write_summary_csv(path: Path, columns: Sequence[Column]) -> None:
    summary_frame(columns).to_csv(path, index=False)


def write_rate_cells_csv(path: Path, runs: Sequence[RateRun]) -> None:
    """One row per rate cell and per shape of a mix (``shape`` = all for the whole cell), nested
    figures flattened: ``latency_p95_ms``, ``lag_p99_ms``."""
    rows = [
        {"run": run.label, "run_directory": run.directory, **asdict(figures)}
        for run in runs
        for figures in (*run.cells, *run.shapes)
    ]
    pd.json_normalize(rows, sep="_").to_csv(path, index=False)
