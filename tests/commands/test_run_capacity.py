"""``embed-bench run --grid capacity``: a capacity search of the bundled server on the CPU, each step a
rate cell in cells.csv, the answer in run.json."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from embed_bench.core.contract import parse_rate_cell_name
from tests.load.runs import locust_env

pytestmark = [pytest.mark.usefixtures("spawn"), pytest.mark.serial]

MAX_STEPS = 12


def test_a_capacity_search_converges_and_its_answer_reaches_run_json(tmp_path: Path) -> None:
    """A generous target (p95 <= 1 s), steps of 3 s from 4 requests/s: the ramp doubles until a step
    misses, then bisects to within 5%; the answer is the highest passing step."""
    from tests.support.target import running_target_server

    out = tmp_path / "run"
    # One torch thread: the cores are shared with other suites (docs/open-loop.md, notes).
    with running_target_server("--batching", "continuous", env={"OMP_NUM_THREADS": "1"}) as url:
        result = subprocess.run(
            [
                sys.executable, "-m", "embed_bench", "run", "--backend", "self-hosted", "--host", url,
                "--out", str(out), "--grid", "capacity", "--batch-size", "1", "--passage-tokens", "128",
                "--slo-p95-ms", "1000", "--request-rate", "4", "--cell-duration", "3",
                "--max-in-flight", "64", "--seed", "7",
                "--confirm-repeats", "0",  # the search alone: confirmation is tested in tests/core
            ],
            capture_output=True, text=True, timeout=240, env=locust_env(),
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["slo"] == {"p95_ms": 1000.0, "success_pct": 99.9}
    capacity = run["capacity"]
    steps = capacity["steps"]
    print(
        f"\n{capacity['description']}: "
        + ", ".join(f"{s['cell']} p95 {s['p95_latency_ms']:.0f} ms" for s in steps)
    )
    assert capacity["converged"] and len(steps) <= MAX_STEPS
    passing = [step for step in steps if step["meets"]]
    assert capacity["requests_per_s"] == max(step["rate_per_s"] for step in passing)
    best = next(step for step in passing if step["rate_per_s"] == capacity["requests_per_s"])
    assert capacity["tokens_per_s"] == best["goodput_tokens_per_s"] > 0
    if not capacity["at_rate_limit"]:
        assert capacity["lowest_failing_rate_per_s"] <= capacity["requests_per_s"] * 1.05 + 0.01
    # Every step is a rate cell of cells.csv, in the order the search took them.
    with (out / "cells.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["cell"] for row in rows] == [step["cell"] for step in steps]
    for row, step in zip(rows, steps, strict=True):
        parsed = parse_rate_cell_name(row["cell"])
        assert parsed is not None and parsed.request_rate == step["rate_per_s"] == float(row["request_rate"])
        assert row["users"] == "64" and row["completed"]
    # The console says what it searches, each step's p95 and verdict, and ends with the answer.
    console = result.stdout.splitlines()
    assert "a capacity search (b=1 t=128 at p95 <= 1000 ms and >= 99.9% ok, from 4 requests/s)" in console[0]
    outcomes = [line for line in console if line.startswith("[") and not line.endswith(": running")]
    assert len(outcomes) == len(steps)
    for line, step in zip(outcomes, steps, strict=True):
        verdict = "met (<= 1000 ms)" if step["meets"] else "missed"
        assert f"] {step['cell']}: " in line and f"p95 {step['p95_latency_ms']:,.0f} ms: {verdict}" in line
    bound = "at least " if capacity["at_rate_limit"] else ""
    answer = f"capacity {bound}{capacity['requests_per_s']:g} requests/s (95% interval "
    assert any(line.startswith(answer) and "at p95 <= 1000 ms" in line for line in console), console
