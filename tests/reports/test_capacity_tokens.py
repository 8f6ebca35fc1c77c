"""run.json's capacity and the report's agree on its tokens/s.

The capacity search divided a step's successful tokens by the step's nominal duration, the report by
the step's arrival span (its cells.csv start to its last planned arrival), so one capacity read 3,264
tokens/s in run.json and 3,282 in the report. Both now read the span
(``embed_bench.core.rate_span``). Poisson arrivals, as a real step has them, end before the nominal
duration does, which is what told the two apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embed_bench.core.capacity import Target
from embed_bench.core.capacity_run import CapacityRun
from embed_bench.core.cells import CapacitySpec
from embed_bench.core.contract import CELLS_CSV_COLUMNS, REQUEST_RECORD_COLUMNS, RUN_FILES, Shape
from embed_bench.core.records import RequestRecord
from reports.load.runs import load_run
from reports.metrics.rates import rate_run
from tests.reports.fixtures import _csv_text
from tests.reports.record_fixtures import RUN_START_S, _write_locust_csvs, write_gzip_members

STEP_S = 20.0
TOKENS = 128


def poisson_step(cell: str, rate: float, start: float, latency_ms: float, rng: np.random.Generator) -> list:
    """A step's measured requests: Poisson arrivals from ``start`` until ``STEP_S`` is over, each
    sent on time and answered after ``latency_ms``. (The run directory adds a warm-up before it.)"""
    rows, planned = [], start
    while (planned := planned + float(rng.exponential(1 / rate))) < start + STEP_S:
        rows.append(
            RequestRecord(
                cell, 0, 0, "SelfHostedUser", "local", 0, len(rows), 1, TOKENS, TOKENS, TOKENS + 2, 200, 1, "",
                planned, planned, planned + latency_ms / 1000, latency_ms, 0.0, 0, 100, 1500, None, None, None, None,
            )
        )  # fmt: skip
    return rows


def write_search(directory: Path) -> tuple[list[list], dict]:
    """A capacity search of two steps driven as the grid walk drives it (10/s meets p95 <= 200 ms,
    20/s misses), its run directory as the Locust side and ``embed-bench run`` write it; returns
    each step's (cell, start, rows) and run.json's capacity."""
    spec = CapacitySpec(
        shapes=(Shape(1, TOKENS),), target=Target(200.0, 99.0), start_rate=10, step_duration_s=STEP_S
    )
    search = CapacityRun(spec, directory)
    rng = np.random.default_rng(5)
    start, steps = RUN_START_S, []
    for latency_ms in (50.0, 900.0):
        cell = search.next_step()
        assert cell is not None
        rows = poisson_step(cell.name, cell.request_rate, start, latency_ms, rng)
        search.on_rows(rows)
        assert search.measured(cell.name, 0, start)
        steps.append([cell.name, start, rows])
        start += STEP_S + 5.0
    search.finish()
    capacity_json = json.loads((directory / RUN_FILES.capacity_json).read_text())
    warmups = [
        rows[0]._replace(warmup=1, planned_at=begin - 0.5, sent_at=begin - 0.5) for _, begin, rows in steps
    ]
    records = [*warmups, *(row for _, _, rows in steps for row in rows)]
    frame = pd.DataFrame(records, columns=list(REQUEST_RECORD_COLUMNS))
    write_gzip_members(directory / RUN_FILES.requests, frame)
    windows = [
        [cell, 0, f"{begin:.6f}", f"{rows[-1].completed_at:.6f}", 64, len(rows), len(rows), len(rows), "",
         cell.split()[0].removeprefix("r="), 0]
        for cell, begin, rows in steps
    ]  # fmt: skip
    (directory / RUN_FILES.cells_csv).write_text(_csv_text(CELLS_CSV_COLUMNS, windows), newline="")
    _write_locust_csvs(directory, frame, start - RUN_START_S)
    info = {
        "name": directory.name,
        "label": directory.name,
        "backend": "self-hosted",
        "host": "http://127.0.0.1:8000",
        "grid": "capacity",
        "cells": [],
        "started_at": "2025-10-09T08:53:20+00:00",
        "ended_at": "2025-10-09T09:00:00+00:00",
        "status": "completed",
        "pricing": None,
        **capacity_json,
    }
    (directory / RUN_FILES.run_json).write_text(json.dumps(info), encoding="utf-8")
    return steps, capacity_json["capacity"]


def test_run_json_and_the_report_give_the_capacity_the_same_tokens_per_s(tmp_path: Path) -> None:
    steps, written = write_search(tmp_path / "run")
    capacity = rate_run(load_run(tmp_path / "run")).capacity
    assert capacity is not None
    assert capacity.capacity_requests_per_s == 10 == written["requests_per_s"]
    # The answer's tokens/s: the first step's successful tokens over its arrival span, in both.
    _, start, rows = steps[0]
    by_hand = len(rows) * TOKENS / (rows[-1].planned_at - start)
    assert written["tokens_per_s"] == pytest.approx(by_hand, rel=1e-9)
    assert capacity.capacity_tokens_per_s == pytest.approx(written["tokens_per_s"], rel=1e-6)
    assert capacity.reported_tokens_per_s == written["tokens_per_s"]
    # The nominal duration gives another figure: the check above tells the two definitions apart.
    nominal = len(rows) * TOKENS / STEP_S
    assert abs(nominal - by_hand) / by_hand > 0.001, (nominal, by_hand)
    # Every step's goodput in run.json is the report's for its cell.
    report_cells = {cell.cell: cell for cell in rate_run(load_run(tmp_path / "run")).cells}
    for step in written["steps"]:
        assert report_cells[step["cell"]].goodput_tokens_per_s == pytest.approx(
            step["goodput_tokens_per_s"], rel=1e-6
        )
