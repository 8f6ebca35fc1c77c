"""benchmarks/frontends.py: its ratio table (fast), and one tiny real run against the real server."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.benchmarks.scripts import BENCHMARKS, load_script


def cell(round_: int, frontends: int, b: int, tokens_per_s: float):
    module = load_script("frontends")
    return module.Cell(round_, frontends, b, 8, tokens_per_s / 100, tokens_per_s, 10.0, 0, "00:00:00", {})


def test_each_round_is_compared_with_its_own_baseline() -> None:
    module = load_script("frontends")
    cells = [cell(1, 1, 1, 100.0), cell(1, 2, 1, 150.0), cell(2, 2, 1, 90.0), cell(2, 1, 1, 60.0)]
    table = module.ratio_table(cells, [1, 2], [1])
    rows = {line.split("|")[2].strip(): line for line in table[2:]}
    # Round 1: 150/100; round 2: 90/60 -- never round 2's cell against round 1's baseline.
    assert "| 1.50, 1.50 | 1.50 |" in rows["2"]
    assert "| 1.00, 1.00 | 1.00 |" in rows["1"]


def test_a_tiny_run_serves_each_count_and_keeps_its_raw_files(tmp_path, spawn: None) -> None:
    out = tmp_path / "out"
    command = [sys.executable, str(BENCHMARKS / "frontends.py"), "--frontends", "1,2", "--rounds", "1"]
    command += ["--seconds", "1", "--batch-sizes", "1", "--concurrency", "2", "--client-processes", "1"]
    command += ["--model", "null:16", "--server-args", "--no-warmup --threads 4", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    cells = json.loads((out / "frontends.json").read_text())["cells"]
    assert [(c["frontends"], c["batch_size"]) for c in cells] == [(1, 1), (2, 1)]
    assert all(c["failures"] == 0 and c["tokens_per_s"] > 0 for c in cells)
    assert "median ratio" in (out / "frontends.txt").read_text()
    assert "model process for" in (out / "server-r1-f2.log").read_text()  # the split server's log
    assert "model process" not in (out / "server-r1-f1.log").read_text()


def test_the_gpu_summary_shows_the_frontends_table() -> None:
    from dataclasses import asdict

    gpu = load_script("gpu")
    cells = [cell(1, 1, 1, 100.0), cell(1, 4, 1, 300.0)]
    figures = {"args": {"frontends": [1, 4], "batch_sizes": [1]}, "cells": [asdict(c) for c in cells]}
    summary = gpu.summary_markdown("a GPU", [gpu.PartResult("frontends", "ok", 30.0, figures)])
    assert "## serve --frontends N (null model)" in summary
    assert "| 1 | 4 | 300 |" in summary and "| 3.00 | 3.00 |" in summary
