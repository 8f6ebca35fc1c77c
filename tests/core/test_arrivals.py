"""Arrival schedules: Poisson inter-arrivals pass a goodness-of-fit test, constant spacing is exact,
process shares add up to the cell's rate, and mixes draw their shapes by weight."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embed_bench.core.arrivals import (
    ArrivalError,
    Mix,
    Shape,
    arrival_count_interval,
    arrival_schedule,
    parse_mix,
    process_share,
)

QUERY = Mix.single(1, 32)
SEARCH_AND_INDEX = [
    {"batch_size": 1, "passage_tokens": 32, "weight": 0.9},
    {"batch_size": 64, "passage_tokens": 512, "weight": 0.1},
]


def offsets(rate: float, duration: float, **kwargs) -> np.ndarray:
    return np.array([arrival.offset_s for arrival in arrival_schedule(rate, duration, QUERY, **kwargs)])


def ks_exponential(samples: np.ndarray, rate: float) -> tuple[float, float]:
    """Kolmogorov-Smirnov statistic D of ``samples`` against Exp(rate), and its asymptotic p-value
    (Kolmogorov's series, accurate for the thousands of samples used here)."""
    x = np.sort(samples)
    n = len(x)
    cdf = 1.0 - np.exp(-rate * x)
    d = max(float(np.max(np.arange(1, n + 1) / n - cdf)), float(np.max(cdf - np.arange(n) / n)))
    t = d * math.sqrt(n)
    p = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * t * t) for k in range(1, 101))
    return d, min(max(p, 0.0), 1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_poisson_inter_arrivals_fit_the_exponential(seed: int) -> None:
    times = offsets(100.0, 60.0, seed=seed)
    _d, p = ks_exponential(np.diff(times), 100.0)
    assert p > 0.01, f"KS rejects exponential inter-arrivals at p={p:.4f}"
    assert len(times) == pytest.approx(6000, abs=4 * math.sqrt(6000))


def test_ks_check_has_power() -> None:
    """The same check rejects evenly spaced arrivals and a Poisson stream of the wrong rate."""
    assert ks_exponential(np.diff(offsets(100.0, 60.0, arrival="constant")), 100.0)[1] < 1e-6
    assert ks_exponential(np.diff(offsets(100.0, 60.0)), 90.0)[1] < 1e-6


def test_ks_statistic_agrees_with_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    gaps = np.diff(offsets(50.0, 40.0, seed=7))
    d, p = ks_exponential(gaps, 50.0)
    reference = stats.kstest(gaps, "expon", args=(0, 1 / 50.0), method="asymp")
    assert d == pytest.approx(reference.statistic, rel=1e-9)
    assert p == pytest.approx(reference.pvalue, rel=1e-6, abs=1e-9)


def test_union_of_process_shares_is_a_poisson_stream_of_the_cell_rate() -> None:
    merged = np.sort(np.concatenate([offsets(120.0, 50.0, processes=4, process_index=i) for i in range(4)]))
    assert ks_exponential(np.diff(merged), 120.0)[1] > 0.01
    assert len(merged) == pytest.approx(6000, abs=4 * math.sqrt(6000))


def test_shares_are_independent_and_deterministic() -> None:
    first = offsets(40.0, 10.0, processes=2, process_index=0, seed=3)
    again = offsets(40.0, 10.0, processes=2, process_index=0, seed=3)
    other = offsets(40.0, 10.0, processes=2, process_index=1, seed=3)
    reseeded = offsets(40.0, 10.0, processes=2, process_index=0, seed=4)
    assert np.array_equal(first, again)
    assert not np.array_equal(first[:10], other[:10])
    assert not np.array_equal(first[:10], reseeded[:10])
    assert np.all(np.diff(first) > 0) and first[0] >= 0 and first[-1] < 10.0


@pytest.mark.parametrize(("rate", "processes"), [(20.0, 1), (100.0, 3), (400.0, 4), (7.5, 2)])
def test_constant_spacing_is_exact_and_shares_sum_to_the_rate(rate: float, processes: int) -> None:
    duration = 10.0
    shares = [
        offsets(rate, duration, arrival="constant", processes=processes, process_index=i)
        for i in range(processes)
    ]
    for index, share in enumerate(shares):
        assert share[0] == pytest.approx(index / rate)
        assert np.allclose(np.diff(share), processes / rate, rtol=0, atol=1e-9)
    merged = np.sort(np.concatenate(shares))
    assert len(merged) == round(rate * duration)
    assert np.allclose(np.diff(merged), 1 / rate, rtol=0, atol=1e-9)
    assert sum(process_share(rate, processes, i) for i in range(processes)) == pytest.approx(rate)


def test_mix_proportions_follow_the_weights() -> None:
    mix = parse_mix(SEARCH_AND_INDEX)
    assert mix.probabilities == pytest.approx((0.9, 0.1))
    drawn = [arrival.shape for arrival in arrival_schedule(500.0, 40.0, mix, seed=5)]
    share_of_bulk = drawn.count(Shape(64, 512)) / len(drawn)
    # 20,000 draws: the standard error of a 10% share is 0.2%; allow five of them.
    assert share_of_bulk == pytest.approx(0.1, abs=0.01)
    assert set(drawn) == {Shape(1, 32), Shape(64, 512)}
    assert mix.mean_tokens_per_request == pytest.approx(0.9 * 32 + 0.1 * 64 * 512)


def test_weights_are_relative() -> None:
    assert parse_mix(
        [{**SEARCH_AND_INDEX[0], "weight": 9}, {**SEARCH_AND_INDEX[1], "weight": 1}]
    ) == parse_mix(SEARCH_AND_INDEX)


def test_one_shape_needs_no_weight() -> None:
    assert parse_mix([{"batch_size": 1, "passage_tokens": 128}]) == Mix((Shape(1, 128),), (1.0,))


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "non-empty list"),
        ("b=1 t=32", "non-empty list"),
        ([3], "entry 1: expected a table"),
        ([SEARCH_AND_INDEX[0], {"batch_size": 64, "passage_tokens": 512}], "entry 2: missing weight"),
        ([{"batch_size": 1, "passage_tokens": 32, "wieght": 1}], "unknown wieght"),
        ([{"batch_size": 0, "passage_tokens": 32}], "batch_size must be a positive integer"),
        ([{"batch_size": 1, "passage_tokens": 2.5}], "passage_tokens must be a positive integer"),
        ([SEARCH_AND_INDEX[0], {**SEARCH_AND_INDEX[1], "weight": 0}], "entry 2: weight must be a positive"),
        ([SEARCH_AND_INDEX[0], {**SEARCH_AND_INDEX[1], "weight": "ten"}], "weight must be a positive"),
        ([SEARCH_AND_INDEX[0], SEARCH_AND_INDEX[0]], "b=1 t=32 is listed twice"),
    ],
)
def test_bad_mixes_are_rejected_with_the_reason(entries: object, message: str) -> None:
    with pytest.raises(ArrivalError, match=message):
        parse_mix(entries)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate_per_s": 0}, "request rate"),
        ({"rate_per_s": float("inf")}, "request rate"),
        ({"duration_s": -1}, "cell duration"),
        ({"arrival": "uniform"}, "choose poisson or constant"),
        ({"processes": 0}, "processes must be a positive integer"),
        ({"processes": 2, "process_index": 2}, r"process index must be in 0\.\.1"),
    ],
)
def test_bad_schedules_are_rejected_with_the_reason(kwargs: dict, message: str) -> None:
    arguments = {"rate_per_s": 10.0, "duration_s": 5.0, "mix": QUERY, **kwargs}
    with pytest.raises(ArrivalError, match=message):
        arrival_schedule(**arguments)


