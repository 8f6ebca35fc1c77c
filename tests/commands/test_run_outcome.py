"""A run's outcome: each cell's line as it ends, the summary, run.json's status and the exit code,
from real `embed-bench run` walks against the Jina API contract double (as an OpenAI-compatible
server)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.doubles.process import running_double
from tests.load.runs import locust_env, write_grid

pytestmark = pytest.mark.usefixtures("spawn")

KEY = "jina_double_key"


def run(
    url: str, out: Path, *args: str, key: str = KEY, backend: str = "openai"
) -> subprocess.CompletedProcess:
    command = ["run", "--backend", backend, "--host", url, "--model", "jina-embeddings-v3"]
    return subprocess.run(
        [sys.executable, "-m", "embed_bench", *command, "--api-key", key, "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=locust_env(),
    )


def cells(out: Path) -> list[dict[str, str]]:
    with (out / "cells.csv").open(newline="") as stream:
        return list(csv.DictReader(stream))


def status(out: Path) -> str:
    return json.loads((out / "run.json").read_text())["status"]


def test_a_first_cell_of_client_errors_stops_the_walk_and_fails_the_run(tmp_path: Path) -> None:
    grid = write_grid(tmp_path / "grid.toml", [(2, 1, 16), (2, 4, 16), (2, 8, 16)])
    out = tmp_path / "run"
    with running_double("jina_api", "--api-key", KEY) as double:
        # The jina backend (the double is the Jina API): the openai backend's pre-run check would
        # refuse the key before the walk.
        result = run(
            double.url,
            out,
            "--grid",
            str(grid),
            "--requests-per-user",
            "3",
            key="jina_not_the_key",
            backend="jina",
        )
        received = double.ledger()["received"]
    assert result.returncode == 1, result.stderr
    assert "[1/3] b=1 t=16 c=2: 0/6 ok, HTTP 401" in result.stdout
    assert "error: every request of the first cell failed (HTTP 401" in result.stderr
    assert status(out) == "failed (stopped after the first cell)"
    assert [row["cell"] for row in cells(out)] == ["b=1 t=16 c=2"]  # the rest was not walked
    assert received == 2 * (1 + 3)  # the first cell's warm-ups and measured requests only
    assert "2 cell(s) not walked" in result.stdout


def test_partial_failures_show_per_cell_and_max_failure_pct_sets_the_exit_code(tmp_path: Path) -> None:
    # No --grid: the single cell of --batch-size, --passage-tokens and -u, as plain Locust runs it.
    single_cell = ("--batch-size", "2", "--passage-tokens", "16", "-u", "2", "--requests-per-user", "6")
    faults = ("--fault", "rate_tokens:4", "--retry-after", "0.1")
    with running_double("jina_api", "--api-key", KEY, *faults) as double:
        strict = run(double.url, tmp_path / "strict", *single_cell, "--max-failure-pct", "5")
        lenient = run(double.url, tmp_path / "lenient", *single_cell, "--max-failure-pct", "50")
    (row,) = cells(tmp_path / "strict")
    assert (row["cell"], row["planned"], row["completed"]) == ("b=2 t=16 c=2", "12", "12")
    failed = 12 - int(row["succeeded"])
    assert failed > 0 and row["failures"] == f"HTTP 429 RATE_TOKEN_LIMIT_EXCEEDED ({failed})"
    assert (
        f"[1/1] b=2 t=16 c=2: {12 - failed}/12 ok, HTTP 429 RATE_TOKEN_LIMIT_EXCEEDED ({failed})"
        in strict.stdout
    )
    assert f"failures: HTTP 429 RATE_TOKEN_LIMIT_EXCEEDED ({failed})" in strict.stdout
    assert strict.returncode == 1 and "over --max-failure-pct 5" in strict.stderr
    assert status(tmp_path / "strict") == "completed"  # the run itself did what it planned
    assert json.loads((tmp_path / "strict" / "run.json").read_text())["grid"] == "single"
    assert lenient.returncode == 0, lenient.stderr


def test_cells_cut_short_report_completed_of_planned_in_every_repeat(tmp_path: Path) -> None:
    grid = write_grid(tmp_path / "grid.toml", [(1, 1, 16)])
    out = tmp_path / "run"
    args = ("--grid", str(grid), "--requests-per-user", "40", "--cell-max-seconds", "2", "--repeats", "2")
    with running_double("jina_api", "--api-key", KEY, "--latency-ms", "200") as double:
        result = run(double.url, out, *args)
    assert result.returncode == 0, result.stderr
    rows = cells(out)
    assert [(row["cell"], row["repeat"], row["planned"]) for row in rows] == [
        ("b=1 t=16 c=1", "0", "40"),
        ("b=1 t=16 c=1", "1", "40"),
    ]
    for number, row in enumerate(rows, start=1):
        completed = int(row["completed"])
        assert 0 < completed < 40 and row["succeeded"] == row["completed"]
        assert (
            f"[{number}/2] b=1 t=16 c=1 (repeat {number}): {completed}/40 ok, {40 - completed} unsent or unfinished"
            in result.stdout
        )
    assert status(out) == "partial (2 cell(s) cut short)"
    assert "2 cell(s) cut short: b=1 t=16 c=1" in result.stdout
    assert json.loads((out / "run.json").read_text())["repeats"] == 2


def test_a_run_with_no_successful_request_fails_with_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with running_double("jina_api", "--api-key", KEY, "--fault", "internal") as double:
        result = run(
            double.url, out, "--batch-size", "1", "--passage-tokens", "8", "--requests-per-user", "2"
        )
    assert result.returncode == 1
    assert "error: no measured request succeeded" in result.stderr
    assert "measured requests: 0 of 2 planned succeeded (0.0%)" in result.stdout
    assert status(out) == "failed (no measured request succeeded)"


def test_a_capacity_step_that_drew_no_arrival_runs_again_longer_and_the_run_completes(
    tmp_path: Path,
) -> None:
    """Poisson arrivals at 0.6/s over 2 s draw none often (seed 3 draws none twice): such a step
    is no evidence, so it runs again as its next repeat, twice as long; the run is complete, its
    summary names the empty steps, and run.json's answer names the repeat that was measured. (A CI
    run once ended a demo's search on such a step and failed with 'no measured request succeeded'.)"""
    grid = tmp_path / "grid.toml"
    grid.write_text(
        "[capacity]\nbatch_size = 1\npassage_tokens = 16\nslo_p95_ms = 5000\n"
        "start_rate = 0.3\nstep_duration_s = 2\nmax_rate = 1.2\n"
    )
    out = tmp_path / "run"
    with running_double("jina_api", "--api-key", KEY) as double:
        result = run(double.url, out, "--grid", str(grid), "--seed", "3", "--confirm-repeats", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = cells(out)
    empty = [(row["cell"], int(row["repeat"])) for row in rows if row["planned"] == "0"]
    assert empty, "seed 3 no longer draws an empty step: pick a seed that does"
    for name, repeat in empty:  # each runs again as its next repeat
        assert any(row["cell"] == name and int(row["repeat"]) == repeat + 1 for row in rows)
        assert (
            f"{name}: no arrival drawn (nothing was due); the step runs again, twice as long" in result.stdout
        )
    assert f"{len(empty)} rate cell(s) drew no arrival, so nothing was due" in result.stdout
    assert status(out) == "completed"
    measured = {
        (step["cell"], step["repeat"])
        for step in json.loads((out / "run.json").read_text())["capacity"]["steps"]
    }
    assert not measured & set(empty)
    assert all(any(row["cell"] == c and int(row["repeat"]) == r for row in rows) for c, r in measured)
