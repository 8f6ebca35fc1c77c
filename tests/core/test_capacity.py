"""Capacity search against synthetic latency curves: it converges to within 5% of the true capacity
in a bounded number of steps, from below or above, and says so when it cannot."""

from __future__ import annotations

import json
import math
import random
import time
import urllib.request
from collections.abc import Callable

import pytest

from embed_bench.core.arrivals import Mix, arrival_schedule
from embed_bench.core.capacity import (
    CapacityError,
    CapacityResult,
    CapacitySearch,
    StepResult,
    Target,
    step_duration_s,
)
from embed_bench.core.payloads import PassageFactory
from embed_bench.load.open_loop import Outcome, run_open_loop
from tests.support.open_loop_http import http_sender
from tests.support.target import running_target_server

TOKENS_PER_REQUEST = 128


def mm1(service_rate_per_s: float) -> Callable[[float], StepResult]:
    """An M/M/1 queue: the sojourn time is exponential with rate (mu - lambda), so its p95 is
    ln(20) / (mu - lambda); at or past mu the queue grows without bound and requests time out."""

    def measure(rate: float) -> StepResult:
        if rate >= service_rate_per_s:
            return StepResult(rate, math.inf, 50.0, service_rate_per_s * TOKENS_PER_REQUEST * 0.5)
        p95_ms = 1000 * math.log(20) / (service_rate_per_s - rate)
        return StepResult(rate, p95_ms, 100.0, rate * TOKENS_PER_REQUEST)

    return measure


def mm1_capacity(service_rate_per_s: float, p95_ms: float) -> float:
    return service_rate_per_s - 1000 * math.log(20) / p95_ms


def search(measure: Callable[[float], StepResult], search_: CapacitySearch) -> CapacityResult:
    while (rate := search_.next_rate()) is not None:
        search_.record(measure(rate))
    return search_.result


@pytest.mark.parametrize(
    ("service_rate", "p95_ms", "start"),
    [
        (300.0, 200.0, 8.0),  # about the bundled server on CPU: capacity 285/s
        (300.0, 20.0, 1.0),  # a tight target: capacity 150/s
        (50.0, 500.0, 1000.0),  # start far above capacity: ramp down
        (5000.0, 100.0, 0.5),  # a long ramp up
        (12.0, 1000.0, 9.0),  # start just below the capacity (9.004/s)
    ],
)
def test_converges_within_five_percent_in_bounded_steps(
    service_rate: float, p95_ms: float, start: float
) -> None:
    truth = mm1_capacity(service_rate, p95_ms)
    result = search(mm1(service_rate), CapacitySearch(Target(p95_ms), start))
    assert result.converged and not result.at_rate_limit
    assert truth / 1.05 <= result.capacity_requests_per_s <= truth
    assert result.lowest_failing_rate_per_s is not None
    assert result.lowest_failing_rate_per_s <= result.capacity_requests_per_s * 1.05
    assert result.capacity_tokens_per_s == result.capacity_requests_per_s * TOKENS_PER_REQUEST
    ramp = math.ceil(abs(math.log2(truth / start))) + 1
    assert len(result.steps) <= ramp + 5  # a factor 2 bisected to 5% takes at most 5 steps
    print(f"\nmu={service_rate:g}/s target {p95_ms:g} ms: {result.describe()} in {len(result.steps)} steps")


def test_the_success_target_binds_too() -> None:
    """Latency is fine everywhere, but past 100/s one request in 200 gets a 429."""

    def throttled(rate: float) -> StepResult:
        return StepResult(rate, 10.0, 100.0 if rate <= 100 else 99.5, rate * 32)

    result = search(throttled, CapacitySearch(Target(50.0), 10.0))
    assert 100 / 1.05 <= result.capacity_requests_per_s <= 100
    relaxed = search(throttled, CapacitySearch(Target(50.0, success_pct=99.0), 10.0, max_rate_per_s=1000.0))
    assert relaxed.at_rate_limit and relaxed.converged and relaxed.capacity_requests_per_s == 1000.0


def test_a_deployment_that_never_fails_stops_at_the_rate_bound() -> None:
    steps: list[float] = []

    def never_fails(rate: float) -> StepResult:
        steps.append(rate)
        return StepResult(rate, 1.0, 100.0, rate)

    result = search(never_fails, CapacitySearch(Target(10.0), 10.0, max_rate_per_s=100.0))
    assert steps == [10.0, 20.0, 40.0, 80.0, 100.0]
    assert result.at_rate_limit and result.capacity_requests_per_s == 100.0
    assert result.describe().startswith("at least 100 requests/s")


