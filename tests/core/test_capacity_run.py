"""The grid walk's side of a capacity search: each step's figures from the request records the
master collects, the next step proposed, and the answer written for run.json."""

from __future__ import annotations

import json

from embed_bench.core.capacity import Target
from embed_bench.core.capacity_run import CapacityRun
from embed_bench.core.cells import CapacitySpec
from embed_bench.core.contract import Shape
from embed_bench.core.records import RequestRecord


def record(
    cell: str,
    latency_ms: float,
    ok: bool = True,
    dropped: bool = False,
    warmup: bool = False,
    repeat: int = 0,
) -> tuple:
    sent = None if dropped else 100.0
    return RequestRecord(
        cell, repeat, int(warmup), "SelfHostedUser", "local", 0, 0, 1, 128, 128, 130, 0 if dropped else 200,
        int(ok and not dropped), "" if ok else "timeout", 100.0, sent, None if dropped else 100.1,
        None if dropped else latency_ms, None if dropped else 0.5, int(dropped), 10, 10, None, None, None, None,
    )  # fmt: skip


def test_steps_are_measured_from_their_records_and_the_answer_is_written(tmp_path) -> None:
    spec = CapacitySpec(
        shapes=(Shape(1, 128),), target=Target(200.0, 99.0), start_rate=10, step_duration_s=10
    )
    run = CapacityRun(spec, tmp_path)
    first = run.next_step()
    assert first is not None and first.name == "r=10 b=1 t=128"
    run.on_rows([record(first.name, 50.0) for _ in range(99)] + [record(first.name, 5000.0, warmup=True)])
    run.on_rows([record("b=1 t=128 c=1", 900.0)])  # another cell's rows are not the step's
    assert run.measured(first.name)
    second = run.next_step()
    assert second is not None and second.request_rate == 20
    # 100 offered: 94 fast, 6 dropped -> 94% success misses the 99% target, whatever the p95.
    run.on_rows([record(second.name, 50.0) for _ in range(94)] + [record(second.name, 0, dropped=True)] * 6)
    assert run.measured(second.name)
    third = run.next_step()
    assert third is not None and third.request_rate == 15  # the bisection
    result = run.finish()
    assert result.capacity_requests_per_s == 10 and not result.converged
    written = json.loads((tmp_path / "capacity.json").read_text())
    assert written["slo"] == {"p95_ms": 200.0, "success_pct": 99.0}
    capacity = written["capacity"]
    assert (capacity["requests_per_s"], capacity["tokens_per_s"]) == (10, 99 * 128 / 10)
    assert capacity["lowest_failing_rate_per_s"] == 20 and [s["meets"] for s in capacity["steps"]] == [
        True,
        False,
    ]
    assert capacity["steps"][1]["success_pct"] == 94.0


def test_a_step_without_records_ends_the_search(tmp_path) -> None:
    run = CapacityRun(CapacitySpec(shapes=(Shape(1, 32),), target=Target(100.0)), None)
    step = run.next_step()
    assert step is not None and not run.measured(step.name)
    assert run.finish().capacity_requests_per_s == 0


def test_a_step_that_drew_no_arrival_runs_again_twice_as_long_as_a_repeat(tmp_path) -> None:
    """Poisson arrivals at 2/s over a 2 s step draw none one time in 55: no evidence either way, so
    the step runs again (its next repeat), twice as long, and the answer names the repeat measured.
    (The CI run that ended a demo's search on such a step: issue 18's stop.)"""
    spec = CapacitySpec(shapes=(Shape(1, 16),), target=Target(500.0), start_rate=2, step_duration_s=2)
    run = CapacityRun(spec, tmp_path)
    first = run.next_step()
    assert first is not None and (first.name, first.duration_s, run.repeat) == ("r=2 b=1 t=16", 2, 0)
    assert run.measured(first.name, 0, planned=0)  # nothing due: the search goes on
    again = run.next_step()
    assert again is not None and (again.name, again.duration_s, run.repeat) == ("r=2 b=1 t=16", 4, 1)
    run.on_rows([record(again.name, 40.0, repeat=1) for _ in range(8)])
    assert run.measured(again.name, 1, planned=8)
    third = run.next_step()
    assert third is not None and (third.request_rate, third.duration_s) == (4, 2)  # the ramp goes on
    capacity = run.record(run.finish())["capacity"]
    assert [(step["cell"], step["repeat"]) for step in capacity["steps"]] == [("r=2 b=1 t=16", 1)]


def test_a_step_that_keeps_drawing_nothing_ends_the_search_saying_what_to_change(tmp_path, caplog) -> None:
    spec = CapacitySpec(shapes=(Shape(1, 16),), target=Target(500.0), start_rate=0.1, step_duration_s=1)
    run = CapacityRun(spec, tmp_path)
    durations = []
    for repeat in range(4):
        step = run.next_step()
        assert step is not None and run.repeat == repeat
        durations.append(step.duration_s)
        if repeat < 3:
            assert run.measured(step.name, repeat, planned=0)
    assert durations == [1, 2, 4, 8]
    assert not run.measured(step.name, 3, planned=0)  # a fourth empty step: the search ends
    assert "lengthen --capacity-step-s or raise --capacity-start-rate" in caplog.text
    assert run.finish().capacity_requests_per_s == 0


def test_a_step_whose_records_never_arrived_still_ends_the_search(tmp_path) -> None:
    """Arrivals were drawn (planned 5) but no record came: something was lost, not a quiet step."""
    run = CapacityRun(CapacitySpec(shapes=(Shape(1, 32),), target=Target(100.0)), None)
    step = run.next_step()
    assert step is not None and not run.measured(step.name, 0, planned=5)
