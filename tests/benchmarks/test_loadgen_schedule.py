"""``benchmarks/loadgen.py --schedule`` judges the real Locust sender against the ASKED rate: it passes
a sender that keeps a modest rate and fails one that cannot (a process that blocks 20 ms per send,
asked for twice what that allows), naming why, with exit status 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOADGEN = REPO / "benchmarks" / "loadgen.py"
SLOW_SENDER = Path(__file__).with_name("slow_sender.py")

pytestmark = [pytest.mark.usefixtures("spawn"), pytest.mark.serial]


def run_schedule(out: Path, rate: float, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    command = [
        sys.executable, str(LOADGEN), "--schedule", "--rates", f"{rate:g}", "--duration", "4",
        "--topology", "one process", "--out", str(out), *extra,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert (out / "schedule.json").exists(), result.stdout[-3000:] + result.stderr[-3000:]
    return result, json.loads((out / "schedule.json").read_text())


def test_a_sender_that_keeps_the_asked_rate_passes(tmp_path: Path) -> None:
    result, report = run_schedule(tmp_path, 20)
    (cell,) = report["cells"]
    assert result.returncode == 0, result.stdout[-3000:]
    assert "schedule check: PASS (1 of 1 cells passed)" in result.stdout
    assert cell["passed"] and cell["problems"] == []
    low, high = cell["interval"]["low"], cell["interval"]["high"]
    assert (low, high) == (52, 111)  # Poisson(20 x 4 = 80), 99.9%
    assert low <= cell["sent_in_cell"] <= high and cell["dropped"] == 0


def test_a_deliberately_slow_sender_fails_the_check(tmp_path: Path) -> None:
    result, report = run_schedule(tmp_path, 100, "--locustfile", str(SLOW_SENDER))
    (cell,) = report["cells"]
    assert result.returncode == 1, result.stdout[-3000:]
    assert "schedule check: FAIL (0 of 1 cells passed)" in result.stdout
    # The plan itself offered the asked rate; the sender delivered at most 50/s of it within the cell.
    assert cell["interval"]["low"] <= cell["planned"] <= cell["interval"]["high"]
    assert cell["sent_in_cell"] < cell["interval"]["low"]
    assert cell["achieved_per_s"] <= 55
    problems = " | ".join(cell["problems"])
    assert f"sent {cell['sent_in_cell']} within the cell" in problems
    assert "send lag p99" in problems
    assert "FAIL one process at 100/s: sent" in result.stdout
