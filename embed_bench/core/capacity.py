"""Capacity search: the highest request rate a deployment serves within a latency target, and how
sure we are of it.

A pure state machine, free of Locust and of clocks, so the grid walker (on the master), a script or
a test can drive it alike: ask :meth:`CapacitySearch.next_rate`, run a short open-loop cell at that
rate, hand its :class:`StepResult` to :meth:`CapacitySearch.record`, repeat until ``next_rate()``
returns None, then read :attr:`CapacitySearch.result`.

The walk: a geometric ramp from the start rate (x2 per step) while steps pass; then a bisection
between the highest passing rate and the lowest failing one until they lie within 5% of each other.
A first step that fails ramps down instead (/2 per step). The number of steps is bounded
(``max_steps``), and so is the rate (``max_rate_per_s``): a deployment that still passes there has
a capacity of at least that rate, and the result says so.

A step passes when its p95 latency (measured from the planned send times) is at most the target and
its success rate (requests that succeeded / requests offered: dropped ones count as failures, so a
load generator that cannot keep up never makes a step look good) is at least the target's.
Results that contradict each other (a pass above a fail, as noise can give near the knee) are
resolved conservatively: the lowest failing rate bounds the answer.

Confirmation and the interval
-----------------------------
One search gives one number, and the same command on the same machine has given 21 and 8.5 requests/s:
a bisection step near the knee is a single short measurement, and its p95 (a dozen requests above the
95th rank) is noisy. So once the bracket has closed on a positive rate ``c`` (not at the rate bound:
there is no knee to straddle there) the search runs *confirmation steps*: ``CONFIRM_FACTORS`` =
0.85x, 1.0x and 1.15x of ``c``, in ``CONFIRM_REPEATS`` = 2 rounds (1.0, 0.85, 1.15, 1.0, 0.85, 1.15),
so that a slow drift of the machine touches every rate alike. Why these: the bisection leaves its
lowest failing rate within 5% above ``c``, so 1.15x sits clearly past it (three times the precision)
and should fail with confidence, which bounds the interval from above; 0.85x is the fall-back lower
bound when ``c`` itself straddles the target; 1.0x re-measures the answer. Two rounds show whether a
rate's verdict repeats and pool to twice the requests, which narrows the order-statistic interval.
The total is bounded: six steps on top of the search's ``max_steps``, each at most
``CONFIRM_MAX_S`` (10 minutes).

Each confirmation step lasts long enough for ``CONFIRM_MIN_REQUESTS`` = 200 requests (never shorter
than a search step at that rate), with no 60 s cap (:func:`confirmation_duration_s`), but at most
``CONFIRM_MAX_S``: below 200 / 600 = 0.33 requests/s a step holds fewer than 200 requests, and its
interval is wider; with fewer than 72 requests at a rate (pooled) the 95% interval of a p95 has no
upper order statistic at all, so that rate can never pass *confidently* (it straddles, or fails).

:func:`capacity_interval` then judges each tried rate on all its steps (search and confirmation)
pooled: the nearest-rank p95 of the pooled latencies and a distribution-free 95% confidence interval
of the 0.95 quantile from order statistics (:func:`p95_ranks`: ranks from the binomial distribution
``Bin(n, 0.95)``, no normality assumed, no scipy). A rate

- PASSES confidently when the interval's upper bound is within the target and the pooled success
  rate holds;
- FAILS confidently when the interval's lower bound exceeds the target, or the success rate fails;
- STRADDLES the target otherwise: its measurements cannot tell which side of the target it is on.

The capacity's lower bound is the highest rate that passes confidently with every lower tried rate
passing (on its pooled p95). Its upper bound is the lowest rate from which every tried rate upwards
fails confidently (where the highest rate tried does not, misses on its pooled p95): a rate that
passes, or straddles, above one that failed widens the interval past it. Near
the knee a 10 s step's p95 swings with the queue it happened to build (in one demo on 2 cores, 33
requests/s gave 202 ms and then 437 ms, and 37.9/s passed at 256 ms between misses at 36 and 40), so
the bracket of a bisection understates the uncertainty; the contradictions its own steps show are the
measure of it. (The old rule, the lowest rate that failed confidently, gave two consecutive demos
intervals of 32-33 and 21-32 requests/s for one server; this rule gives 32-40 and 21-32 on the
same steps: ``benchmarks/results/cpu2-2026-12-05/demo-1`` and ``demo-2``.) When the
confirmation rounds leave no rate passing confidently (all of them missed around a lucky answer, and
the search's short low steps hold too few requests for a confident p95), up to ``CONFIRM_EXTRA`` = 3
further confirmation steps go down by ``min(confirm_factors)`` from the lowest so far, until one passes. The point estimate applies the search's own rule (the highest rate that meets
the target with every lower rate meeting it) to the pooled steps, confirmations included: an answer
that its own confirmation steps contradict does not stand. Two identical searches on a 2-core machine
(``benchmarks/capacity_repeat.py``) showed why: one search's bisection passed 22 requests/s in one
step, and its two confirmation steps at 22 failed (pooled p95 320 ms [291-344] against 250 ms); the
search's answer would have been 22, the pooled one is 16. The pooled rule only ever lowers the
search's answer (a passing step above it is no reason to raise an answer its search bounded); without
confirmation steps the two rules give the same rate. :meth:`CapacityResult.describe` names the rates that straddle.

What we took from two LLM load generators. GuideLLM's ``sweep`` profile runs constant-rate
benchmarks between the synchronous and the throughput extremes and reports each rate on its own, and
its goodput profile (vllm-project/guidellm issue #197, PR #1086: a binary search for the peak load
that meets latency objectives, with SLO attainment and request goodput per benchmark) is our search;
from it we keep reporting every tried rate with its own verdict, not only the knee. AIPerf's
multi-run confidence reporting (docs.nvidia.com/aiperf, "Multi-Run Confidence Reporting": repeat one
configuration, report a confidence interval per metric so noise is not read as a difference) and its
SLA-bounded adaptive search / adaptive scale (search for the SLA boundary, then hold load near the last
passing point) give the confirmation steps: repeats at and around the boundary. We found no
"straddles the target" flag as such in either tool; the STRADDLE verdict combines the two ideas (a
probe whose interval contains the target is inconclusive, neither pass nor fail), with a
distribution-free interval of the p95 instead of a normal or t interval over run means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from embed_bench.core.contract import GridError
from embed_bench.core.validation import positive_number

DEFAULT_SUCCESS_PCT = 99.9
GROWTH = 2.0
PRECISION = 0.05
MAX_STEPS = 20  # a ramp over four orders of magnitude (14 steps), then a bisection to 5% (5)
CONFIRM_FACTORS = (1.0, 0.85, 1.15)  # of the search's answer, in this order within a round
CONFIRM_REPEATS = 2  # rounds of confirmation steps
CONFIRM_MIN_REQUESTS = 200  # a confirmation step's p95 rests on at least this many requests...
CONFIRM_MAX_S = 600.0  # ...unless that would take longer than this (below 0.33 requests/s)
CONFIRM_EXTRA = 3  # further steps below the confirmations while no rate passes confidently
CONFIDENCE = 0.95
QUANTILE = 0.95

PASS, FAIL, STRADDLE = "pass", "fail", "straddle"


def step_duration_s(
    rate_per_s: float, min_duration_s: float = 10.0, max_duration_s: float = 60.0, min_requests: int = 200
) -> float:
    """How long a step at this rate runs: long enough for ``min_requests`` (a p95 of a dozen requests
    is noise), within ``[min_duration_s, max_duration_s]``."""
    return min(max(min_requests / _positive(rate_per_s, "the step rate"), min_duration_s), max_duration_s)


def confirmation_duration_s(
    rate_per_s: float,
    search_duration_s: float = 0.0,
    min_requests: int = CONFIRM_MIN_REQUESTS,
    max_duration_s: float = CONFIRM_MAX_S,
) -> float:
    """How long a confirmation step at this rate runs: long enough for ``min_requests`` (no 60 s cap),
    never shorter than the search's own step at that rate, at most ``max_duration_s``."""
    needed = min(min_requests / _positive(rate_per_s, "the step rate"), max_duration_s)
    return max(needed, search_duration_s)


