"""Reads one run directory into pandas DataFrames.

A run directory holds Locust's own ``--csv <dir>/locust`` output (``locust_stats.csv``,
``locust_stats_history.csv``, ``locust_failures.csv``) plus ``run.json`` and ``cells.csv`` written by
``embed-bench run`` (see DESIGN.md). Only measured cells survive loading: warm-up rows, the
``Aggregated`` row (``metrics`` recomputes totals from the cells) and foreign request names are
dropped, and every drop is recorded in ``RunData.notes`` so the report can say what it left out.

Files from a Locust killed mid-way are accepted: a last line without its newline is a row Locust was
writing when it died and is dropped; an empty file counts as having no rows; ``cells.csv`` rows
without an end mark interrupted cells. Only what cannot be a run directory at all raises
``ReportError``.

Where the run kept per-request records (``requests.csv.gz``), ``RunData.records`` holds them and
``metrics`` computes from them instead of Locust's rounded figures (see ``reports.load.records``).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from embed_bench.core.contract import RUN_FILES, is_warmup_name, parse_cell_name, parse_rate_cell_name
from reports.errors import ReportError
from reports.load.records import CellWindow, Records, load_cell_windows, load_records

STATS_FILE = RUN_FILES.stats_csv
HISTORY_FILE = RUN_FILES.history_csv
FAILURES_FILE = RUN_FILES.failures_csv
CELLS_FILE = RUN_FILES.cells_csv
RUN_FILE = RUN_FILES.run_json
AGGREGATED_NAME = "Aggregated"

# Locust's column names (contracts.md section 4) -> ours, with units in the names.
_STATS_COLUMNS = {
    "Name": "name",
    "Request Count": "request_count",
    "Failure Count": "failure_count",
    "Average Response Time": "mean_latency_ms",
    "Median Response Time": "median_latency_ms",
    "Min Response Time": "min_latency_ms",
    "Max Response Time": "max_latency_ms",
    "Average Content Size": "avg_content_size",
    "Requests/s": "locust_requests_per_s",
}
# Percentile columns exist only for the percentiles Locust was configured to report.
_PERCENTILE_COLUMNS = {"95%": "p95_latency_ms", "99%": "p99_latency_ms"}
_FAILURES_COLUMNS = {"Name": "name", "Error": "error", "Occurrences": "occurrences"}
# Added by Locust 2.44; older files lack them.
_FAILURES_SEEN_COLUMNS = {"First Seen": "first_seen", "Last Seen": "last_seen"}
_CELLS_COLUMNS = {"cell": "name", "start": "start_s", "end": "end_s"}
_HISTORY_COLUMNS = {"Timestamp": "timestamp_s"}


@dataclass(frozen=True)
class RunData:
    """One run directory, loaded.

    ``stats``: one row per measured cell -- name (canonical ``b=.. t=.. c=..``), concurrency,
    batch_size, passage_tokens, then Locust's figures under the names of ``_STATS_COLUMNS`` and
    ``_PERCENTILE_COLUMNS`` (NaN where Locust wrote ``N/A`` or the column is absent).
    ``failures``: name, error, occurrences, first_seen, last_seen (None in the older layout).
    ``cells``: start_s, end_s (NaN for an interrupted cell; with repeats, start_s + the sum of the
    repeats' durations), planned and completed measured requests (NaN in files of older runs),
    indexed by cell name; None without ``cells.csv``. ``last_stats_write_s``: the last timestamp in the stats history, the moment the
    CSV figures describe when Locust was stopped mid-way.
    """

    directory: Path
    label: str
    info: dict[str, Any]
    stats: pd.DataFrame
    failures: pd.DataFrame
    cells: pd.DataFrame | None
    last_stats_write_s: float | None
    notes: tuple[str, ...]
    records: Records | None = None
    windows: tuple[CellWindow, ...] = ()  # grid cells' (cells.csv), per repeat
    rate_windows: tuple[CellWindow, ...] = ()  # rate cells'


def load_run(directory: Path | str) -> RunData:
    """Load a run directory; raises ReportError when it is not one."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ReportError(f"{directory}: no such run directory")
    notes: list[str] = []
    info = _load_info(directory, notes)
    label = str(info.get("label") or info.get("name") or directory.name)
    stats = _load_stats(directory, notes)
    failures = _load_failures(directory, notes)
    cells = _load_cells(directory, notes)
    windows, rate_windows = load_cell_windows(directory)
    return RunData(
        directory=directory,
        label=label,
        info=info,
        stats=stats,
        failures=failures,
        cells=cells,
        last_stats_write_s=_load_last_stats_write(directory, notes),
        notes=tuple(notes),
        records=load_records(directory),
        windows=tuple(windows),
        rate_windows=tuple(rate_windows),
    )


def _load_info(directory: Path, notes: list[str]) -> dict[str, Any]:
    path = directory / RUN_FILE
    if not path.is_file():
        notes.append(f"no {RUN_FILE}: the directory name is the run's label")
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(info, dict):
        raise ReportError(f"{path}: expected a JSON object, found {type(info).__name__}")
    if "ended_at" in info and info["ended_at"] is None:
        notes.append(f"{RUN_FILE} has no ended_at: the run did not finish")
    if info.get("status") not in (None, "completed"):
        notes.append(f"{RUN_FILE} status: {info['status']}")
    return info


def _read_locust_csv(path: Path, columns: dict[str, str], notes: list[str]) -> pd.DataFrame | None:
    """Read a CSV and rename ``columns`` (all required); None when the file is absent.

    ``N/A`` (Locust's percentile of an empty entry) and empty fields become NaN; nothing else does,
    so an error message such as "None" stays text.
    """
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        notes.append(f"{path.name}: last line cut off (Locust stopped while writing it), ignored")
    if not text.strip():
        notes.append(f"{path.name} is empty (Locust stopped before writing it)")
        return pd.DataFrame(columns=list(columns.values()))
    try:
        frame = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=["N/A", ""])
    except (pd.errors.ParserError, ValueError) as exc:
        raise ReportError(f"{path}: not a readable CSV file ({exc})") from exc
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(missing)}; is this Locust --csv output?")
    return frame.rename(columns=columns)


