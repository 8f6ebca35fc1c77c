"""The capacity's 95% interval: order-statistic bounds of a p95, each rate's verdict (pass, fail,
straddle) with its repeats pooled, the confirmation steps the search proposes, and describe()."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import pytest

from embed_bench.core.capacity import (
    FAIL,
    PASS,
    STRADDLE,
    CapacityError,
    CapacitySearch,
    StepResult,
    Target,
    capacity_interval,
    confirmation_duration_s,
    p95_bounds,
    p95_ranks,
)
from embed_bench.core.capacity_run import CapacityRun
from embed_bench.core.cells import CapacitySpec
from embed_bench.core.contract import Shape
from tests.core.test_capacity_run import record

TARGET = Target(100.0)


def step(rate: float, latencies: list[float], success_pct: float = 100.0) -> StepResult:
    """A step whose sent requests took these latencies (all offered were sent)."""
    n = len(latencies)
    return StepResult.from_requests(
        rate, 10.0, latencies, [True] * n, [128] * n, offered=n
    ) if success_pct == 100.0 else StepResult(
        rate, StepResult.from_requests(rate, 10.0, latencies, [True] * n, [128] * n, offered=n).p95_latency_ms,
        success_pct, rate * 128, latencies_ms=tuple(sorted(latencies)), offered=n,
    )  # fmt: skip


def ramp(n: int, start: float, stop: float) -> list[float]:
    """n latencies evenly from start to stop (ms): rank k is start + (k - 1) x the spacing."""
    return [start + (stop - start) * k / (n - 1) for k in range(n)]


def test_the_ranks_for_200_requests_match_a_hand_calculation() -> None:
    """B ~ Bin(200, 0.95), exact rationals: P(B <= 183) = 0.0238 <= 0.025 < P(B <= 184), so l = 184;
    P(B >= 197) = 0.0090 <= 0.025 < P(B >= 196) = 0.0264, so u = 197. Coverage P(184 <= B <= 196)."""
    n, p = 200, Fraction(19, 20)
    pmf = [math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(n + 1)]
    assert float(sum(pmf[:184])) == pytest.approx(0.023799, abs=1e-6)
    assert sum(pmf[:184]) <= Fraction(1, 40) < sum(pmf[:185])
    assert sum(pmf[197:]) <= Fraction(1, 40) < sum(pmf[196:])
    assert p95_ranks(200) == (184, 197)
    assert float(sum(pmf[184:197])) >= 0.95  # ranks 184..196 of B: the coverage of [X(184), X(197)]
    latencies = [float(k) for k in range(1, 201)]  # rank k is k ms
    assert p95_bounds(latencies) == (184.0, 197.0)


def test_small_samples_cannot_be_bounded_above() -> None:
    """0.95^n <= 0.025 needs n >= 72: below that no order statistic bounds a p95 from above."""
    assert p95_ranks(71)[1] == 72 and p95_ranks(72)[1] == 72
    assert p95_bounds([float(k) for k in range(1, 72)])[1] == math.inf
    assert p95_bounds([float(k) for k in range(1, 73)])[1] == 72.0


def test_a_confident_pass_a_confident_fail_and_a_straddle() -> None:
    steps = [
        step(10, ramp(200, 10, 60)),  # p95 ~57 ms, bounds ~56-59: passes 100 ms confidently
        step(20, ramp(200, 40, 103)),  # p95 ~100 ms (meets), bounds ~98-102: straddles
        step(30, ramp(200, 200, 400)),  # everything above the target: fails confidently
    ]
    interval = capacity_interval(TARGET, steps)
    assert [(rate.rate_per_s, rate.verdict) for rate in interval.rates] == [
        (10, PASS), (20, STRADDLE), (30, FAIL),
    ]  # fmt: skip
    assert interval.rates[1].meets and interval.rates[1].p95_low_ms <= 100 < interval.rates[1].p95_high_ms
    assert interval.lower_requests_per_s == 10 and interval.lower_tokens_per_s == 0.0 + 200 * 128 / 10
    assert interval.upper_requests_per_s == 30
    assert interval.straddling_rates == (20,)


def test_a_success_failure_fails_confidently_whatever_the_latency() -> None:
    interval = capacity_interval(TARGET, [step(10, ramp(200, 1, 5)), step(20, ramp(200, 1, 5), 99.0)])
    assert [rate.verdict for rate in interval.rates] == [PASS, FAIL]
    assert (interval.lower_requests_per_s, interval.upper_requests_per_s) == (10, 20)


def test_repeats_at_one_rate_are_pooled() -> None:
    """One repeat of 60 requests alone cannot pass (n < 72); two pooled (120) can. A fast repeat and a
    slower one (p95 102 ms alone) pool into one straddling rate, not a pass and a fail."""
    alone = capacity_interval(TARGET, [step(10, ramp(60, 10, 50))])
    assert alone.rates[0].verdict == STRADDLE and alone.lower_requests_per_s == 0
    pooled = capacity_interval(TARGET, [step(10, ramp(60, 10, 50)), step(10, ramp(60, 12, 52))])
    (rate,) = pooled.rates
    assert (rate.steps, rate.requests, rate.verdict) == (2, 120, PASS)
    assert pooled.lower_requests_per_s == 10
    mixed = capacity_interval(TARGET, [step(20, ramp(200, 10, 90)), step(20, ramp(200, 20, 106))])
    (rate,) = mixed.rates
    assert rate.verdict == STRADDLE and rate.requests == 400
    # one repeat missed, but pooled the rate meets: nothing tried bounds the capacity from above
    assert mixed.straddling_rates == (20,) and mixed.upper_requests_per_s is None


def test_the_upper_bound_is_where_every_rate_upwards_fails() -> None:
    """A pass above a failure widens the interval past it (the noise a bisection's bracket hides); the
    upper bound is where every rate upwards fails confidently, else where every one misses."""
    fast, slow, slower = ramp(200, 10, 60), ramp(200, 90, 110), ramp(200, 200, 300)
    steps = [step(10, fast), step(20, slow), step(25, fast), step(30, slow), step(40, slower)]
    interval = capacity_interval(TARGET, steps)
    assert (interval.lower_requests_per_s, interval.upper_requests_per_s) == (10, 30)
    near = ramp(200, 0, 106)  # p95 100.7 ms, just over the 100 ms target: a miss that straddles
    steps = [step(10, fast), step(20, near), step(30, near), step(40, slower)]
    assert capacity_interval(TARGET, steps).upper_requests_per_s == 40  # the confident failure
    steps = [step(10, fast), step(20, near), step(30, near)]
    assert capacity_interval(TARGET, steps).upper_requests_per_s == 20  # no confident one: the misses


def test_the_lower_bound_needs_every_lower_rate_passing() -> None:
    """A confident pass above a rate that fails on its p95 is not believed as a lower bound; it leaves
    the capacity unbounded from above (no rate tried above it failed)."""
    steps = [step(10, ramp(200, 10, 60)), step(20, ramp(200, 90, 110)), step(30, ramp(200, 10, 60))]
    interval = capacity_interval(TARGET, steps)
    assert interval.lower_requests_per_s == 10 and interval.upper_requests_per_s is None


def test_the_search_confirms_its_answer_then_stops() -> None:
    """Knee at 100/s; each step of 200 requests with latency growing with the rate. The search
    converges, then runs 1x, 0.85x, 1.15x of its answer twice, and stops."""

    def measure(rate: float) -> StepResult:
        p95 = 50.0 * (1 + rate / 100) ** 2  # 100 ms at about 41.4/s
        return step(rate, ramp(200, p95 / 3, p95 * 1.05))

    searcher = CapacitySearch(TARGET, 10.0)
    rates = []
    while (rate := searcher.next_rate()) is not None:
        if searcher.confirming:
            rates.append(rate)
        searcher.record(measure(rate))
    result = searcher.result
    c = result.capacity_requests_per_s
    assert result.converged and rates == pytest.approx([c, 0.85 * c, 1.15 * c] * 2)
    assert len(result.confirmation_steps) == 6 and searcher.done
    assert all(s.rate_per_s != 1.15 * c for s in result.steps)  # the point estimate is the search's
    interval = result.interval
    assert interval is not None
    assert interval.lower_requests_per_s <= c < interval.upper_requests_per_s  # type: ignore[operator]
    text = result.describe()
    assert text.startswith(f"capacity {c:.4g} requests/s (95% interval ")
    print(f"\n{text}")


def test_no_confirmation_without_an_answer_or_at_the_rate_bound() -> None:
    never = CapacitySearch(TARGET, 4.0, min_rate_per_s=1.0)
    while (rate := never.next_rate()) is not None:
        never.record(step(rate, ramp(200, 500, 900)))
    assert never.result.confirmation_steps == ()
    bound = CapacitySearch(TARGET, 10.0, max_rate_per_s=20.0)
    while (rate := bound.next_rate()) is not None:
        bound.record(step(rate, ramp(200, 1, 5)))
    assert [s.rate_per_s for s in bound.steps] == [10.0, 20.0]


def test_describe_names_the_interval_and_the_rates_that_straddle() -> None:
    searcher = CapacitySearch(
        TARGET,
        10.0,
        steps=[step(10, ramp(200, 10, 60)), step(20, ramp(200, 40, 103)), step(21, ramp(200, 200, 400))],
        confirm_factors=(),
    )
    assert searcher.done
    assert searcher.result.describe() == (
        "capacity 20 requests/s (95% interval 10-21), 2560 tokens/s at p95 <= 100 ms and success "
        ">= 99.9%; 20/s straddles the target"
    )


def test_confirmation_steps_rest_on_200_requests() -> None:
    assert confirmation_duration_s(2.0) == 100.0  # past the search's 60 s cap
    assert confirmation_duration_s(50.0, search_duration_s=10.0) == 10.0  # never shorter than a step
    assert confirmation_duration_s(0.1) == 600.0  # at most 10 minutes: 60 requests at 0.1/s


def test_the_driver_writes_the_interval_and_runs_a_repeat_as_a_repeat(tmp_path) -> None:
    spec = CapacitySpec(
        shapes=(Shape(1, 128),), target=Target(200.0, 99.0), start_rate=10, step_duration_s=20
    )
    run = CapacityRun(spec, tmp_path)
    run.search.max_rate_per_s = 20.0
    run.search.max_steps = 3
    seen = []
    while (cell := run.next_step()) is not None:
        seen.append((cell.name, run.repeat, cell.duration_s))
        latency = 500.0 if cell.request_rate >= 15 else 50.0
        run.on_rows([record(cell.name, latency)._replace(repeat=run.repeat) for _ in range(200)])
        assert run.measured(cell.name, run.repeat)
    assert seen[:3] == [("r=10 b=1 t=128", 0, 20), ("r=20 b=1 t=128", 0, 20), ("r=15 b=1 t=128", 0, 20)]
    assert [(name, repeat) for name, repeat, _ in seen[3:]] == [
        ("r=10 b=1 t=128", 1), ("r=8.5 b=1 t=128", 0), ("r=11.5 b=1 t=128", 0),
        ("r=10 b=1 t=128", 2), ("r=8.5 b=1 t=128", 1), ("r=11.5 b=1 t=128", 1),
    ]  # fmt: skip
    assert seen[4][2] == pytest.approx(200 / 8.5)  # 200 requests, past the step's 20 s
    run.finish()
    capacity = json.loads((tmp_path / "capacity.json").read_text())["capacity"]
    assert len(capacity["steps"]) == 3 and len(capacity["confirmation"]) == 6
    assert capacity["confirmation"][3] == {
        **capacity["confirmation"][3],
        "cell": "r=10 b=1 t=128",
        "repeat": 2,
    }
    interval = capacity["interval"]
    assert interval["lower_requests_per_s"] == 11.5 and interval["upper_requests_per_s"] == 15
    assert interval["straddling_rates_per_s"] == []
    assert [rate["verdict"] for rate in interval["rates"]] == ["pass", "pass", "pass", "fail", "fail"]


def test_confirmations_that_all_miss_go_down_until_a_rate_passes_confidently() -> None:
    """The search's short steps (60 requests: never a confident p95) pass up to a lucky 19.5/s; in the
    confirmation every rate from 14/s up misses. With no rate passing confidently, further steps go
    down by 0.85x from the lowest confirmation until one passes (here the second: 14.1 -> 12.0/s),
    and the interval's lower bound is that rate."""
    fast, slow = ramp(200, 10, 60), ramp(200, 90, 110)
    search = CapacitySearch(TARGET, 8.0, confirm_repeats=1)
    while (rate := search.next_rate()) is not None:
        if not search.confirming:
            search.record(step(rate, fast[::3][:60] if rate < 20 else slow))
        else:
            search.record(step(rate, fast if rate < 14 else slow))
    result = search.result
    rates = [round(step.rate_per_s, 1) for step in result.confirmation_steps]
    assert rates == [19.5, 16.6, 22.4, 14.1, 12.0]
    assert result.interval is not None
    assert result.interval.lower_requests_per_s == pytest.approx(19.5 * 0.85**3)
    assert result.capacity_requests_per_s == pytest.approx(19.5 * 0.85**3)  # the pooled estimate
    none_left = CapacitySearch(TARGET, 8.0, confirm_repeats=1, confirm_extra=0)
    while (rate := none_left.next_rate()) is not None:
        none_left.record(
            step(rate, (fast[::3][:60] if rate < 20 else slow) if not none_left.confirming else slow)
        )
    assert none_left.result.interval is not None and none_left.result.interval.lower_requests_per_s == 0
    with pytest.raises(CapacityError, match="further confirmation steps"):
        CapacitySearch(TARGET, 8.0, confirm_extra=11)
