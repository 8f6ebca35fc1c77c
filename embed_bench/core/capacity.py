"""Capacity search: the highest request rate a deployment serves within a latency target.

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


def step_duration_s(
    rate_per_s: float, min_duration_s: float = 10.0, max_duration_s: float = 60.0, min_requests: int = 200
) -> float:
    """How long a step at this rate runs: long enough for ``min_requests`` (a p95 of a dozen requests
    is noise), within ``[min_duration_s, max_duration_s]``."""
    return min(max(min_requests / _positive(rate_per_s, "the step rate"), min_duration_s), max_duration_s)


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
            return cls(rate_per_s, math.inf, 0.0, 0.0)
        ordered = sorted(latencies_ms)
        p95 = ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]
        good = sum(1 for ok in succeeded if ok)
        good_tokens = sum(count for count, ok in zip(tokens, succeeded, strict=True) if ok)
        return cls(rate_per_s, p95, 100.0 * good / offered, good_tokens / duration_s)


@dataclass(frozen=True)
class CapacityResult:
    """The answer: the highest passing rate, its goodput, and how it was reached."""

    target: Target
    capacity_requests_per_s: float  # 0 when no rate tried met the target
    capacity_tokens_per_s: float  # goodput at that rate
    lowest_failing_rate_per_s: float | None  # None when no step failed
    converged: bool  # within the precision (or the rate bound passed)
    at_rate_limit: bool  # the search's max rate passed: capacity is at least that
    steps: tuple[StepResult, ...]

    def describe(self) -> str:
        if not self.capacity_requests_per_s:
            tried = min((step.rate_per_s for step in self.steps), default=None)
            lowest = f" (lowest tried: {tried:g}/s)" if tried is not None else ""
            return f"no rate tried meets {self.target.describe()}{lowest}"
        bound = "at least " if self.at_rate_limit else ""
        note = "" if self.converged else f" (not converged in {len(self.steps)} steps)"
        return (
            f"{bound}{self.capacity_requests_per_s:.4g} requests/s, {self.capacity_tokens_per_s:.4g} tokens/s "
            f"at {self.target.describe()}{note}"
        )


@dataclass
class CapacitySearch:
    target: Target
    start_rate_per_s: float
    growth: float = GROWTH
    precision: float = PRECISION
    max_steps: int = MAX_STEPS
    max_rate_per_s: float = math.inf
    min_rate_per_s: float = 0.01
    steps: list[StepResult] = field(default_factory=list)

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
        self._proposed: float | None = None

    # --- the bracket so far ------------------------------------------------------------------------
    def _lowest_fail(self) -> StepResult | None:
        fails = [step for step in self.steps if not step.meets(self.target)]
        return min(fails, key=lambda step: step.rate_per_s, default=None)

    def _highest_pass(self) -> StepResult | None:
        fail = self._lowest_fail()
        passes = [
            step
            for step in self.steps
            if step.meets(self.target) and (fail is None or step.rate_per_s < fail.rate_per_s)
        ]
        return max(passes, key=lambda step: step.rate_per_s, default=None)

    # --- the walk ----------------------------------------------------------------------------------
    def next_rate(self) -> float | None:
        """The rate to try next, or None when the search is over."""
        if self._proposed is None:
            self._proposed = self._next()
        return self._proposed

    def _next(self) -> float | None:
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
        low, high = self._highest_pass(), self._lowest_fail()
        at_limit = high is None and low is not None and low.rate_per_s >= self.max_rate_per_s
        converged = at_limit or (
            low is not None and high is not None and high.rate_per_s <= low.rate_per_s * (1 + self.precision)
        )
        return CapacityResult(
            target=self.target,
            capacity_requests_per_s=low.rate_per_s if low else 0.0,
            capacity_tokens_per_s=low.goodput_tokens_per_s if low else 0.0,
            lowest_failing_rate_per_s=high.rate_per_s if high else None,
            converged=converged,
            at_rate_limit=at_limit,
            steps=tuple(self.steps),
        )
