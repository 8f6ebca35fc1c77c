"""Did a load generator keep an open-loop schedule? Its counts and lag, judged against the asked rate.

A rate cell's own plan cannot be the yardstick: "achieved / offered" with the offer taken from the
plan (planned arrivals / duration) is 1.0 for any generator that sends what it planned, and says
nothing about whether the plan offered the asked rate, or whether the requests left on time. So the
check compares both counts with the rate that was asked:

- the planned arrivals must fall inside the central interval of ``Poisson(rate x duration)``
  (``embed_bench.core.arrivals.arrival_count_interval``): the schedule offers the asked rate;
- the requests sent within the cell must fall inside the same interval: the sender delivered it
  (a sender that falls behind sends its late requests after the cell, or drops them);
- nothing dropped, nothing failed, the send lag's p99 under a bound, and the planned inter-arrival
  times consistent with the exponential (a Kolmogorov-Smirnov p-value, computed by the caller).

Each failed condition is one sentence in ``problems``; none means the cell passes. Pure: no Locust,
no numpy, so the benchmark and its tests share it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from embed_bench.core.arrivals import CountInterval, arrival_count_interval

DEFAULT_CONFIDENCE = 0.999
DEFAULT_MAX_LAG_P99_MS = 10.0  # "a few ms": one busy process at 400/s measured 5.4 ms on 2 cores
DEFAULT_MIN_KS_P = 0.001


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of sorted values (NaN for none)."""
    if not ordered:
        return math.nan
    return ordered[max(math.ceil(q / 100.0 * len(ordered)) - 1, 0)]


@dataclass(frozen=True)
class ScheduleLimits:
    """What a cell must meet: the interval's confidence, the lag bound and the fit's p-value."""

    confidence: float = DEFAULT_CONFIDENCE
    max_lag_p99_ms: float = DEFAULT_MAX_LAG_P99_MS
    min_ks_p: float = DEFAULT_MIN_KS_P


@dataclass(frozen=True)
class ScheduleAccuracy:
    """One rate cell's counts against its asked rate, and what fails."""

    asked_per_s: float
    duration_s: float
    planned: int
    sent_in_cell: int
    dropped: int
    failed: int
    lag_p99_ms: float
    ks_p: float
    interval: CountInterval
    problems: tuple[str, ...]

    @property
    def achieved_per_s(self) -> float:
        return self.sent_in_cell / self.duration_s

    @property
    def achieved_vs_asked(self) -> float:
        return self.achieved_per_s / self.asked_per_s

    @property
    def passed(self) -> bool:
        return not self.problems


def check_schedule(
    asked_per_s: float,
    duration_s: float,
    *,
    planned: int,
    sent_in_cell: int,
    dropped: int,
    failed: int,
    lags_ms: Sequence[float],
    ks_p: float,
    limits: ScheduleLimits = ScheduleLimits(),
) -> ScheduleAccuracy:
    """Judge one cell; ``lags_ms`` are the sent requests' ``sent_at - planned_at`` in ms, any order."""
    interval = arrival_count_interval(asked_per_s, duration_s, limits.confidence)
    lag_p99 = nearest_rank(sorted(lags_ms), 99)
    where = f"outside the {limits.confidence:.1%} interval {interval.text} of Poisson({interval.expected:g})"
    problems: list[str] = []
    if not interval.contains(planned):
        problems.append(f"planned {planned} arrivals, {where}: the schedule does not offer {asked_per_s:g}/s")
    if not interval.contains(sent_in_cell):
        problems.append(
            f"sent {sent_in_cell} within the cell ({sent_in_cell / duration_s:.2f}/s against the asked "
            f"{asked_per_s:g}/s), {where}"
        )
    if dropped:
        problems.append(f"{dropped} arrivals dropped (no sender free in time)")
    if failed:
        problems.append(f"{failed} requests failed")
    if not lag_p99 <= limits.max_lag_p99_ms:  # NaN (nothing sent) fails too
        problems.append(f"send lag p99 {lag_p99:.2f} ms over {limits.max_lag_p99_ms:g} ms")
    if not ks_p >= limits.min_ks_p:
        problems.append(
            f"planned gaps fit the exponential of {asked_per_s:g}/s with p = {ks_p:.2g} < {limits.min_ks_p:g}"
        )
    return ScheduleAccuracy(
        asked_per_s,
        duration_s,
        planned,
        sent_in_cell,
        dropped,
        failed,
        lag_p99,
        ks_p,
        interval,
        tuple(problems),
    )