def _with_cells(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Rows whose name is a measured cell (name made canonical), and the names of the others."""
    names = frame["name"].astype(str)
    cells = names.map(parse_cell_name)
    measured = frame[cells.notna()].copy()
    measured_cells = cells[cells.notna()]
    measured["name"] = [cell.name for cell in measured_cells]
    measured["concurrency"] = [cell.concurrency for cell in measured_cells]
    measured["batch_size"] = [cell.batch_size for cell in measured_cells]
    measured["passage_tokens"] = [cell.passage_tokens for cell in measured_cells]
    return measured, names[cells.isna()]


def _numeric(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    for column in columns:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def _load_stats(directory: Path, notes: list[str]) -> pd.DataFrame:
    path = directory / STATS_FILE
    frame = _read_locust_csv(path, _STATS_COLUMNS, notes)
    if frame is None:
        raise ReportError(
            f"{directory}: no {STATS_FILE}; a run directory holds Locust's CSV output "
            f"(`embed-bench run --out {directory}` or `locust --csv {directory}/locust`)"
        )
    for locust_name, name in _PERCENTILE_COLUMNS.items():
        frame[name] = frame[locust_name] if locust_name in frame.columns else float("nan")
    measured, others = _with_cells(frame)
    warmup = others.map(is_warmup_name).astype(bool)
    if warmup.any():
        notes.append(f"{STATS_FILE}: {int(warmup.sum())} warm-up row(s) ignored")
    rate = others.map(lambda name: parse_rate_cell_name(name) is not None).astype(bool)
    foreign = sorted(set(others[~warmup & ~rate & (others != AGGREGATED_NAME)]))
    if foreign:
        notes.append(f"{STATS_FILE}: request names that are not grid cells ignored: {', '.join(foreign)}")
    duplicated = sorted(set(measured.loc[measured["name"].duplicated(), "name"]))
    if duplicated:
        raise ReportError(f"{path}: cell(s) {', '.join(duplicated)} appear under several request types")
    columns = [*list(_STATS_COLUMNS.values())[1:], *_PERCENTILE_COLUMNS.values()]
    measured = _numeric(measured, columns)
    empty = measured["request_count"].isna() | (measured["request_count"] <= 0)
    if empty.any():
        notes.append(
            f"{STATS_FILE}: cells without any recorded request ignored: {', '.join(measured.loc[empty, 'name'])}"
        )
    measured = measured[~empty].astype({"request_count": int})
    measured["failure_count"] = measured["failure_count"].fillna(0).astype(int)
    keys = ["name", "concurrency", "batch_size", "passage_tokens"]
    return measured[keys + columns].sort_values(
        ["concurrency", "batch_size", "passage_tokens"], ignore_index=True
    )


def _load_failures(directory: Path, notes: list[str]) -> pd.DataFrame:
    columns = ["name", "error", "occurrences", *_FAILURES_SEEN_COLUMNS.values()]
    frame = _read_locust_csv(directory / FAILURES_FILE, _FAILURES_COLUMNS, notes)
    if frame is None:
        notes.append(f"no {FAILURES_FILE}: failure messages unknown")
        return pd.DataFrame(columns=columns)
    frame = frame.rename(columns=_FAILURES_SEEN_COLUMNS)
    for name in _FAILURES_SEEN_COLUMNS.values():
        if name not in frame.columns:
            frame[name] = None
    measured, _ = _with_cells(frame)
    measured = _numeric(measured, ["occurrences"]).dropna(subset=["occurrences"])
    measured["error"] = measured["error"].astype(str)
    return measured.astype({"occurrences": int})[columns].reset_index(drop=True)


def _load_cells(directory: Path, notes: list[str]) -> pd.DataFrame | None:
    path = directory / CELLS_FILE
    frame = _read_locust_csv(path, _CELLS_COLUMNS, notes)
    if frame is None:
        notes.append(
            f"no {CELLS_FILE} (a plain Locust run): cell durations come from Locust's Requests/s, "
            "which counts from the run's start to the cell's last request"
        )
        return None
    measured, _ = _with_cells(frame)
    for column in ("repeat", "planned", "completed"):  # absent from files of older runs
        if column not in measured.columns:
            measured[column] = 0 if column == "repeat" else float("nan")
    duplicated = sorted(set(measured.loc[measured.duplicated(["name", "repeat"]), "name"]))
    if duplicated:
        raise ReportError(f"{path}: cell(s) {', '.join(duplicated)} listed more than once")
    measured = _numeric(measured, ["start_s", "end_s", "planned", "completed"])
    # Repeats of a cell (--repeats) share its name in Locust's statistics: one row per cell, timed by
    # the sum of its repeats' durations (end_s - start_s) and counted by the sum of their requests.
    measured["duration_s"] = measured["end_s"] - measured["start_s"]
    cells = measured.groupby("name", sort=False).agg(
        start_s=("start_s", "min"),
        duration_s=("duration_s", lambda durations: durations.sum(min_count=len(durations))),
        planned=("planned", lambda counts: counts.sum(min_count=len(counts))),
        completed=("completed", lambda counts: counts.sum(min_count=len(counts))),
    )
    cells["end_s"] = cells["start_s"] + cells["duration_s"]
    return cells[["start_s", "end_s", "planned", "completed"]]


def _load_last_stats_write(directory: Path, notes: list[str]) -> float | None:
    frame = _read_locust_csv(directory / HISTORY_FILE, _HISTORY_COLUMNS, notes)
    if frame is None:
        return None
    timestamps = pd.to_numeric(frame["timestamp_s"], errors="coerce").dropna()
    return float(timestamps.max()) if len(timestamps) else None
