"""The arrival schedule of a rate cell: when each request is due and which shape it carries.

A rate cell offers ``R`` requests/s across all load generators, whatever they answer. Each of the
``N`` Locust processes plans its own share, ``R / N``, from its own seed, so no process waits for
another and the shares are independent:

- ``poisson`` (the default): exponential inter-arrival times, as independent users arrive in real
  traffic. The union of N independent Poisson streams of rate R / N is a Poisson stream of rate R.
- ``constant``: exactly ``1 / (R / N)`` apart; process ``i`` starts ``i / R`` into the cell, so the
  union of the shares is evenly spaced at ``1 / R``.

A cell may mix request shapes (e.g. 90% one-passage queries, 10% bulk indexing calls): each arrival
draws its shape by weight, from the same seeded stream, so a schedule is reproducible from
``(seed, process index)`` alone.

Kept free of Locust imports (and of numpy): the master plans cells without gevent, and a worker in
the locustio/locust image has only the ``load`` extra.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from embed_bench.core.contract import GridError
from embed_bench.core.validation import positive_int, positive_number

ArrivalProcess = Literal["poisson", "constant"]
ARRIVAL_PROCESSES: tuple[str, ...] = get_args(ArrivalProcess)
_MIX_KEYS = frozenset({"batch_size", "passage_tokens", "weight"})


class ArrivalError(GridError):
    """A rate, arrival process, share or mix that cannot be scheduled (a grid error: same handling)."""


@dataclass(frozen=True, order=True)
class Shape:
    """One request shape of a mix: ``batch_size`` passages of ``passage_tokens`` tokens each."""

    batch_size: int
    passage_tokens: int

    @property
    def name(self) -> str:
        return f"b={self.batch_size} t={self.passage_tokens}"

    @property
    def nominal_tokens(self) -> int:
        return self.batch_size * self.passage_tokens


@dataclass(frozen=True)
class Mix:
    """Request shapes with their probabilities (weights normalized to sum to 1)."""

    shapes: tuple[Shape, ...]
    probabilities: tuple[float, ...]
    _cumulative: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cumulative", tuple(itertools.accumulate(self.probabilities)))

    @classmethod
    def single(cls, batch_size: int, passage_tokens: int) -> Mix:
        return parse_mix([{"batch_size": batch_size, "passage_tokens": passage_tokens}])

    @property
    def mean_tokens_per_request(self) -> float:
        return sum(p * shape.nominal_tokens for shape, p in zip(self.shapes, self.probabilities, strict=True))

    def draw(self, rng: random.Random) -> Shape:
        """One shape, chosen by weight (one uniform draw, always, so the stream stays aligned)."""
        index = bisect.bisect_right(self._cumulative, rng.random() * self._cumulative[-1])
        return self.shapes[min(index, len(self.shapes) - 1)]


@dataclass(frozen=True)
class Arrival:
    """One planned request: due ``offset_s`` seconds after the cell starts, of this shape."""

    offset_s: float
    shape: Shape


def _positive_int(entry: Mapping[str, Any], key: str, where: str) -> int:
    return positive_int(entry[key], f"{where}: {key}", error=ArrivalError)


def _positive_number(value: Any, what: str) -> float:
    return positive_number(
        value, what, error=ArrivalError, message="{name} must be a {kind} finite number, found {value!r}"
    )


def parse_mix(entries: Any, where: str = "mix") -> Mix:
    """A mix from grid TOML's ``mix = [{batch_size, passage_tokens, weight}, ...]``.

    Every shape of a mix of two or more needs a ``weight``: a forgotten one would otherwise change
    the traffic silently. Weights are relative (``0.9, 0.1`` or ``9, 1``).
    """
    if not isinstance(entries, Sequence) or isinstance(entries, str) or not entries:
        raise ArrivalError(
            f"{where}: expected a non-empty list of {{batch_size, passage_tokens, weight}} tables"
        )
    shapes: list[Shape] = []
    weights: list[float] = []
    for number, entry in enumerate(entries, start=1):
        item = f"{where} entry {number}"
        if not isinstance(entry, Mapping):
            raise ArrivalError(
                f"{item}: expected a table {{batch_size, passage_tokens, weight}}, found {entry!r}"
            )
        required = {"batch_size", "passage_tokens"} | ({"weight"} if len(entries) > 1 else set())
        missing, unknown = sorted(required - set(entry)), sorted(set(entry) - _MIX_KEYS)
        if missing or unknown:
            raise ArrivalError(
                f"{item}: missing {', '.join(missing) or 'nothing'}, unknown {', '.join(unknown) or 'nothing'}"
            )
        shape = Shape(_positive_int(entry, "batch_size", item), _positive_int(entry, "passage_tokens", item))
        if shape in shapes:
            raise ArrivalError(f"{item}: {shape.name} is listed twice; give it one weight")
        shapes.append(shape)
        weights.append(_positive_number(entry.get("weight", 1.0), f"{item}: weight"))
    total = sum(weights)
    return Mix(tuple(shapes), tuple(weight / total for weight in weights))


def process_share(rate_per_s: float, processes: int, process_index: int) -> float:
    """The requests/s one of ``processes`` load generators sends: an equal share of the cell's rate."""
    rate = _positive_number(rate_per_s, "request rate (requests/s)")
    positive_int(processes, "processes", error=ArrivalError)
    if (
        isinstance(process_index, bool)
        or not isinstance(process_index, int)
        or not 0 <= process_index < processes
    ):
        raise ArrivalError(f"process index must be in 0..{processes - 1}, found {process_index!r}")
    return rate / processes