def test_a_deployment_that_never_passes_has_no_capacity() -> None:
    result = search(
        lambda rate: StepResult(rate, 5000.0, 100.0, rate),
        CapacitySearch(Target(10.0), 4.0, min_rate_per_s=1.0),
    )
    assert [step.rate_per_s for step in result.steps] == [4.0, 2.0, 1.0]
    assert result.capacity_requests_per_s == 0 and result.capacity_tokens_per_s == 0 and not result.converged
    assert result.describe() == "no rate tried meets p95 <= 10 ms and success >= 99.9% (lowest tried: 1/s)"


def test_no_capacity_names_the_lowest_rate_its_confirmation_tried() -> None:
    """As Infinity measured on 2 cores (benchmarks/results/cpu2-2026-12-05/journeys/infinity.txt): the
    search's steps met the target at 4 and 5 requests/s, then every confirmation missed it, down to
    2.61/s. "Lowest tried" must name 2.61, not the search steps' lowest (4)."""
    calls: list[float] = []

    def measure(rate: float) -> StepResult:
        calls.append(rate)
        searching = len(calls) <= 6
        requests = 40 if searching else 200
        p95 = 400.0 if searching and rate <= 5 else 700.0
        return StepResult.from_requests(
            rate,
            requests / rate,
            [p95] * requests,
            [True] * requests,
            [TOKENS_PER_REQUEST] * requests,
            requests,
        )

    result = search(measure, CapacitySearch(Target(500.0), 8.0, confirm_repeats=1))
    assert [step.rate_per_s for step in result.steps] == [8, 4, 6, 5, 5.5, 5.25]
    lowest = min(step.rate_per_s for step in result.confirmation_steps)
    assert result.capacity_requests_per_s == 0 and round(lowest, 2) == 2.61
    assert (
        result.describe() == "no rate tried meets p95 <= 500 ms and success >= 99.9% (lowest tried: 2.61/s)"
    )


def test_steps_are_bounded() -> None:
    result = search(mm1(1e6), CapacitySearch(Target(1000.0), 1.0, max_steps=6))
    assert len(result.steps) == 6 and not result.converged
    assert result.capacity_requests_per_s == 32.0
    assert "not converged in 6 steps" in result.describe()


def test_a_pass_above_a_fail_is_not_believed() -> None:
    """Noise near the knee (a step re-measured by hand, or a resumed search): 75/s failed, 90/s passed.
    The answer stays below the lowest failure, and the search goes on between 70 and 75."""

    def step(rate: float, passed: bool) -> StepResult:
        return StepResult(rate, 50.0 if passed else 500.0, 100.0, rate)

    searcher = CapacitySearch(
        Target(100.0),
        10.0,
        steps=[step(10, True), step(80, False), step(70, True), step(75, False), step(90, True)],
    )
    assert searcher.result.capacity_requests_per_s == 70.0
    assert searcher.result.lowest_failing_rate_per_s == 75.0
    assert searcher.next_rate() == 72.5


def test_results_must_answer_the_proposed_step() -> None:
    searcher = CapacitySearch(Target(100.0), 10.0, max_rate_per_s=10.0)
    with pytest.raises(CapacityError, match="expected the result of the step at 10/s, got one at 12/s"):
        searcher.record(StepResult(12.0, 1.0, 100.0, 1.0))
    searcher.record(StepResult(10.0, 1.0, 100.0, 1.0))
    assert searcher.done
    with pytest.raises(CapacityError, match="the capacity search is over"):
        searcher.record(StepResult(10.0, 1.0, 100.0, 1.0))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Target(0), "p95 latency target"),
        (lambda: Target(100, success_pct=101), "percentage up to 100"),
        (lambda: Target(100, success_pct=0), "success target"),
        (lambda: CapacitySearch(Target(100), -1), "start rate"),
        (lambda: CapacitySearch(Target(100), 10, growth=1), "growth factor must exceed 1"),
        (lambda: CapacitySearch(Target(100), 10, precision=1.5), "fraction below 1"),
        (lambda: CapacitySearch(Target(100), 10, max_steps=1), "max steps"),
        (lambda: CapacitySearch(Target(100), 10, max_rate_per_s=5), "between the minimum"),
    ],
)
def test_bad_settings_are_rejected(build: Callable[[], object], message: str) -> None:
    with pytest.raises(CapacityError, match=message):
        build()


def test_steps_last_long_enough_for_a_percentile() -> None:
    assert step_duration_s(100.0) == 10.0
    assert step_duration_s(5.0) == 40.0
    assert step_duration_s(1.0) == 60.0
    assert step_duration_s(1000.0, min_duration_s=2.0, min_requests=500) == 2.0