# --- the interval of a Poisson count ---------------------------------------------------------------
@pytest.mark.parametrize("mean", [0.3, 5.0, 20.0, 600.0, 12_000.0, 1_000_000.0])
@pytest.mark.parametrize("confidence", [0.95, 0.999])
def test_count_interval_bounds_are_the_poisson_quantiles(mean: float, confidence: float) -> None:
    from scipy.stats import poisson

    interval = arrival_count_interval(mean / 10.0, 10.0, confidence)
    tail = (1 - confidence) / 2
    assert interval.expected == pytest.approx(mean)
    assert (interval.low, interval.high) == (int(poisson.ppf(tail, mean)), int(poisson.ppf(1 - tail, mean)))
    # Each tail outside holds at most half the miss; one step narrower on either side breaks that.
    assert poisson.cdf(interval.low - 1, mean) <= tail < poisson.cdf(interval.low, mean)
    assert poisson.sf(interval.high, mean) <= tail < poisson.sf(interval.high - 1, mean)


def test_count_interval_holds_the_seeded_schedules_counts() -> None:
    """The schedule's own arrival counts land inside it about as often as the confidence says."""
    interval = arrival_count_interval(20.0, 30.0, 0.95)
    counts = [sum(1 for _ in arrival_schedule(20.0, 30.0, QUERY, seed=seed)) for seed in range(200)]
    inside = sum(interval.contains(count) for count in counts)
    assert 180 <= inside <= 200  # Binomial(200, >= 0.95): below 180 has probability < 0.2%


def test_count_interval_rejects_a_sender_that_falls_short() -> None:
    interval = arrival_count_interval(400.0, 30.0)  # 12,000 expected: [11,641, 12,362]
    assert interval.contains(12_000)
    assert not interval.contains(11_500)  # 4% short: outside, where a 2% ratio goal would not see it
    assert not interval.contains(12_500)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0.0, 10.0, 0.99), "request rate"),
        ((10.0, float("nan"), 0.99), "cell duration"),
        ((10.0, 10.0, 1.0), "confidence must be"),
        ((10.0, 10.0, 0), "confidence must be"),
    ],
)
def test_count_interval_rejects_bad_input(args: tuple, message: str) -> None:
    with pytest.raises(ArrivalError, match=message):
        arrival_count_interval(*args)