def arrival_schedule(
    rate_per_s: float,
    duration_s: float,
    mix: Mix,
    *,
    arrival: str = "poisson",
    processes: int = 1,
    process_index: int = 0,
    seed: int = 0,
) -> Iterator[Arrival]:
    """This process's arrivals in ``[0, duration_s)``, in time order, generated lazily.

    Deterministic in ``(seed, process_index)``: the same cell planned twice gives the same schedule,
    and two processes of one cell draw from independent streams.
    """
    share = process_share(rate_per_s, processes, process_index)
    duration = _positive_number(duration_s, "cell duration (s)")
    if arrival not in ARRIVAL_PROCESSES:
        raise ArrivalError(f"unknown arrival process {arrival!r}: choose {' or '.join(ARRIVAL_PROCESSES)}")
    # A string seed is hashed (SHA-512) by random.Random: stable across runs, platforms and processes.
    rng = random.Random(f"embed-bench arrivals {seed} {process_index}")
    if arrival == "constant":
        return _constant(rate_per_s, duration, mix, processes, process_index, rng)
    return _poisson(share, duration, mix, rng)


def _constant(
    rate: float, duration: float, mix: Mix, processes: int, process_index: int, rng: random.Random
) -> Iterator[Arrival]:
    """Slots ``j / rate`` of the whole cell, ``j = process_index, process_index + processes, ...``:
    offsets from the slot number, not a running sum, so the shares interleave exactly and never drift."""
    for slot in itertools.count(process_index, processes):
        offset = slot / rate
        if offset >= duration:
            return
        yield Arrival(offset, mix.draw(rng))


def _poisson(share: float, duration: float, mix: Mix, rng: random.Random) -> Iterator[Arrival]:
    offset = rng.expovariate(share)
    while offset < duration:
        yield Arrival(offset, mix.draw(rng))
        offset += rng.expovariate(share)


# --- how many arrivals a Poisson cell may hold --------------------------------------------------
@dataclass(frozen=True)
class CountInterval:
    """A central interval of a Poisson count: ``low <= n <= high`` with probability >= ``confidence``.

    Each tail outside it holds at most ``(1 - confidence) / 2``; the bounds are the tails' exact
    quantiles, not a normal approximation, so the interval is right for a short cell's few arrivals too.
    """

    expected: float
    low: int
    high: int
    confidence: float

    def contains(self, count: int) -> bool:
        return self.low <= count <= self.high

    @property
    def text(self) -> str:
        return f"[{self.low}, {self.high}]"


def arrival_count_interval(rate_per_s: float, duration_s: float, confidence: float = 0.999) -> CountInterval:
    """Where the number of Poisson arrivals of ``rate_per_s`` over ``duration_s`` falls with
    probability ``confidence``: a load generator that sends the asked rate lands inside it, one that
    falls short by more than chance lands below it, whatever its own plan said."""
    rate = _positive_number(rate_per_s, "request rate (requests/s)")
    duration = _positive_number(duration_s, "cell duration (s)")
    if not (isinstance(confidence, float) and 0.0 < confidence < 1.0):
        raise ArrivalError(f"confidence must be a float strictly between 0 and 1, found {confidence!r}")
    mean = rate * duration
    tail = (1.0 - confidence) / 2.0
    return CountInterval(mean, _poisson_quantile(mean, tail), _poisson_quantile(mean, 1.0 - tail), confidence)


def _poisson_quantile(mean: float, q: float) -> int:
    """The smallest ``k`` with ``P(X <= k) >= q`` for ``X ~ Poisson(mean)``.

    The probabilities are summed in log space from ``mean - 12 sqrt(mean)`` up (below it the mass
    is under ``exp(-72)``, by the Chernoff bound), so a mean of millions costs thousands of terms and
    nothing underflows to a wrong answer.
    """
    log_mean = math.log(mean)
    k = max(0, math.floor(mean - 12.0 * math.sqrt(mean) - 12.0))
    cumulative = 0.0
    while True:
        term = math.exp(k * log_mean - mean - math.lgamma(k + 1))
        cumulative += term
        # The second test ends a q within rounding of 1: past the mean, once the terms no longer move
        # the sum, no later k reaches it either.
        if cumulative >= q or (k > mean and term < 1e-17 * cumulative):
            return k
        k += 1
