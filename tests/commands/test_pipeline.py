"""serve -> run -> report end to end on a tiny grid, with the real server, Locust and post-processor."""

from __future__ import annotations

import csv
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from target_server.launcher import running_target_server

pytestmark = pytest.mark.usefixtures("spawn")

KEY = "sk-pipeline-7c1d9e"
TINY_GRID = """description = "two cells for the tests"
[[cells]]
concurrency = 2
batch_size = [1, 4]
passage_tokens = 16
"""


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with running_target_server("--api-key", KEY, "--threads", "16") as url:
        yield url


def embed_bench(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "embed_bench", *args], capture_output=True, text=True, timeout=300, **kwargs
    )


def run_args(server: str, grid: Path, run_dir: Path, requests_per_user: str) -> list[str]:
    """`embed-bench run` against the bundled server, with the key that must never be written."""
    return [
        "run",
        "--backend",
        "self-hosted",
        "--host",
        server,
        "--grid",
        str(grid),
        "--out",
        str(run_dir),
        "--api-key",
        KEY,
        "--requests-per-user",
        requests_per_user,
    ]


def stats_rows(run_dir: Path) -> dict[str, dict[str, str]]:
    with open(run_dir / "locust_stats.csv", newline="") as stream:
        return {row["Name"]: row for row in csv.DictReader(stream)}


def assert_no_secret(directory: Path, *texts: str) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), f"API key leaked into {path}"
    for text in texts:
        assert KEY not in text