def test_step_result_from_requests_counts_drops_as_failures() -> None:
    latencies = [10.0] * 94 + [20.0, 30.0, 40.0, 50.0, 60.0, 70.0]  # 100 sent
    ok = [True] * 99 + [False]
    step = StepResult.from_requests(50.0, 2.0, latencies, ok, [128] * 100, offered=102)
    assert step.p95_latency_ms == 20.0  # nearest rank: the 95th of 100
    assert step.success_pct == pytest.approx(100 * 99 / 102)
    assert step.goodput_tokens_per_s == 99 * 128 / 2.0
    assert StepResult.from_requests(50.0, 2.0, [], [], [], offered=100).p95_latency_ms == math.inf
    with pytest.raises(
        CapacityError, match=r"the step at 0\.1/s offered no request in 2 s: lengthen the steps"
    ):
        StepResult.from_requests(0.1, 2.0, [], [], [], offered=0)


# --- against the bundled server ----------------------------------------------------------------
@pytest.mark.serial
@pytest.mark.usefixtures("spawn")
def test_capacity_of_the_bundled_server_on_cpu_holds_when_confirmed() -> None:
    """b=1 t=128, p95 <= 200 ms: the search converges, 0.9x its answer meets the target, 1.3x does not.

    Each step is an open-loop Poisson cell of 5 s or 100 requests, at most 20 s (confirmations: at
    least 15 s), sent by plain greenlets through the dispatcher; a step ends when its last answer is
    in, so the next starts on an idle server.
    """
    factory = PassageFactory(seed=11)
    # One intra-op thread: on two shared cores, torch's default OpenMP threads spin against the load
    # generator and other processes, and a 128-token passage takes seconds instead of milliseconds.
    with running_target_server("--device", "cpu", env={"OMP_NUM_THREADS": "1"}) as url:
        send = http_sender(url, max_in_flight=256, path="/embed")
        # The knee this test checks (0.9x passes, 1.3x fails, in short steps) needs a lone request
        # well inside the 200 ms target. CPUs of this machine kind differ up to 4x
        # (docs/benchmarks/cpu.md): on one where a lone 128-token request takes 150 ms, the steps'
        # p95 straddles any target by 2x from one step to the next, and no answer holds.
        lone = sorted(_lone_latency_ms(url, text) for text in factory.passages(9, 128, "calibration"))
        median_ms = lone[len(lone) // 2]
        print(f"\nlone b=1 t=128: median {median_ms:.0f} ms")
        if median_ms > LONE_REQUEST_LIMIT_MS:
            pytest.skip(
                f"a lone b=1 t=128 request takes {median_ms:.0f} ms on this machine (over "
                f"{LONE_REQUEST_LIMIT_MS:g} ms): too slow a CPU for a stable knee at p95 <= 200 ms"
            )
        target = Target(p95_latency_ms=200.0)

        def measure(rate: float, at_least_s: float = 5.0) -> StepResult:
            duration_s = step_duration_s(
                rate, min_duration_s=at_least_s, max_duration_s=20.0, min_requests=100
            )
            stream = f"step {len(measured)}"
            schedule = list(arrival_schedule(rate, duration_s, Mix.single(1, 128), seed=len(measured)))
            passages = factory.passages(len(schedule), 128, stream)
            bodies = [json.dumps({"texts": [text], "truncate": True}).encode() for text in passages]
            outcomes: list[Outcome] = []
            summary = run_open_loop(
                [(arrival.offset_s, body) for arrival, body in zip(schedule, bodies, strict=True)],
                send,
                max_in_flight=256,
                duration_s=duration_s,
                start_at=time.time() + 0.1,
                on_outcome=outcomes.append,
            )
            sent = [outcome for outcome in outcomes if not outcome.dropped]
            step = StepResult.from_requests(
                rate,
                duration_s,
                [outcome.latency_ms for outcome in sent],
                [outcome.result == 200 for outcome in sent],
                [128] * len(sent),
                offered=summary.offered,
            )
            measured.append(step)
            print(
                f"\n{rate:7.1f}/s: p95 {step.p95_latency_ms:7.1f} ms, {step.success_pct:5.1f}% ok, lag p99 {summary.lag_p99_ms:.1f} ms"
            )
            return step

        measured: list[StepResult] = []
        # A step is a short measurement on a shared 2-core machine: another process's burst can move
        # one p95 by 2x. So the whole search and its confirmation may run twice; the answer must hold
        # (converged, 0.9x meets, 1.3x misses) in one complete attempt.
        attempts = []
        for _ in range(2):
            result = search(
                measure,
                CapacitySearch(
                    target,
                    start_rate_per_s=8.0,
                    max_rate_per_s=2000.0,
                    min_rate_per_s=1.0,
                    confirm_factors=(),
                ),  # this test confirms by hand
            )
            print(f"capacity: {result.describe()} in {len(result.steps)} steps")
            assert result.capacity_requests_per_s > 0, (
                f"{result.describe()}: a 128-token passage alone takes longer than the target here; "
                "is the machine overloaded (load average) or the server misconfigured?"
            )
            below = measure(0.9 * result.capacity_requests_per_s, at_least_s=15.0)
            above = measure(1.3 * result.capacity_requests_per_s, at_least_s=15.0)
            attempts.append((result, below, above))
            if below.meets(target) and not above.meets(target):
                break

    result, below, above = attempts[-1]
    assert result.converged and not result.at_rate_limit and len(result.steps) <= 12
    passing = next(step for step in result.steps if step.rate_per_s == result.capacity_requests_per_s)
    assert result.capacity_tokens_per_s == passing.goodput_tokens_per_s > 0
    assert below.meets(target), attempts
    assert not above.meets(target), attempts


LONE_REQUEST_LIMIT_MS = 60.0


def _lone_latency_ms(url: str, text: str) -> float:
    """One request alone, after the server's warm-up: what a step's latency cannot go below."""
    body = json.dumps({"texts": [text], "truncate": True}).encode()
    request = urllib.request.Request(f"{url}/embed", body, {"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        response.read()
    return (time.perf_counter() - start) * 1000


def test_an_answer_its_own_confirmation_contradicts_is_lowered_to_the_pooled_estimate() -> None:
    """As measured on 2 cores (benchmarks/results/cpu2-2026-12-05/capacity-repeat/run-2): the bisection
    passed 22 requests/s once, and both confirmation rounds at 22 failed. The answer is then the highest
    rate that meets the target with every lower rate, pooled: here 16, not 22."""
    seen: dict[float, int] = {}

    def measure(rate: float) -> StepResult:
        seen[rate] = seen.get(rate, 0) + 1
        if rate <= 16:
            p95 = 200.0
        elif rate <= 22 and seen[rate] == 1:
            p95 = 240.0  # a first, lucky step between 16 and 22
        else:
            p95 = 320.0
        return StepResult(rate, p95, 100.0, rate * TOKENS_PER_REQUEST)

    result = search(measure, CapacitySearch(Target(250.0), 8.0))
    assert [step.rate_per_s for step in result.steps] == [8, 16, 32, 24, 20, 22, 23]
    assert [round(step.rate_per_s, 1) for step in result.confirmation_steps] == [22, 18.7, 25.3] * 2
    assert result.capacity_requests_per_s == 16.0 and result.lowest_failing_rate_per_s == 23
    assert result.capacity_tokens_per_s == 16.0 * TOKENS_PER_REQUEST
    # 20 met in its one step, and every rate above it missed: the interval reaches 22
    assert result.interval is not None and result.interval.upper_requests_per_s == 22


def sampled_mm1(service_rate_per_s: float, seed: int) -> Callable[[float], StepResult]:
    """An M/M/1 queue sampled, as a real step is measured: 200 sojourn times per step (exponential with
    rate mu - lambda), so each step's p95 carries the sampling noise of 200 requests."""
    rng = random.Random(seed)

    def measure(rate: float) -> StepResult:
        requests = 200
        if rate >= service_rate_per_s:
            latencies = [60_000.0] * requests  # the queue grows without bound
        else:
            latencies = [1000 * rng.expovariate(service_rate_per_s - rate) for _ in range(requests)]
        return StepResult.from_requests(
            rate, requests / rate, latencies, [True] * requests, [TOKENS_PER_REQUEST] * requests, requests
        )

    return measure


def test_identical_searches_with_independent_noise_agree_within_their_intervals() -> None:
    """Twenty searches of one M/M/1 server (mu = 50/s, p95 <= 250 ms: the true capacity is 38.0/s),
    each with its own sampling noise: every two intervals overlap, and each holds the true capacity
    or misses it by less than the search's 5% precision. (On a real 2-core machine the same holds for
    steps of 200 requests, not for 5 s steps: docs/benchmarks/cpu.md.)"""
    truth = mm1_capacity(50.0, 250.0)
    results = [search(sampled_mm1(50.0, seed), CapacitySearch(Target(250.0), 8.0)) for seed in range(20)]
    intervals = [
        (r.interval.lower_requests_per_s, r.interval.upper_requests_per_s or math.inf)
        for r in results
        if r.interval is not None
    ]
    assert len(intervals) == 20
    for low, high in intervals:
        assert low <= truth * 1.05 and high >= truth / 1.05, (low, high, truth)
    assert all(max(a[0], b[0]) <= min(a[1], b[1]) for a in intervals for b in intervals)
    answers = [r.capacity_requests_per_s for r in results]
    print(f"true capacity {truth:.1f}/s; answers {min(answers):.1f}-{max(answers):.1f}/s")