def _log_binomial_pmf(n: int, p: float) -> list[float]:
    log_p, log_q = math.log(p), math.log1p(-p)
    head = math.lgamma(n + 1)
    return [
        head - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q for i in range(n + 1)
    ]


def p95_ranks(n: int, quantile: float = QUANTILE, confidence: float = CONFIDENCE) -> tuple[int, int]:
    """The 1-based ranks ``(l, u)`` of the order statistics ``X(l) <= X(u)`` of ``n`` latencies that
    bracket the ``quantile`` with at least ``confidence``, whatever the distribution.

    The count ``B`` of latencies below the true quantile is ``Bin(n, quantile)``; ``X(l)`` lies above
    the quantile only when ``B < l``, and ``X(u)`` below it only when ``B >= u``. So ``l`` is the
    largest rank with ``P(B <= l - 1) <= (1 - confidence) / 2`` and ``u`` the smallest with
    ``P(B >= u) <= (1 - confidence) / 2``; each tail holds at most half the miss. ``l`` is 0 when no
    rank qualifies (the lower bound is then 0 ms) and ``u`` is ``n + 1`` when none does (no upper
    bound: with fewer than 72 requests a p95 can never be bounded above at 95%)."""
    if n < 1:
        return 0, 1
    tail = (1 - confidence) / 2
    pmf = [math.exp(value) for value in _log_binomial_pmf(n, quantile)]
    lower, below = 0, 0.0
    for rank in range(1, n + 1):  # P(B <= rank - 1)
        below += pmf[rank - 1]
        if below > tail:
            break
        lower = rank
    upper, above = n + 1, 0.0
    for rank in range(n, 0, -1):  # P(B >= rank)
        above += pmf[rank]
        if above > tail:
            break
        upper = rank
    return lower, upper


