"""LiveGrid: per-cell states and figures from record rows and cells.csv, as the web UI tab shows them."""

from __future__ import annotations

import numpy as np
import pytest

from embed_bench.core.contract import CELLS_CSV_COLUMNS, REQUEST_RECORD_COLUMNS
from embed_bench.load.live_grid import CellState, LiveGrid, exact_percentile

A, B = "b=1 t=16 c=1", "b=2 t=16 c=2"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def row(cell: str, latency_ms: float, completed_at: float, ok: bool = True, warmup: bool = False, **extra):
    return {
        "cell": cell,
        "warmup": int(warmup),
        "ok": int(ok),
        "tokens_client": 16 * int(cell.split()[0][2:]),
        "sent_at": completed_at - latency_ms / 1000,
        "completed_at": completed_at,
        "latency_ms": latency_ms,
        **extra,
    }


def as_tuple(values: dict) -> tuple:
    return tuple(values.get(column, "") for column in REQUEST_RECORD_COLUMNS)


@pytest.fixture
def grid():
    clock = Clock(1000.0)
    live = LiveGrid(clock=clock)
    live.begin_run([A, B], "test")
    return live, clock


def by_cell(live: LiveGrid) -> dict:
    return {figures.cell: figures for figures in live.figures()}


def test_cells_wait_until_the_walk_prepares_and_starts_them(grid):
    live, clock = grid
    assert [f.state for f in live.figures()] == ["preparing", "waiting"]  # the walk prepares the first
    live.cell_state(A, CellState.RUNNING, 1001.0)
    clock.now = 1004.0
    assert [f.state for f in live.figures()] == ["running", "waiting"]
    assert by_cell(live)[A].elapsed_s == 3.0
    live.cell_state(A, "done", 1005.0)
    assert [f.state for f in live.figures()] == ["done", "preparing"]
    live.cell_state(A, CellState.RUNNING, 1009.0)  # a late signal never moves a cell back
    assert by_cell(live)[A].state == "done" and by_cell(live)[A].elapsed_s == 4.0
    live.end_run()
    assert [f.state for f in live.figures()] == ["done", "waiting"]


def test_figures_count_measured_rows_of_any_shape_and_take_exact_percentiles(grid):
    live, _ = grid
    latencies = [100.0, 200.0, 300.0, 400.0, 1000.0]
    rows = [row(A, latency, 1002.0 + i) for i, latency in enumerate(latencies)]
    rows[1]["ok"] = 0
    live.cell_state(A, CellState.RUNNING, 1000.0)
    live.add_rows([row(A, 50.0, 1000.5, warmup=True)])  # a warm-up: not a request of the cell
    live.add_rows([as_tuple(rows[0]), {k: str(v) for k, v in rows[1].items()}, *rows[2:]])
    live.cell_state(A, CellState.DONE, 1010.0)
    figures = by_cell(live)[A]
    assert (figures.requests, figures.failures, figures.success_pct) == (5, 1, 80.0)
    assert figures.p50_latency_ms == pytest.approx(np.percentile(latencies, 50))
    assert figures.p95_latency_ms == pytest.approx(np.percentile(latencies, 95))
    assert figures.throughput_tokens_per_s == pytest.approx(
        4 * 16 / 10.0
    )  # successful tokens / (end - start)


def test_the_chart_bins_successful_tokens_by_completion_second(grid):
    live, clock = grid
    live.cell_state(A, CellState.RUNNING, 1000.0)
    live.add_rows([row(A, 10, 1000.2), row(A, 10, 1000.7), row(A, 10, 1002.5), row(A, 10, 1002.6, ok=False)])
    clock.now = 1004.0
    series = live.throughput()
    assert series.bin_s == 1.0
    assert series.tokens_per_s == (32.0, 0.0, 16.0, 0.0)
    (span,) = series.cells
    assert (span.label, span.start_s, span.end_s) == (A, 0.0, None)
    assert span.throughput_tokens_per_s == by_cell(live)[A].throughput_tokens_per_s == 48 / 4.0


def test_a_long_run_is_drawn_with_wider_bins(grid):
    live, clock = grid
    live.add_rows([row(A, 10, 1000.5 + second) for second in range(1500)])
    clock.now = 2500.0
    series = live.throughput()
    assert series.bin_s == 3.0 and len(series.tokens_per_s) == 500
    assert sum(value * series.bin_s for value in series.tokens_per_s) == 1500 * 16


def test_rows_show_a_cell_runs_before_its_start_is_known(grid):
    live, clock = grid
    live.add_rows([row(B, 500.0, 1003.0)])
    clock.now = 1004.0
    figures = by_cell(live)[B]
    assert figures.state == "running" and figures.elapsed_s == pytest.approx(1.5)  # from the first send


def test_cells_csv_gives_starts_and_ends(grid, tmp_path):
    live, clock = grid
    path = tmp_path / "cells.csv"
    header = ",".join(CELLS_CSV_COLUMNS)
    path.write_text(f"{header}\n{A},0,1001.0,1003.5,1,1,1,1,\n{B},0,1004.0,,2,2,,,\n")
    clock.now = 1006.0
    live.sync_cells_csv(path)
    assert [(f.state, f.elapsed_s) for f in live.figures()] == [("done", 2.5), ("running", 2.0)]
    live.sync_cells_csv(tmp_path / "absent.csv")  # no file yet: nothing changes
    assert [f.state for f in live.figures()] == ["done", "running"]


def test_a_new_run_starts_over_and_rows_of_unlisted_cells_get_their_own_row(grid):
    live, _ = grid
    live.add_rows([row(A, 10, 1001.0)])
    live.begin_run([B], "second")
    assert [(f.cell, f.requests) for f in live.figures()] == [(B, 0)]
    live.add_rows([row(A, 10, 1001.0, repeat=1)])
    assert [(f.cell, f.repeat, f.requests) for f in live.figures()] == [(B, 0, 0), (A, 1, 1)]


def test_exact_percentile_matches_numpy():
    values = sorted([3.0, 1.0, 7.5, 2.25, 9.0, 4.0, 4.0])
    for pct in (50, 95):
        assert exact_percentile(values, pct) == pytest.approx(np.percentile(values, pct))
    assert exact_percentile([5.0], 95) == 5.0 and exact_percentile([], 50) is None
