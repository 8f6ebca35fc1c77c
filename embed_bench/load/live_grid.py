"""LiveGrid: the grid's per-cell figures while a run goes on, for the web UI's embed-bench tab.

It is fed from two sides, so the tab does not depend on how the grid walker or the request records
are implemented:

- cell states (waiting -> preparing -> running -> done) through ``cell_state``, called by the grid
  walker, or derived from the run directory's ``cells.csv`` (``sync_cells_csv``: a row's start means
  running, its end means done);
- requests through ``add_rows``: rows of the per-request record (``REQUEST_RECORD_COLUMNS``), as
  tuples in column order or as mappings, with numbers or CSV strings as values.

Figures follow the reports' definitions: warm-ups are left out, the percentiles are exact (every
latency of the cell is kept; nothing is rounded as in Locust's own statistics) over all measured
requests, failed ones included (the study's "all requests"), and tokens/s is the successful tokens
the client sent divided by the cell's time (``cells.csv`` end - start, or up to now while it runs).
Memory stays bounded by the grid: one array of latencies per cell and one throughput bin per second.

Kept free of Locust and Flask imports, so it can be tested and reused on its own.
"""

from __future__ import annotations

import csv
import math
import statistics
import time
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from embed_bench.core.contract import REQUEST_RECORD_COLUMNS, WARMUP_PREFIX

_COLUMN_INDEX = {name: index for index, name in enumerate(REQUEST_RECORD_COLUMNS)}
MAX_CHART_POINTS = 600  # a longer run is drawn with wider bins


class CellState(Enum):
    """A cell's state; a cell only moves forward through them during one run."""

    WAITING = "waiting"
    PREPARING = "preparing"
    RUNNING = "running"
    DONE = "done"

    @property
    def order(self) -> int:
        return list(CellState).index(self)


STALE_START_SLACK_S = 1.0  # a cells.csv start this long before the run began is from an earlier run


@dataclass(frozen=True)
class CellFigures:
    """One row of the tab."""

    cell: str
    repeat: int
    state: str
    elapsed_s: float | None
    requests: int
    failures: int
    success_pct: float | None
    throughput_tokens_per_s: float | None
    p50_latency_ms: float | None
    p95_latency_ms: float | None


@dataclass(frozen=True)
class CellSpan:
    """Where a cell lies on the chart (seconds after the run's start; no end while it runs) and its
    tokens/s, the table's figure, drawn as a level across the span."""

    label: str
    start_s: float
    end_s: float | None
    throughput_tokens_per_s: float | None


@dataclass(frozen=True)
class ThroughputSeries:
    """Successful tokens per second over the run, by completion time, in bins of ``bin_s``:
    ``tokens_per_s[i]`` covers ``[i * bin_s, (i + 1) * bin_s)`` seconds after ``started_at``."""

    started_at: float | None
    bin_s: float
    tokens_per_s: tuple[float, ...]
    cells: tuple[CellSpan, ...]


def exact_percentile(ordered: Sequence[float], pct: float) -> float | None:
    """The ``pct`` percentile of sorted values, linear between closest ranks (numpy's default)."""
    if not ordered:
        return None
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(pct) - 1]


