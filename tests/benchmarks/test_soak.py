"""``benchmarks/soak.py``: its verdict counts every outcome (an exception, a 5xx, a drop fail it; 429s
count against the steady phase's 95%), checks the overload reached the admission limit and that the
worker's footprint came back to its start; and the whole script runs against the real server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.benchmarks.scripts import BENCHMARKS, load_script

soak = load_script("soak")
START = soak.Footprint(rss_mib=400.0, threads=20, fds=30)


def phase(name: str, **counts: int) -> object:
    return soak.PhaseResult(name, 5.0, 60.0, Counter({k.replace("_", " "): v for k, v in counts.items()}))


def clean_phases() -> list:
    return [
        phase("steady", **{"200": 2990, "429": 10}),
        phase("overload", **{"200": 900, "429": 2000}),
        phase("recovery", **{"200": 300}),
    ]


def problems(phases: list, end: object = START, healthy: bool = True, same: bool = True) -> list[str]:
    return soak.soak_problems(phases, START, end, healthy, same, soak.SoakLimits())


def test_a_clean_soak_passes() -> None:
    assert problems(clean_phases()) == []


@pytest.mark.parametrize(
    ("kind", "count"),
    [("ConnectionRefusedError", 1), ("Timeout", 2), ("503", 1), ("404", 1), ("dropped", 4)],
)
def test_any_outcome_but_200_and_429_fails_the_soak(kind: str, count: int) -> None:
    phases = clean_phases()
    phases[1].counts[kind] += count  # in the overload phase, where 429s are expected
    (problem,) = problems(phases)
    assert problem == f"overload: {count} requests neither 200 nor 429 ({kind} {count})"


def test_exceptions_count_against_the_steady_share() -> None:
    phases = clean_phases()
    phases[0].counts["RemoteDisconnected"] += 200
    found = problems(phases)
    assert found[0] == "steady: 200 requests neither 200 nor 429 (RemoteDisconnected 200)"
    assert found[1] == "steady: 93.4% of 3200 arrivals answered 200, under 95%"


def test_the_published_soak_mix_fails() -> None:
    """586 successes and 24,297 rejections: 2.4% 200s, a soak at the admission limit, not below it."""
    phases = clean_phases()
    phases[0] = phase("steady", **{"200": 586, "429": 24_297})
    assert problems(phases) == ["steady: 2.4% of 24883 arrivals answered 200, under 95%"]


def test_an_overload_without_429_tested_nothing() -> None:
    phases = clean_phases()
    phases[1] = phase("overload", **{"200": 900})
    assert problems(phases) == ["overload: no 429, so it never reached the admission limit"]


@pytest.mark.parametrize(
    ("end", "problem"),
    [
        (soak.Footprint(421.0, 20, 30), "RSS grew +5.2% (400.0 -> 421.0 MiB), over 5%"),
        (soak.Footprint(419.0, 21, 30), "threads 20 -> 21, beyond +-0"),
        (soak.Footprint(380.0, 20, 33), "open files 30 -> 33, beyond +-0"),
        (None, "the worker's footprint could not be read at the start or the end (worker gone)"),
    ],
)
def test_the_footprint_must_come_back_to_its_start(end: object, problem: str) -> None:
    assert problems(clean_phases(), end=end) == [problem]


def test_health_and_the_worker() -> None:
    assert problems(clean_phases(), healthy=False, same=False) == [
        "/health did not answer 200 afterwards",
        "the worker was restarted",
    ]


def test_outcome_classes() -> None:
    kinds = ["200", "429", "500", "503", "413", "dropped", "ConnectionResetError", "Timeout"]
    assert [soak.outcome_class(k) for k in kinds] == [
        "200", "429", "5xx", "5xx", "other status", "dropped", "exception", "exception",
    ]  # fmt: skip


def test_the_whole_soak_runs_against_the_real_server(tmp_path: Path, spawn: None) -> None:
    """Minutes shrunk to seconds: every phase runs, every arrival is counted once, the footprint is
    read at both ends, and the exit status is the verdict's."""
    command = [
        sys.executable, str(BENCHMARKS / "soak.py"), "--steady-minutes", "0.15",
        "--overload-minutes", "0.1", "--recovery-minutes", "0.1", "--calibration-s", "5",
        "--warm-up-s", "3", "--interval-s", "3", "--out", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert (tmp_path / "soak.json").exists(), result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "soak.json").read_text())
    names = [p["name"] for p in report["phases"]]
    assert names[:4] == ["capacity", "threads", "warm-up", "calibrate1"]
    assert names[-3:] == ["steady", "overload", "recovery"]
    open_loop = [entry for entry in report["phases"] if entry["offered_per_s"] is not None]
    assert [entry["name"] for entry in open_loop] == names[2:]
    for entry in open_loop:
        dispatch = entry["dispatch"]
        assert sum(entry["counts"].values()) == dispatch["offered"] == dispatch["sent"] + dispatch["dropped"]
    assert report["capacity_per_s"] > 0 and report["start"] and report["end"]
    assert report["exit_status"] == result.returncode == (1 if report["problems"] else 0)
    assert ("verdict: PASS" if result.returncode == 0 else "verdict: FAIL") in result.stdout
    assert (tmp_path / "soak-server.log").stat().st_size > 0
