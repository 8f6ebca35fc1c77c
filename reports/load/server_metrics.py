"""Reads what a run sampled from its target's Prometheus endpoint (``server_metrics.csv``), and the
boundaries of every cell it walked, closed-loop and rate cells alike.

``server_metrics.csv`` is the run contract's ``RUN_FILES.server_metrics_csv``, written by
``embed-bench run`` (``embed_bench/core/server_metrics.py``): long format, one row per series per
scrape. A run without it gets the reason from run.json's ``server_metrics`` (a hosted backend, the
option turned off) or, for runs that predate it and plain Locust runs, a sentence that says so. A
file cut mid-row (a run killed while writing) keeps its complete rows.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from embed_bench.core.contract import RUN_FILES
from embed_bench.core.server_metrics import SERVER_METRICS_COLUMNS
from reports.errors import ReportError

FILE = RUN_FILES.server_metrics_csv


@dataclass(frozen=True)
class CellSpan:
    """One row of cells.csv: a cell (any kind) walked once, from ``start_s`` to ``end_s`` (None:
    interrupted), epoch seconds."""

    cell: str
    repeat: int
    start_s: float
    end_s: float | None


@dataclass(frozen=True)
class ServerSamples:
    """The samples (``time``, ``metric``, ``labels``, ``value``; None when there are none), where they
    came from, and why there are none."""

    frame: pd.DataFrame | None
    url: str | None
    note: str


def _complete_text(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace")
    return text if not text or text.endswith("\n") else text[: text.rfind("\n") + 1]


def load_server_samples(directory: Path, info: dict[str, Any]) -> ServerSamples:
    """The run's server samples; a file that is not a sample file raises ReportError."""
    record = info.get("server_metrics") if isinstance(info.get("server_metrics"), dict) else {}
    url = record.get("url")
    path = directory / FILE
    if not path.is_file():
        note = record.get("note") or (
            f"no {FILE}: the run sampled no server endpoint (a run from before server telemetry, a "
            "plain Locust run, or one whose target had none)"
        )
        return ServerSamples(None, url, str(note))
    try:
        frame = pd.read_csv(io.StringIO(_complete_text(path)), keep_default_na=False, dtype={"labels": str})
    except (pd.errors.ParserError, ValueError) as error:
        raise ReportError(f"{path}: not a readable CSV file ({error})") from error
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame(columns=list(SERVER_METRICS_COLUMNS))
    missing = [column for column in SERVER_METRICS_COLUMNS if column not in frame.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(missing)}; not a server metrics file")
    frame["time"] = pd.to_numeric(frame["time"], errors="coerce")
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    frame = frame.dropna(subset=["time"]).reset_index(drop=True)
    if frame.empty:
        return ServerSamples(None, url, f"{FILE} holds no sample (the run ended before the first scrape)")
    return ServerSamples(frame, url, "")


def load_cell_spans(directory: Path) -> list[CellSpan]:
    """Every cells.csv row with a start, in file order (none without a readable cells.csv)."""
    path = directory / RUN_FILES.cells_csv
    if not path.is_file():
        return []
    try:
        frame = pd.read_csv(io.StringIO(_complete_text(path)), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, ValueError, pd.errors.EmptyDataError):
        return []
    if not {"cell", "start"} <= set(frame.columns):
        return []
    spans = []
    for row in frame.to_dict("records"):
        start = pd.to_numeric(row["start"], errors="coerce")
        if pd.isna(start):
            continue
        end = pd.to_numeric(row.get("end", ""), errors="coerce")
        repeat = pd.to_numeric(row.get("repeat", ""), errors="coerce")
        spans.append(
            CellSpan(
                cell=str(row["cell"]).strip(),
                repeat=0 if pd.isna(repeat) else int(repeat),
                start_s=float(start),
                end_s=None if pd.isna(end) else float(end),
            )
        )
    return spans