@pytest.mark.parametrize("workers", [1, 2])
def test_run_then_report(server: str, tmp_path: Path, workers: int) -> None:
    grid = tmp_path / "tiny.toml"
    grid.write_text(TINY_GRID)
    run_dir = tmp_path / "run"
    result = embed_bench(
        *run_args(server, grid, run_dir, "3"),
        *("--workers", str(workers), "--label", "tiny", "--pricing", "self_hosted_us_east_1"),
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "[2/2] b=4 t=16 c=2: 6/6 ok in " in result.stdout
    assert "measured requests: 12 of 12 planned succeeded (100.0%)" in result.stdout
    rows = stats_rows(run_dir)
    for batch in (1, 4):
        row = rows[f"b={batch} t=16 c=2"]
        assert (row["Request Count"], row["Failure Count"]) == ("6", "0")
        assert float(row["Average Content Size"]) == batch * 16  # the client's count: the tokens sent
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "completed" and run["label"] == "tiny" and run["workers"] == workers
    assert run["model"] == "sentence-transformers/all-MiniLM-L6-v2" and run["grid"] == str(grid)
    assert run["cells"] == ["b=1 t=16 c=2", "b=4 t=16 c=2"]
    assert run["hardware"]["device"] == "cpu" and run["hardware"]["cpus"] >= 1  # the server's /info

    report_dir = tmp_path / "report"
    report = embed_bench("report", str(run_dir), "--out", str(report_dir))
    assert report.returncode == 0, report.stderr
    markdown = (report_dir / "report.md").read_text()
    assert "tiny" in markdown and "b=4 t=16 c=2" in (report_dir / "cells.csv").read_text()
    assert_no_secret(tmp_path, result.stdout, result.stderr, report.stdout, report.stderr)


@pytest.mark.parametrize(
    ("stop_signal", "workers"),
    [(signal.SIGINT, "1"), (signal.SIGTERM, "1"), (signal.SIGINT, "2")],
    ids=["ctrl-c", "sigterm", "ctrl-c-master-and-workers"],
)
def test_ctrl_c_leaves_a_reportable_run(server: str, tmp_path: Path, stop_signal: int, workers: str) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text("[[cells]]\nconcurrency = 2\nbatch_size = 2\npassage_tokens = [16, 32, 64, 128]\n")
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        # 150 requests per user: seconds per cell (2-3 on a quiet machine, more under load), so the
        # interrupt lands mid-run
        [sys.executable, "-m", "embed_bench", *run_args(server, grid, run_dir, "150"), "--workers", workers],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell without job control (CI) starts background jobs with SIGINT ignored, and children
        # inherit that; a terminal's Ctrl-C finds the default handler, so restore it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the first cell is done and the second running
        cells = run_dir / "cells.csv"
        if cells.exists() and len(cells.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    time.sleep(1.5)  # into the second cell: it has completed requests when it is cut short
    assert process.poll() is None, "the run ended before it could be interrupted"
    os.kill(process.pid, stop_signal)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted" in stdout
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "interrupted" and run["ended_at"]
    assert "b=2 t=16 c=2" in stats_rows(run_dir)
    # Every cell walked, the one cut short included, has the counts its records hold; the console
    # says the same. (Locust was once killed by SIGTERM before its test_stop, and a master counted
    # before its workers' last reports: the cut cell then said 0, or too few.)
    with open(run_dir / "cells.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    with gzip.open(run_dir / "requests.csv.gz", "rt", newline="") as handle:
        measured = Counter(row["cell"] for row in csv.DictReader(handle) if row["warmup"] == "0")
    assert {row["cell"]: int(row["completed"] or -1) for row in rows} == {
        row["cell"]: measured[row["cell"]] for row in rows
    }, stdout
    assert len(rows) >= 2 and measured[rows[1]["cell"]] > 0, stdout  # the cut cell had done some
    assert f"{sum(measured.values()):,} completed" in stdout
    # The cut cell's line says the walk ended there, not how many cells are left to wait for.
    cut = [line for line in stdout.splitlines() if "(interrupted)" in line]
    assert cut and all("left" not in line and "ETA" not in line for line in cut), stdout
    not_run = 4 - len(rows)
    ending = (
        f"the run stopped, {not_run} cell{'s' if not_run > 1 else ''} not run" if not_run else "(interrupted)"
    )
    assert any(line.endswith(ending) for line in cut), stdout
    report = embed_bench("report", str(run_dir), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    assert_no_secret(tmp_path, stdout, stderr)


def test_demo_on_a_tiny_grid_replaces_the_previous_demo(tmp_path: Path) -> None:
    grid = tmp_path / "tiny.toml"
    grid.write_text(TINY_GRID)
    trace = tmp_path / "trace.csv"  # six requests over 12 s of log, replayed in 3 s
    trace.write_text("offset_s,batch_size,tokens\n0,1,12\n2,1,30\n4,2,8 90\n6,1,5\n9,1,17\n12,1,60\n")
    out = tmp_path / "demo"
    (out / "timeout").mkdir(parents=True)  # what an earlier demo of other modes left
    (out / "timeout" / "run.json").write_text("{}")
    (out / ".embed-bench-demo").write_text("")
    result = embed_bench(
        "demo",
        "--grid",
        str(grid),
        "--modes",
        "continuous,none",
        "--requests-per-user",
        "2",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--capacity-modes",
        "none",
        "--capacity-step-s",
        "2",
        # a target any CPU meets at the start rate: this test checks the demo's wiring; the search's
        # answer on a real knee is tested in tests/core and tests/commands/test_run_capacity.py (a
        # 300 ms p95 of 8 requests fails on a CI machine whose lone request takes 173 ms)
        "--slo-p95-ms",
        "5000",
        "--capacity-start-rate",
        "2",
        # the search stops at 8/s (steps of 2, 4, 8/s): climbing to this target's knee took 2 of
        # the test's 4 minutes; the knee itself is tested where it is the point
        "--capacity-max-rate",
        "8",
        "--capacity-confirm-repeats",
        "0",  # a point estimate: the interval's steps would add minutes (tested in tests/core)
        "--trace",
        str(trace),
        "--trace-speed",
        "4",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "report" / "report.md").exists() and (out / "report" / "report.html").exists()
    report = (out / "report" / "report.md").read_text()
    assert report.index("## Decision: the cost of this workload") < report.index("## Capacity at the target")
    capacity = json.loads((out / "capacity-none" / "run.json").read_text())["capacity"]
    assert capacity["requests_per_s"] == 8 and capacity["at_rate_limit"], capacity
    assert not (out / "capacity-continuous").exists()
    assert json.loads((out / "trace-continuous" / "run.json").read_text())["trace"]["rows"] == 6
    assert not (out / "trace-none").exists() and "### SLO attainment over the replay" in report
    assert "trace sample_trace.csv" in report  # the decision prices the sample day by default
    assert "none: the same deployment as none capacity" in report  # one option, not two
    summary = (out / "report" / "summary.csv").read_text()
    assert "continuous" in summary and "none" in summary and not (out / "timeout").exists()
    assert f"report: {out / 'report' / 'report.md'}" in result.stdout
    for mode in ("continuous", "none"):
        rows = stats_rows(out / mode)
        assert all(rows[f"b={b} t=16 c=2"]["Failure Count"] == "0" for b in (1, 4))


def test_repeats_walk_the_grid_three_times_and_the_report_gives_each_cell_a_mean_and_interval(
    server: str, tmp_path: Path
) -> None:
    """`embed-bench run --repeats 3` end to end: three walks with fresh passages on record, then
    every cell of the report carries a mean and a 95% interval from 3 values."""
    from reports.load.runs import load_run
    from reports.metrics.runs import run_metrics

    grid = tmp_path / "grid.toml"
    grid.write_text(TINY_GRID)
    run_dir = tmp_path / "run"
    result = embed_bench(*run_args(server, grid, run_dir, "2"), "--repeats", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    with open(run_dir / "cells.csv", newline="") as stream:
        walked = [(row["cell"], row["repeat"]) for row in csv.DictReader(stream)]
    assert sorted(walked) == sorted(
        (cell, str(r)) for cell in ("b=1 t=16 c=2", "b=4 t=16 c=2") for r in range(3)
    )
    metrics = run_metrics(load_run(run_dir))
    assert metrics.repeats == 3 and len(metrics.cells) == 2
    for cell in metrics.cells:
        assert cell.repeats["mean_latency_ms"].n == 3 and cell.repeats["throughput_tokens_per_s"].n == 3
    out = tmp_path / "report"
    report = embed_bench("report", str(run_dir), "--out", str(out))
    assert report.returncode == 0, report.stderr[-2000:]
    assert "over repeats" in (out / "report.md").read_text()