@dataclass
class LiveCell:
    """One cell of one walk (repeat): its state and times, and what its record rows added up to."""

    cell: str
    repeat: int
    state: CellState = CellState.WAITING
    state_at: float | None = None
    started_at: float | None = None  # exact: from the walker or cells.csv
    ended_at: float | None = None
    first_sent_at: float | None = None  # from the rows, when no exact start is known (yet)
    last_completed_at: float | None = None
    requests: int = 0
    failures: int = 0
    successful_tokens: float = 0.0
    latencies_ms: array = field(default_factory=lambda: array("d"))
    _percentiles: tuple[int, float | None, float | None] = (0, None, None)

    @property
    def label(self) -> str:
        return self.cell if self.repeat == 0 else f"{self.cell} (repeat {self.repeat + 1})"

    def move(self, state: CellState, at: float | None) -> None:
        if state.order < self.state.order:
            return  # a late or repeated signal never moves a cell back
        if state is not self.state:
            self.state, self.state_at = state, at
        if state is CellState.RUNNING and at is not None:
            self.started_at = at
        if state is CellState.DONE and at is not None:
            self.ended_at = at

    def elapsed_s(self, now: float) -> float | None:
        if self.state is CellState.PREPARING and self.state_at is not None:
            return max(0.0, now - self.state_at)
        start = self.started_at if self.started_at is not None else self.first_sent_at
        if start is None:
            return None
        if self.state is CellState.DONE:
            end = self.ended_at if self.ended_at is not None else self.last_completed_at
        else:
            end = now
        return max(0.0, (end if end is not None else now) - start)

    def percentiles(self) -> tuple[float | None, float | None]:
        """(p50, p95) in ms, sorted again only when new latencies arrived."""
        count, p50, p95 = self._percentiles
        if count != len(self.latencies_ms):
            ordered = sorted(self.latencies_ms)
            p50, p95 = exact_percentile(ordered, 50), exact_percentile(ordered, 95)
            self._percentiles = (len(ordered), p50, p95)
        return p50, p95

    def throughput_tokens_per_s(self, now: float) -> float | None:
        elapsed = self.elapsed_s(now)
        if self.state in (CellState.RUNNING, CellState.DONE) and elapsed:
            return self.successful_tokens / elapsed
        return None

    def figures(self, now: float, state: CellState) -> CellFigures:
        elapsed = self.elapsed_s(now)
        p50, p95 = self.percentiles()
        return CellFigures(
            cell=self.cell,
            repeat=self.repeat,
            state=state.value,
            elapsed_s=elapsed,
            requests=self.requests,
            failures=self.failures,
            success_pct=100.0 * (self.requests - self.failures) / self.requests if self.requests else None,
            throughput_tokens_per_s=self.throughput_tokens_per_s(now),
            p50_latency_ms=p50,
            p95_latency_ms=p95,
        )


class _Row:
    """Read access to one record row, whatever its shape (tuple in column order, or mapping)."""

    __slots__ = ("row",)

    def __init__(self, row: Mapping[str, Any] | Sequence[Any]) -> None:
        self.row = row

    def get(self, column: str) -> Any:
        if isinstance(self.row, Mapping):
            return self.row.get(column)
        index = _COLUMN_INDEX[column]
        return self.row[index] if index < len(self.row) else None

    def number(self, column: str) -> float | None:
        value = self.get(column)
        if value is None or value == "":
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        return number if math.isfinite(number) else None

    def flag(self, column: str) -> bool:
        value = self.get(column)
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true")
        return bool(value)


