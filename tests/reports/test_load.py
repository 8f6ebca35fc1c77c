"""Loading run directories: cell names, ignored rows, both failures layouts, broken runs."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from embed_bench.core.contract import Cell, parse_cell_name
from reports.errors import ReportError
from reports.load.runs import load_run
from tests.reports.fixtures import CellSpec, RunLayout, write_run

CELLS = [
    CellSpec(1, 128, 1, 200.0, requests=5),
    CellSpec(32, 512, 5, 2500.0, requests=25, failures=5, error="HTTP 429 RATE_TOKEN_LIMIT_EXCEEDED"),
    CellSpec(128, 128, 10, 4000.0, requests=50, failures=50),
]


@pytest.mark.parametrize(
    ("name", "cell"),
    [
        ("b=32 t=512 c=5", Cell(concurrency=5, batch_size=32, passage_tokens=512)),
        ("b=1 t=8192 c=10", Cell(concurrency=10, batch_size=1, passage_tokens=8192)),
        ("warmup b=32 t=512 c=5", None),
        ("Aggregated", None),
        ("GET /health", None),
        ("b=32 t=512", None),
    ],
)
def test_parse_cell_name(name: str, cell: Cell | None) -> None:
    assert parse_cell_name(name) == cell
    if cell is not None:
        assert cell.name == name


def test_only_measured_cells_are_kept(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path / "run", CELLS, layout=RunLayout(extra_names=("GET /health",))))
    assert list(run.stats["name"]) == [spec.name for spec in sorted(CELLS, key=lambda s: s.concurrency)]
    assert "Aggregated" not in set(run.stats["name"])
    notes = " ".join(run.notes)
    assert f"{len(CELLS)} warm-up row(s) ignored" in notes
    assert "GET /health" in notes


def test_stats_figures_come_through(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path / "run", CELLS))
    for spec, row in zip(CELLS, run.stats.itertuples(), strict=True):
        assert (row.concurrency, row.batch_size, row.passage_tokens) == (
            spec.concurrency,
            spec.batch_size,
            spec.passage_tokens,
        )
        assert (row.request_count, row.failure_count) == (spec.requests, spec.failures)
        assert row.mean_latency_ms == pytest.approx(spec.mean_latency_ms)
        assert row.avg_content_size * row.request_count == pytest.approx(spec.successful_tokens)
        assert not math.isnan(row.p95_latency_ms) and not math.isnan(row.p99_latency_ms)


@pytest.mark.parametrize("layout", ["old", "new"])
def test_both_failures_layouts(tmp_path: Path, layout: str) -> None:
    run = load_run(write_run(tmp_path / layout, CELLS, layout=RunLayout(failures_layout=layout)))
    expected = {(spec.name, spec.error, spec.failures) for spec in CELLS if spec.failures}
    assert (
        set(zip(run.failures["name"], run.failures["error"], run.failures["occurrences"], strict=True))
        == expected
    )
    seen = run.failures["first_seen"].notna()
    assert seen.all() if layout == "new" else not seen.any()


def test_run_json_gives_the_label_else_the_directory(tmp_path: Path) -> None:
    assert load_run(write_run(tmp_path / "a", CELLS, label="continuous")).label == "continuous"
    bare = load_run(write_run(tmp_path / "plain-locust", CELLS, layout=RunLayout(write_run_json=False)))
    assert bare.label == "plain-locust"
    assert bare.info == {}
    assert any("no run.json" in note for note in bare.notes)


def test_interrupted_run(tmp_path: Path) -> None:
    """Locust killed in the last cell: half-written last lines, no end, no ended_at."""
    run = load_run(write_run(tmp_path / "killed", CELLS, layout=RunLayout(interrupted=True)))
    assert len(run.stats) == len(CELLS)  # the cut line is the Aggregated row
    assert math.isnan(run.cells.at[CELLS[-1].name, "end_s"])
    assert (
        run.last_stats_write_s is not None
        and run.last_stats_write_s > run.cells.at[CELLS[-1].name, "start_s"]
    )
    notes = " ".join(run.notes)
    assert "locust_stats.csv: last line cut off" in notes
    assert "locust_failures.csv: last line cut off" in notes
    assert "did not finish" in notes
    # the failures row that was cut is lost, the others survive
    assert len(run.failures) == sum(1 for spec in CELLS if spec.failures) - 1


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    directory = write_run(tmp_path / "empty", CELLS)
    (directory / "locust_stats.csv").write_text("")
    (directory / "locust_failures.csv").write_text("Method,Name,Error,Occurrences\r\n")
    run = load_run(directory)
    assert run.stats.empty and run.failures.empty
    assert any("locust_stats.csv is empty" in note for note in run.notes)


def test_locust_na_row_is_ignored(tmp_path: Path) -> None:
    """After --reset-stats Locust keeps entries with 0 requests and N/A percentiles."""
    directory = write_run(tmp_path / "reset", CELLS[:1])
    stats = directory / "locust_stats.csv"
    na_row = "POST,b=1 t=512 c=1,0,0,0,0.0,0,0,0,0.0,0.0," + ",".join(["N/A"] * 11) + "\r\n"
    lines = stats.read_text().splitlines(keepends=True)
    stats.write_text(lines[0] + na_row + "".join(lines[1:]), newline="")
    run = load_run(directory)
    assert list(run.stats["name"]) == [CELLS[0].name]
    assert any("without any recorded request" in note and "b=1 t=512 c=1" in note for note in run.notes)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: (d / "locust_stats.csv").unlink(), "no locust_stats.csv"),
        (lambda d: (d / "run.json").write_text("{not json"), "run.json: not valid JSON"),
        (
            lambda d: (d / "cells.csv").write_text("name,begin\r\nx,1\r\n"),
            "cells.csv: missing column(s) cell",
        ),
        (lambda d: (d / "locust_stats.csv").write_text("a,b\r\n1,2\r\n"), "missing column(s) Name"),
    ],
)
def test_unreadable_directories_fail_loudly(tmp_path: Path, breakage, message: str) -> None:
    directory = write_run(tmp_path / "run", CELLS)
    breakage(directory)
    with pytest.raises(ReportError, match=re.escape(message)):
        load_run(directory)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no such run directory"):
        load_run(tmp_path / "nope")


LOCUST_WRITER = textwrap.dedent(
    """
    import sys
    from locust.env import Environment
    from locust.stats import PERCENTILES_TO_REPORT, StatsCSVFileWriter

    env = Environment()
    stats = env.stats
    for index in range(10):
        stats.log_request("POST", "b=32 t=512 c=5", 1000 + 37 * index, 16384)
    for index in range(4):
        stats.log_request("POST", "b=32 t=512 c=5", 50 + index, 0)
        stats.log_error("POST", "b=32 t=512 c=5", "HTTP 429 RATE_TOKEN_LIMIT_EXCEEDED")
    stats.log_request("POST", "warmup b=32 t=512 c=5", 3000, 16384)
    stats.log_request("POST", "b=1 t=128 c=1", 120, 128)
    writer = StatsCSVFileWriter(env, PERCENTILES_TO_REPORT, sys.argv[1] + "/locust", full_history=False)
    writer.requests_csv(writer.requests_csv_writer)
    writer.stats_history_csv_writer.writerow(writer.stats_history_csv_columns)
    writer._stats_history_data_rows(writer.stats_history_csv_writer, 1750000000.0)
    writer.failures_csv(writer.failures_csv_writer)
    writer.close_files()
    """
)


def test_locust_own_csv_files_load(tmp_path: Path, spawn: None) -> None:
    """The files Locust itself writes (in a subprocess: importing locust monkey-patches gevent)."""
    if importlib.util.find_spec("locust") is None:  # find, never import: that would patch this process
        pytest.skip("the load extra is not installed")
    subprocess.run([sys.executable, "-c", LOCUST_WRITER, str(tmp_path)], check=True, timeout=120)
    run = load_run(tmp_path)
    row = run.stats.set_index("name").loc["b=32 t=512 c=5"]
    assert (row.request_count, row.failure_count) == (14, 4)
    assert row.avg_content_size * row.request_count == 10 * 16384
    assert list(run.stats["name"]) == ["b=1 t=128 c=1", "b=32 t=512 c=5"]
    assert list(run.failures["occurrences"]) == [4]
    assert run.last_stats_write_s == 1750000000.0
    assert json.loads(json.dumps(run.info)) == {}


def test_cells_csv_with_repeats_and_counts(tmp_path: Path) -> None:
    """embed-bench's cells.csv with --repeats: one row per cell, timed by the sum of its repeats."""
    directory = write_run(tmp_path / "repeats", CELLS)
    first, second = CELLS[0].name, CELLS[1].name
    (directory / "cells.csv").write_text(
        "cell,repeat,start,end,users,planned,completed,succeeded,failures\n"
        f"{first},0,100.0,102.0,1,5,5,5,\n"
        f"{second},0,103.0,104.5,1,5,3,2,timeout (1)\n"
        f"{first},1,105.0,108.0,1,5,5,5,\n"
    )
    cells = load_run(directory).cells
    assert cells.at[first, "end_s"] - cells.at[first, "start_s"] == 5.0  # 2 s + 3 s
    assert (cells.at[first, "planned"], cells.at[first, "completed"]) == (10, 10)
    assert (cells.at[second, "planned"], cells.at[second, "completed"]) == (5, 3)
    assert math.isnan(load_run(write_run(tmp_path / "old", CELLS)).cells.at[first, "planned"])