def p95_bounds(ordered_ms: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A distribution-free ``confidence`` interval of the p95 of these latencies (sorted ascending):
    ``(0, inf)`` where the sample is too small to bound a side."""
    lower, upper = p95_ranks(len(ordered_ms), confidence=confidence)
    low = ordered_ms[lower - 1] if lower >= 1 else 0.0
    high = ordered_ms[upper - 1] if upper <= len(ordered_ms) else math.inf
    return low, high


class CapacityError(GridError):
    """A target, start rate or step result that a capacity search cannot use."""


def _positive(value: object, what: str) -> float:
    return positive_number(value, what, error=CapacityError)


@dataclass(frozen=True)
class Target:
    """The service level a rate must hold: p95 latency and success rate (``--slo-p95-ms``,
    ``--slo-success-pct``)."""

    p95_latency_ms: float
    success_pct: float = DEFAULT_SUCCESS_PCT

    def __post_init__(self) -> None:
        _positive(self.p95_latency_ms, "the p95 latency target (ms)")
        if _positive(self.success_pct, "the success target (%)") > 100:
            raise CapacityError(f"the success target is a percentage up to 100, found {self.success_pct!r}")

    def describe(self) -> str:
        return f"p95 <= {self.p95_latency_ms:g} ms and success >= {self.success_pct:g}%"


@dataclass(frozen=True)
class StepResult:
    """One measured step: the offered rate and what it gave."""

    rate_per_s: float
    p95_latency_ms: float
    success_pct: float
    goodput_tokens_per_s: float  # tokens of successful requests per second of the step
    # The sent requests' latencies, sorted (what the interval needs; empty for a step built by hand)
    # and the requests offered (sent + dropped; 0 when unknown), to pool repeats at one rate.
    latencies_ms: tuple[float, ...] = field(default=(), repr=False, compare=False)
    offered: int = 0

    @property
    def p95_bounds_ms(self) -> tuple[float, float]:
        """The step's own 95% interval of its p95 (``(0, inf)`` without its latencies)."""
        if not self.latencies_ms:
            return (math.inf, math.inf) if self.p95_latency_ms == math.inf else (0.0, math.inf)
        return p95_bounds(self.latencies_ms)

    def meets(self, target: Target) -> bool:
        return self.p95_latency_ms <= target.p95_latency_ms and self.success_pct >= target.success_pct

    @classmethod
    def from_requests(
        cls,
        rate_per_s: float,
        duration_s: float,
        latencies_ms: Sequence[float],
        succeeded: Sequence[bool],
        tokens: Sequence[int],
        offered: int,
    ) -> StepResult:
        """A step's figures from its sent requests (latency from the planned time) and its offered
        count (sent + dropped). The p95 is over all sent requests (the study's "all requests"): a
        failure that answers fast must not lower it. Nearest-rank percentile, no interpolation."""
        if offered < 1:
            raise CapacityError(
                f"the step at {rate_per_s:g}/s offered no request in {duration_s:g} s: lengthen the steps"
            )
        if not latencies_ms:  # everything dropped
            return cls(rate_per_s, math.inf, 0.0, 0.0, offered=offered)
        ordered = tuple(sorted(latencies_ms))
        good = sum(1 for ok in succeeded if ok)
        good_tokens = sum(count for count, ok in zip(tokens, succeeded, strict=True) if ok)
        return cls(
            rate_per_s,
            nearest_rank_p95(ordered),
            100.0 * good / offered,
            good_tokens / duration_s,
            latencies_ms=ordered,
            offered=offered,
        )


def nearest_rank_p95(ordered_ms: Sequence[float]) -> float:
    """The nearest-rank p95 of sorted latencies (inf for none)."""
    if not ordered_ms:
        return math.inf
    return ordered_ms[max(math.ceil(QUANTILE * len(ordered_ms)) - 1, 0)]


def _rate_key(rate_per_s: float) -> float:
    return float(f"{rate_per_s:.6g}")


@dataclass(frozen=True)
class RateVerdict:
    """One tried rate, its steps pooled: the p95 and its 95% interval, success, goodput, verdict."""

    rate_per_s: float
    steps: int
    requests: int  # latencies pooled (sent requests of the steps that kept them)
    p95_latency_ms: float  # nearest rank over the pooled latencies (the steps' own when none kept)
    p95_low_ms: float
    p95_high_ms: float
    success_pct: float  # succeeded / offered, pooled
    goodput_tokens_per_s: float  # the mean over the steps
    meets: bool  # the pooled point estimates meet the target
    verdict: str  # PASS, FAIL or STRADDLE


@dataclass(frozen=True)
class CapacityInterval:
    """The capacity as an interval: confident bounds, and the rates the measurements cannot place."""

    lower_requests_per_s: float  # 0 when no rate passes confidently
    lower_tokens_per_s: float  # goodput at the lower bound
    upper_requests_per_s: float | None  # None when no rate failed
    straddling_rates: tuple[float, ...]
    rates: tuple[RateVerdict, ...]  # by rate
    estimate_requests_per_s: float = 0.0  # the highest rate meeting the target with all lower, pooled
    estimate_tokens_per_s: float = 0.0


def _pooled(target: Target, rate: float, steps: Sequence[StepResult]) -> RateVerdict:
    latencies = tuple(sorted(value for step in steps for value in step.latencies_ms))
    offered = sum(step.offered for step in steps)
    if offered:
        success = sum(step.success_pct * step.offered for step in steps) / offered
    else:
        success = sum(step.success_pct for step in steps) / len(steps)
    if latencies:
        p95 = nearest_rank_p95(latencies)
        low, high = p95_bounds(latencies)
    else:  # steps built without their latencies: their own p95 and no interval (all dropped: inf)
        p95 = max(step.p95_latency_ms for step in steps)
        low, high = (math.inf, math.inf) if p95 == math.inf else (0.0, math.inf)
    success_holds = success >= target.success_pct
    if success_holds and high <= target.p95_latency_ms:
        verdict = PASS
    elif not success_holds or low > target.p95_latency_ms:
        verdict = FAIL
    else:
        verdict = STRADDLE
    return RateVerdict(
        rate_per_s=rate,
        steps=len(steps),
        requests=len(latencies),
        p95_latency_ms=p95,
        p95_low_ms=low,
        p95_high_ms=high,
        success_pct=success,
        goodput_tokens_per_s=sum(step.goodput_tokens_per_s for step in steps) / len(steps),
        meets=success_holds and p95 <= target.p95_latency_ms,
        verdict=verdict,
    )


def capacity_interval(target: Target, steps: Sequence[StepResult]) -> CapacityInterval:
    """The capacity's 95% interval from every step tried (search and confirmation), the steps at one
    rate pooled (see the module's docstring): the lower bound is the highest rate that passes
    confidently with every lower rate passing on its pooled p95; the upper bound the lowest rate from
    which every tried rate upwards fails (:func:`_upper_bound`)."""
    by_rate: dict[float, list[StepResult]] = {}
    for step in steps:
        by_rate.setdefault(_rate_key(step.rate_per_s), []).append(step)
    rates = tuple(_pooled(target, by_rate[key][0].rate_per_s, by_rate[key]) for key in sorted(by_rate))
    lower: RateVerdict | None = None
    estimate: RateVerdict | None = None
    for verdict in rates:
        if not verdict.meets:
            break
        estimate = verdict
        if verdict.verdict == PASS:
            lower = verdict
    return CapacityInterval(
        lower_requests_per_s=lower.rate_per_s if lower else 0.0,
        lower_tokens_per_s=lower.goodput_tokens_per_s if lower else 0.0,
        upper_requests_per_s=_upper_bound(rates),
        straddling_rates=tuple(verdict.rate_per_s for verdict in rates if verdict.verdict == STRADDLE),
        rates=rates,
        estimate_requests_per_s=estimate.rate_per_s if estimate else 0.0,
        estimate_tokens_per_s=estimate.goodput_tokens_per_s if estimate else 0.0,
    )


def _upper_bound(rates: Sequence[RateVerdict]) -> float | None:
    """The lowest rate from which every tried rate upwards fails confidently; where the highest rate
    tried does not, the lowest from which every one misses on its pooled p95; None where the highest
    meets the target (nothing tried bounds the capacity from above)."""
    for confident in (True, False):
        upper: float | None = None
        for verdict in reversed(rates):
            if verdict.meets or (confident and verdict.verdict != FAIL):
                break
            upper = verdict.rate_per_s
        if upper is not None:
            return upper
    return None


def _rates(rates: Sequence[float], most: int = 4) -> str:
    shown = ", ".join(f"{rate:.4g}/s" for rate in rates[:most])
    more = f" and {len(rates) - most} more" if len(rates) > most else ""
    return f"{shown}{more} {'straddles' if len(rates) == 1 else 'straddle'} the target"


@dataclass(frozen=True)
class CapacityResult:
    """The answer: the highest passing rate, its goodput, how it was reached, and its interval."""

    target: Target
    capacity_requests_per_s: float  # 0 when no rate tried met the target
    capacity_tokens_per_s: float  # goodput at that rate
    lowest_failing_rate_per_s: float | None  # None when no step failed
    converged: bool  # within the precision (or the rate bound passed)
    at_rate_limit: bool  # the search's max rate passed: capacity is at least that
    steps: tuple[StepResult, ...]  # the search's steps (ramp and bisection)
    confirmation_steps: tuple[StepResult, ...] = ()
    interval: CapacityInterval | None = None  # from every step; None for a result built by hand

    def describe(self) -> str:
        if not self.capacity_requests_per_s:
            # The confirmation steps count: they may go below every search step.
            tried = min((step.rate_per_s for step in self.steps + self.confirmation_steps), default=None)
            lowest = f" (lowest tried: {tried:.4g}/s)" if tried is not None else ""
            return f"no rate tried meets {self.target.describe()}{lowest}"
        note = "" if self.converged else f" (not converged in {len(self.steps)} steps)"
        interval = self.interval
        if self.at_rate_limit or interval is None:
            bound = "at least " if self.at_rate_limit else ""
            return (
                f"{bound}{self.capacity_requests_per_s:.4g} requests/s, {self.capacity_tokens_per_s:.4g} "
                f"tokens/s at {self.target.describe()}{note}"
            )
        upper = interval.upper_requests_per_s
        span = (
            f"{interval.lower_requests_per_s:.4g}-{upper:.4g}"
            if upper is not None
            else f"at least {interval.lower_requests_per_s:.4g}"
        )
        straddles = f"; {_rates(interval.straddling_rates)}" if interval.straddling_rates else ""
        return (
            f"capacity {self.capacity_requests_per_s:.4g} requests/s (95% interval {span}), "
            f"{self.capacity_tokens_per_s:.4g} tokens/s at {self.target.describe()}{note}{straddles}"
        )


@dataclass
class CapacitySearch:
    """The walk (module docstring): ``steps`` given at construction count as search steps. The
    confirmation (``confirm_factors`` x the answer, ``confirm_repeats`` rounds; ``()`` or 0 for none)
    follows once the search ends on a positive answer below the rate bound."""

    target: Target
    start_rate_per_s: float
    growth: float = GROWTH
    precision: float = PRECISION
    max_steps: int = MAX_STEPS
    max_rate_per_s: float = math.inf
    min_rate_per_s: float = 0.01
    steps: list[StepResult] = field(default_factory=list)
    confirm_factors: tuple[float, ...] = CONFIRM_FACTORS
    confirm_repeats: int = CONFIRM_REPEATS
    confirm_extra: int = CONFIRM_EXTRA

    def __post_init__(self) -> None:
        _positive(self.start_rate_per_s, "the start rate (requests/s)")
        if _positive(self.growth, "the growth factor") <= 1:
            raise CapacityError(f"the growth factor must exceed 1, found {self.growth!r}")
        if not 0 < _positive(self.precision, "the precision") < 1:
            raise CapacityError(f"the precision is a fraction below 1 (0.05 = 5%), found {self.precision!r}")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 2:
            raise CapacityError(f"max steps must be an integer of at least 2, found {self.max_steps!r}")
        if (
            not _positive(self.min_rate_per_s, "the minimum rate")
            <= self.start_rate_per_s
            <= self.max_rate_per_s
        ):
            raise CapacityError(
                f"the start rate {self.start_rate_per_s:g}/s must lie between the minimum "
                f"{self.min_rate_per_s:g}/s and the maximum {self.max_rate_per_s:g}/s"
            )
        for factor in self.confirm_factors:
            _positive(factor, "a confirmation factor")
        if (
            isinstance(self.confirm_repeats, bool)
            or not isinstance(self.confirm_repeats, int)
            or not 0 <= self.confirm_repeats <= 10
        ):
            raise CapacityError(
                f"confirmation repeats are an integer from 0 to 10, found {self.confirm_repeats!r}"
            )
        if (
            isinstance(self.confirm_extra, bool)
            or not isinstance(self.confirm_extra, int)
            or not 0 <= self.confirm_extra <= 10
        ):
            raise CapacityError(
                f"further confirmation steps are an integer from 0 to 10, found {self.confirm_extra!r}"
            )
        self._proposed: float | None = None
        self._plan: tuple[float, ...] | None = None  # the confirmation rates, once the search is over
        self._searched = 0  # how many of the steps the search took (the rest confirm)

    # --- the bracket so far ------------------------------------------------------------------------
    @property
    def search_steps(self) -> list[StepResult]:
        return self.steps if self._plan is None else self.steps[: self._searched]

    @property
    def confirmation_steps(self) -> list[StepResult]:
        return [] if self._plan is None else self.steps[self._searched :]

    @property
    def confirming(self) -> bool:
        """True once the search is over and the next step (if any) is a confirmation step."""
        self.next_rate()
        return self._plan is not None

    def _lowest_fail(self) -> StepResult | None:
        fails = [step for step in self.search_steps if not step.meets(self.target)]
        return min(fails, key=lambda step: step.rate_per_s, default=None)

    def _highest_pass(self) -> StepResult | None:
        fail = self._lowest_fail()
        passes = [
            step
            for step in self.search_steps
            if step.meets(self.target) and (fail is None or step.rate_per_s < fail.rate_per_s)
        ]
        return max(passes, key=lambda step: step.rate_per_s, default=None)

    # --- the walk ----------------------------------------------------------------------------------
    def next_rate(self) -> float | None:
        """The rate to try next, or None when the search and its confirmation are over."""
        if self._proposed is None:
            self._proposed = self._next()
        return self._proposed

    def _next(self) -> float | None:
        if self._plan is None:
            rate = self._search_next()
            if rate is not None:
                return rate
            self._searched, self._plan = len(self.steps), self._confirmation_plan()
        done = len(self.steps) - self._searched
        return self._plan[done] if done < len(self._plan) else self._extension(done - len(self._plan))

    def _extension(self, taken: int) -> float | None:
        """A further confirmation step below the lowest one so far (``min(confirm_factors)`` x it),
        while no rate passes confidently, at most ``confirm_extra`` of them: the confirmations around a
        lucky answer can all miss, and then the interval needs a rate below them with enough
        requests to pass on its own (the search's short low steps often hold fewer than the 72 a
        confident p95 needs)."""
        if not self._plan or taken >= self.confirm_extra:
            return None
        if not any(step.latencies_ms for step in self.steps):
            return None  # steps built without latencies never pass confidently: nothing to gain
        if capacity_interval(self.target, self.steps).lower_requests_per_s > 0:
            return None
        lowest = min(step.rate_per_s for step in self.steps[self._searched :])
        rate = lowest * min(self.confirm_factors)
        return rate if rate >= self.min_rate_per_s else None

    def _confirmation_plan(self) -> tuple[float, ...]:
        """Rounds of the confirmation rates, each within the search's rate bounds; none when the
        search found no passing rate or stopped at the rate bound (nothing to straddle there)."""
        low, high = self._highest_pass(), self._lowest_fail()
        if low is None or (high is None and low.rate_per_s >= self.max_rate_per_s):
            return ()
        rates: list[float] = []
        for factor in self.confirm_factors:
            rate = min(max(low.rate_per_s * factor, self.min_rate_per_s), self.max_rate_per_s)
            if all(not math.isclose(rate, seen, rel_tol=1e-9) for seen in rates):
                rates.append(rate)
        return tuple(rates) * self.confirm_repeats

    def _search_next(self) -> float | None:
        if not self.steps:
            return self.start_rate_per_s
        if len(self.steps) >= self.max_steps:
            return None
        low, high = self._highest_pass(), self._lowest_fail()
        if high is None:  # every step passed: ramp up to the bound
            assert low is not None
            if low.rate_per_s >= self.max_rate_per_s:
                return None
            return min(low.rate_per_s * self.growth, self.max_rate_per_s)
        if low is None:  # every step failed: ramp down to the floor
            if high.rate_per_s <= self.min_rate_per_s:
                return None
            return max(high.rate_per_s / self.growth, self.min_rate_per_s)
        if high.rate_per_s <= low.rate_per_s * (1 + self.precision):
            return None
        return (low.rate_per_s + high.rate_per_s) / 2

    def record(self, step: StepResult) -> None:
        """The result of the step at the rate ``next_rate()`` proposed."""
        expected = self.next_rate()
        if expected is None:
            raise CapacityError("the capacity search is over; it takes no more steps")
        if not math.isclose(step.rate_per_s, expected, rel_tol=1e-9):
            raise CapacityError(
                f"expected the result of the step at {expected:g}/s, got one at {step.rate_per_s:g}/s"
            )
        self.steps.append(step)
        self._proposed = None

    @property
    def done(self) -> bool:
        return self.next_rate() is None

    @property
    def result(self) -> CapacityResult:
        """The answer, with the interval from every step so far: the search's own (from its steps),
        lowered to the pooled estimate where confirmation steps contradict it (module docstring)."""
        low, high = self._highest_pass(), self._lowest_fail()
        at_limit = high is None and low is not None and low.rate_per_s >= self.max_rate_per_s
        converged = at_limit or (
            low is not None and high is not None and high.rate_per_s <= low.rate_per_s * (1 + self.precision)
        )
        interval = capacity_interval(self.target, self.steps) if self.steps else None
        rate, goodput = (low.rate_per_s, low.goodput_tokens_per_s) if low else (0.0, 0.0)
        if interval is not None and self.confirmation_steps and interval.estimate_requests_per_s < rate:
            rate, goodput = interval.estimate_requests_per_s, interval.estimate_tokens_per_s
        return CapacityResult(
            target=self.target,
            capacity_requests_per_s=rate,
            capacity_tokens_per_s=goodput,
            lowest_failing_rate_per_s=high.rate_per_s if high else None,
            converged=converged,
            at_rate_limit=at_limit,
            steps=tuple(self.search_steps),
            confirmation_steps=tuple(self.confirmation_steps),
            interval=interval,
        )