class LiveGrid:
    """Per-cell figures of the current run; ``begin_run`` starts over for a new run."""

    def __init__(self, clock: Callable[[], float] = time.time, bin_s: float = 1.0) -> None:
        self.clock = clock
        self.bin_s = bin_s
        self.grid_name = ""
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.cells: dict[tuple[int, str], LiveCell] = {}
        self._bins: dict[int, float] = {}
        self._cells_csv_seen: tuple[int, int] | None = None

    # --- run boundaries ----------------------------------------------------------------------
    def begin_run(self, cells: Iterable[str], grid_name: str = "", at: float | None = None) -> None:
        """Forget the last run; list the new run's cells (first walk) as waiting."""
        self.grid_name = grid_name
        self.started_at = self.clock() if at is None else at
        self.ended_at = None
        self.cells = {(0, name): LiveCell(name, 0) for name in cells}
        self._bins = {}
        self._cells_csv_seen = None

    def end_run(self, at: float | None = None) -> None:
        self.ended_at = self.clock() if at is None else at

    @property
    def is_open(self) -> bool:
        """A run has begun and has not ended."""
        return self.started_at is not None and self.ended_at is None

    # --- feeds ----------------------------------------------------------------------------------
    def _cell(self, cell: str, repeat: int = 0) -> LiveCell:
        cell = cell.strip()
        if cell.startswith(WARMUP_PREFIX):
            cell = cell[len(WARMUP_PREFIX) :]
        key = (repeat, cell)
        if key not in self.cells:
            self.cells[key] = LiveCell(cell, repeat)  # a repeat, or a cell the grid did not list
        return self.cells[key]

    def cell_state(self, cell: str, state: CellState | str, at: float | None = None, repeat: int = 0) -> None:
        """The walker's word on a cell: ``at`` is when it entered ``state`` (epoch seconds); a
        running cell's ``at`` is its start and a done cell's its end, as in ``cells.csv``."""
        self._cell(cell, repeat).move(CellState(state), self.clock() if at is None else at)

    def sync_cells_csv(self, path: Path) -> None:
        """Take starts and ends from ``cells.csv`` (columns cell, start, end, users[, repeat])."""
        try:
            status = path.stat()
        except OSError:
            return
        seen = (status.st_mtime_ns, status.st_size)
        if seen == self._cells_csv_seen:
            return
        try:
            with path.open(newline="", encoding="utf-8") as stream:
                rows = list(csv.DictReader(stream))
        except (OSError, csv.Error, UnicodeDecodeError):
            return  # being replaced right now: read it at the next poll
        self._cells_csv_seen = seen
        for row in rows:
            name = (row.get("cell") or "").strip()
            start, end = _Row(row).number("start"), _Row(row).number("end")
            if not name or start is None:
                continue
            if self.started_at is not None and start < self.started_at - STALE_START_SLACK_S:
                continue  # an earlier run's row: the walker rewrites the file once this run's cell starts
            repeat = int(_Row(row).number("repeat") or 0)
            self.cell_state(name, CellState.RUNNING, start, repeat)
            if end is not None:
                self.cell_state(name, CellState.DONE, end, repeat)

    def add_rows(self, rows: Iterable[Mapping[str, Any] | Sequence[Any]]) -> None:
        """Count record rows; warm-ups only show that their cell runs, dropped requests are skipped
        (an open-loop request never sent is no request in Locust's statistics either)."""
        for raw in rows:
            row = _Row(raw)
            name = row.get("cell")
            if not name or row.flag("dropped"):
                continue
            cell = self._cell(str(name), int(row.number("repeat") or 0))
            sent_at, completed_at = row.number("sent_at"), row.number("completed_at")
            if cell.state.order < CellState.RUNNING.order:
                cell.move(CellState.RUNNING, None)  # rows prove it runs; its exact start comes later
            if sent_at is not None and (cell.first_sent_at is None or sent_at < cell.first_sent_at):
                cell.first_sent_at = sent_at
            if completed_at is not None and (
                cell.last_completed_at is None or completed_at > cell.last_completed_at
            ):
                cell.last_completed_at = completed_at
            if row.flag("warmup") or str(name).strip().startswith(WARMUP_PREFIX):
                continue
            cell.requests += 1
            latency = row.number("latency_ms")
            if latency is not None:
                cell.latencies_ms.append(latency)
            if not row.flag("ok"):
                cell.failures += 1
                continue
            tokens = row.number("tokens_client") or 0.0
            cell.successful_tokens += tokens
            if completed_at is not None and self.started_at is not None:
                index = int((completed_at - self.started_at) // self.bin_s)
                self._bins[max(0, index)] = self._bins.get(max(0, index), 0.0) + tokens

    # --- views ----------------------------------------------------------------------------------
    def figures(self) -> list[CellFigures]:
        """One row per cell in walk order. While the run is open and no cell runs, the first waiting
        cell shows as preparing: the walker prepares the next cell as soon as the last one ends."""
        now = self.clock()
        shown = {key: cell.state for key, cell in self.cells.items()}
        busy = any(state in (CellState.PREPARING, CellState.RUNNING) for state in shown.values())
        if self.is_open and not busy:
            waiting = next((key for key, state in shown.items() if state is CellState.WAITING), None)
            if waiting is not None:
                shown[waiting] = CellState.PREPARING
        ordered = sorted(self.cells.items(), key=lambda item: item[0][0])  # stable: walk order per repeat
        return [cell.figures(now, shown[key]) for key, cell in ordered]

    def throughput(self) -> ThroughputSeries:
        if self.started_at is None:
            return ThroughputSeries(None, self.bin_s, (), ())
        end = self.ended_at if self.ended_at is not None else self.clock()
        count = max(math.ceil((end - self.started_at) / self.bin_s), max(self._bins, default=-1) + 1)
        merge = max(1, math.ceil(count / MAX_CHART_POINTS))
        width = self.bin_s * merge
        merged = [0.0] * math.ceil(count / merge)
        for index, tokens in self._bins.items():
            merged[index // merge] += tokens
        spans = sorted(
            (
                CellSpan(
                    cell.label,
                    cell.started_at - self.started_at,
                    cell.ended_at - self.started_at if cell.ended_at is not None else None,
                    cell.throughput_tokens_per_s(end),
                )
                for cell in self.cells.values()
                if cell.started_at is not None
            ),
            key=lambda span: span.start_s,
        )
        return ThroughputSeries(
            self.started_at, width, tuple(tokens / width for tokens in merged), tuple(spans)
        )
