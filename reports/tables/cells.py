"""Per-cell tables: one figure per table, a row per grid cell, a column per run (and study system).

Rows are every cell any shown column has, so a cell a run lacks shows as a dash beside the runs
that have it, the way the study's tables compare its four deployments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from embed_bench.core.contract import Cell
from reports.cost.columns import Column, RunColumn, column_cells
from reports.metrics.runs import CellMetrics
from reports.metrics.study import StudySystem
from reports.tables.base import MISSING, Table, fmt, header

CELL_KEYS = ("concurrency", "batch size", "passage tokens")


@dataclass(frozen=True)
class CellFigure:
    """How to show one figure of a run's cell and, when the study printed it, the study's."""

    key: str
    title: str
    definition: str
    of_cell: Callable[[CellMetrics], str]
    of_study: Callable[[StudySystem, Cell], str] | None = None

    def value(self, column: Column, key: Cell) -> str:
        if isinstance(column, RunColumn):
            cell = column.metrics.cell(key)
            return self.of_cell(cell) if cell else MISSING
        return self.of_study(column, key) if self.of_study else MISSING


def _percentiles(cell: CellMetrics) -> str:
    latencies = (cell.median_latency_ms, cell.p95_latency_ms, cell.p99_latency_ms)
    return " / ".join(fmt(value, ",.0f") for value in latencies)


def _tokens(cell: CellMetrics) -> str:
    return f"{fmt(cell.tokens_per_request, ',.0f')} ({cell.nominal_tokens_per_request:,})"


def _throughput(cell: CellMetrics) -> str:
    return fmt(cell.throughput_tokens_per_s, ",.0f")


CELL_FIGURES = {
    figure.key: figure
    for figure in (
        CellFigure(
            "latency_ms",
            "Response time (ms) per cell",
            "mean response time of the cell's measured requests, failed ones included (exact where the "
            "run has records, else Locust's mean)",
            lambda c: fmt(c.mean_latency_ms, ",.0f"),
            lambda s, k: fmt(s.latency_ms.get(k), ",.0f"),
        ),
        CellFigure(
            "request_throughput_rps",
            "Request throughput (requests/s) per cell, the study's formula",
            "concurrency / mean response time in seconds",
            lambda c: fmt(c.study_request_throughput_rps, ".2f"),
            lambda s, k: fmt(s.request_throughput_rps.get(k), ".2f"),
        ),
        CellFigure(
            "measured_request_throughput_rps",
            "Measured request throughput (requests/s) per cell",
            "completed requests / cell duration; cell duration = cells.csv end - start, the window in which "
            "the cell's users were held (spawn, warm-up and measured requests); Notes name cells timed otherwise",
            lambda c: fmt(c.measured_request_throughput_rps, ".2f"),
        ),
        CellFigure(
            "latency_percentiles_ms",
            "Median / p95 / p99 response time (ms) per cell",
            "runs without per-request records: Locust's percentiles, which it rounds to two significant "
            "digits and takes at the nearest rank; failed requests included",
            _percentiles,
        ),
        CellFigure(
            "success_rate_pct",
            "Success rate (%) per cell",
            "successful / all requests of the cell",
            lambda c: f"{c.success_rate_pct:.1f} ({c.success_count}/{c.request_count})",
        ),
        CellFigure(
            "normalized_latency_ms",
            "Normalized latency (ms) per cell",
            "mean response time / success rate; — where no request succeeded",
            lambda c: fmt(c.normalized_latency_ms, ",.0f"),
        ),
        CellFigure(
            "tokens_per_request",
            "Tokens per successful request (nominal batch x passage tokens)",
            "successful tokens / successful requests under the run's token count (client: batch x passage "
            "tokens; server: the usage each response reported, from the records or Locust's Average "
            "Content Size)",
            _tokens,
        ),
        CellFigure(
            "throughput_tokens_per_s",
            "Token throughput (tokens/s) per cell",
            "successful tokens / cell duration (as for the measured request throughput)",
            _throughput,
        ),
        CellFigure(
            "high_load",
            "Token throughput (tokens/s) at high load",
            "the study's two high-load cells: concurrency 10, 16,384 tokens per request; "
            "runs: successful tokens / cell duration",
            _throughput,
            lambda s, k: fmt(s.high_load_throughput_tokens_per_s.get(k), ",.0f"),
        ),
    )
}


def cell_table(figure: CellFigure, columns: Sequence[Column], cells: Iterable[Cell] | None = None) -> Table:
    """``figure`` for ``cells`` (default: every cell of the shown columns); the study's columns are
    shown only for figures it printed."""
    shown = [column for column in columns if isinstance(column, RunColumn) or figure.of_study]
    rows = tuple(
        (
            str(key.concurrency),
            str(key.batch_size),
            str(key.passage_tokens),
            *(figure.value(c, key) for c in shown),
        )
        for key in sorted(column_cells(shown) if cells is None else cells)
    )
    return Table(figure.key, figure.title, figure.definition, header(CELL_KEYS, shown), rows)


def completion_table(runs: Sequence[RunColumn]) -> Table | None:
    """Requests completed / planned per cell, where cells.csv says what each cell planned."""
    if not any(cell.planned is not None for run in runs for cell in run.metrics.cells):
        return None
    figure = CellFigure(
        "completed_planned",
        "Requests completed / planned per cell",
        "from cells.csv; a cell below its plan was cut short (--cell-max-seconds, Ctrl-C, a lost worker)",
        lambda c: (
            MISSING if c.planned is None else f"{c.completed if c.completed is not None else 0}/{c.planned}"
        ),
    )
    return cell_table(figure, runs)
