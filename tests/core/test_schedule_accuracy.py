"""The schedule check judges a cell against the rate that was asked, and each failure says why."""

from __future__ import annotations

import pytest

from embed_bench.core.schedule_accuracy import ScheduleLimits, check_schedule, nearest_rank

ON_TIME = [0.8] * 590 + [1.5] * 10  # ms


def judge(**overrides: object):
    cell = {
        "planned": 600, "sent_in_cell": 600, "dropped": 0, "failed": 0, "lags_ms": ON_TIME, "ks_p": 0.4,
    } | overrides  # fmt: skip
    return check_schedule(20.0, 30.0, **cell)  # type: ignore[arg-type]


def test_a_cell_that_kept_the_asked_rate_passes() -> None:
    accuracy = judge()
    assert accuracy.passed, accuracy.problems
    assert accuracy.achieved_vs_asked == pytest.approx(1.0)
    assert (accuracy.interval.low, accuracy.interval.high) == (521, 682)
    assert accuracy.lag_p99_ms == 1.5


def test_a_sender_that_sent_its_whole_plan_late_fails_on_the_asked_rate() -> None:
    """The old check's blind spot: sent / planned would be 1.0 after the cell; within it, half."""
    accuracy = judge(sent_in_cell=300, lags_ms=[float(x) for x in range(600)])
    assert not accuracy.passed
    assert (
        "sent 300 within the cell (10.00/s against the asked 20/s), outside the 99.9% interval"
        in (accuracy.problems[0])
    )
    assert "send lag p99 593.00 ms over 10 ms" in accuracy.problems


def test_a_plan_that_offers_another_rate_fails_even_when_sent_exactly() -> None:
    accuracy = judge(planned=500, sent_in_cell=500, lags_ms=[0.8] * 500)
    assert [p.split(",")[0] for p in accuracy.problems] == [
        "planned 500 arrivals",
        "sent 500 within the cell (16.67/s against the asked 20/s)",
    ]


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"dropped": 3}, "3 arrivals dropped"),
        ({"failed": 2}, "2 requests failed"),
        ({"ks_p": 0.0001}, "p = 0.0001 < 0.001"),
        ({"lags_ms": []}, "send lag p99 nan ms"),
    ],
)
def test_each_other_condition_fails_the_cell_alone(overrides: dict, problem: str) -> None:
    accuracy = judge(**overrides)
    assert len(accuracy.problems) == 1 and problem in accuracy.problems[0]


def test_limits_are_the_callers() -> None:
    strict = ScheduleLimits(max_lag_p99_ms=1.0)
    assert not check_schedule(
        20.0, 30.0, planned=600, sent_in_cell=600, dropped=0, failed=0, lags_ms=ON_TIME, ks_p=0.4,
        limits=strict,
    ).passed  # fmt: skip


def test_nearest_rank() -> None:
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 99) == 4.0
    assert nearest_rank([5.0], 0) == 5.0
