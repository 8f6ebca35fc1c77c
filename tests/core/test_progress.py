"""The progress state: its estimate is made only on enough evidence and withdrawn once it ran out,
a grid's time left comes only from the same cells in an earlier repeat, and it reads back from the
run directory as it was written."""

from __future__ import annotations

from pathlib import Path

from embed_bench.core.progress import (
    PREPARING,
    RUNNING,
    ProcessPreparation,
    RunProgress,
    estimate_left_s,
    grid_left_s,
    preparation_left_s,
    progress_line,
    read_progress,
    write_progress,
)


def test_the_estimate_waits_for_evidence_then_extrapolates_the_rate_so_far() -> None:
    assert estimate_left_s(0, 600, 60.0) is None  # nothing built yet
    assert estimate_left_s(20, 600, 60.0) is None  # 3% < 5%: too little seen
    assert estimate_left_s(60, 600, 2.0) is None  # too short a time
    assert estimate_left_s(60, None, 60.0) is None  # unknown total
    assert estimate_left_s(60, 600, 60.0) == 540.0  # 1 a second, 540 to go
    assert estimate_left_s(600, 600, 600.0) == 0.0


def test_the_slowest_process_sets_the_preparation_left_and_a_silent_one_means_no_estimate() -> None:
    fast = ProcessPreparation(built=50, planned=100, started_at=1000.0, updated_at=1010.0)  # 10 s left
    slow = ProcessPreparation(built=10, planned=100, started_at=1000.0, updated_at=1010.0)  # 90 s left
    assert preparation_left_s({"a": fast, "b": slow}, expected=2) == 90.0
    assert preparation_left_s({"a": fast}, expected=2) is None  # b has not reported
    early = ProcessPreparation(built=1, planned=100, started_at=1000.0, updated_at=1010.0)
    assert preparation_left_s({"a": fast, "b": early}, expected=2) is None


def progress(**fields: object) -> RunProgress:
    base: dict[str, object] = {
        "step": 2,
        "steps": 3,
        "cell": "b=128 t=8192 c=8",
        "repeat": 0,
        "phase": PREPARING,
        "run_started_at": 900.0,
        "phase_started_at": 1000.0,
        "updated_at": 1060.0,
        "payloads_built": 60,
        "payloads_planned": 600,
        "left_s": 540.0,
        "processes": 1,
        "processes_reporting": 1,
    }
    return RunProgress(**{**base, **fields})  # type: ignore[arg-type]


def test_an_estimate_that_ran_out_with_work_left_is_withdrawn_not_shown_as_zero() -> None:
    state = progress()
    assert state.left_at(1060.0) == 540.0
    assert state.left_at(1100.0) == 500.0  # aged: the last report is 40 s old
    assert state.left_at(1600.0) is None  # 540 s passed and the work is not done: say nothing


def test_the_plain_line_says_cell_phase_work_elapsed_and_estimate() -> None:
    line = progress_line(progress(), now=1060.0)
    assert line.plain == (
        "cell 2/3 b=128 t=8192 c=8: preparing, payloads built 60/600 (10%), 1:00 elapsed, about 9:00 left"
    )
    running = progress(
        phase=RUNNING, requests_done=5, requests_planned=None, left_s=None, repeat=1, steps=None
    )
    assert progress_line(running, now=1005.0).plain == (
        "cell 2 b=128 t=8192 c=8 (repeat 2): running, requests done 5, 0:05 elapsed"
    )
    several = progress(processes=4, processes_reporting=3, payloads_planned=None, left_s=None)
    assert "payloads built on 3/4 processes 60," in progress_line(several, now=1060.0).plain
    assert "\x1b" not in line.plain and "\r" not in line.plain


def test_the_grid_left_comes_only_from_the_same_cells_in_an_earlier_repeat() -> None:
    steps = [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
    measured = {("a", 0): 10.0, ("b", 0): 400.0}
    assert grid_left_s(steps, 1, {("a", 0): 10.0}) is None  # b has not run: no figure
    assert grid_left_s(steps, 2, measured) == 410.0
    assert grid_left_s(steps, 3, {**measured, ("a", 1): 12.0}) == 400.0
    assert grid_left_s(steps, 4, measured) == 0.0


def test_the_run_directory_file_reads_back_and_a_broken_one_is_no_progress(tmp_path: Path) -> None:
    assert read_progress(tmp_path) is None
    write_progress(tmp_path, progress())
    assert read_progress(tmp_path) == progress()
    (tmp_path / "progress.json").write_text("{not json")
    assert read_progress(tmp_path) is None
