"""The stall server's schedule: 5 ms answers, except that anything due in the last 3 s of a 10 s
period waits for the period's end."""

from __future__ import annotations

import pytest

from tests.doubles.stall_server import StallSchedule

SCHEDULE = StallSchedule(epoch=1000.0, period_s=10.0, stall_s=3.0, latency_ms=5.0)


@pytest.mark.parametrize(
    ("arrived_at", "released_at"),
    [
        (1000.0, 1000.005),  # calm: 5 ms
        (1006.990, 1006.995),  # answered just before the stall
        (1006.996, 1010.0),  # due 1 ms into the stall: held to its end
        (1008.5, 1010.0),
        (1009.994, 1010.0),
        (1009.996, 1010.001),  # arrived in the stall, but due after it: answered 5 ms after arrival
        (1010.0, 1010.005),  # the next period is calm again
        (1017.5, 1020.0),
        (999.0, 1000.0),  # before the epoch: the previous period's stall
    ],
)
def test_release_times(arrived_at: float, released_at: float) -> None:
    assert SCHEDULE.release_at(arrived_at) == pytest.approx(released_at, abs=1e-9)


def test_without_stalls_it_only_adds_the_latency() -> None:
    assert StallSchedule(0.0, 10.0, 0.0, 0.0).release_at(1234.5) == 1234.5
