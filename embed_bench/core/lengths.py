"""Passage-length distributions: how many tokens each passage of a request carries.

The study's cells give every passage the same length (``t=128``), which is what a benchmark grid
needs and what no team's traffic looks like: queries are short, documents long, and a batch mixes
both. A server pads a batch to its longest input, so a mix of lengths costs compute that a fixed
length never shows (the report's padding figures, ``reports.metrics.bands``).

A :class:`LengthDistribution` draws one length per passage from a seeded ``random.Random``; the
passages are then built token-exact at each drawn length (``embed_bench.core.payloads``). Kinds:

- ``fixed``: every passage ``tokens`` long (the grid's plain integer);
- ``uniform``: integers from ``min`` to ``max``, inclusive, equally likely;
- ``lognormal``: ``round(median x exp(sigma x N(0, 1)))``, clipped to ``[min, max]``: the long right
  tail of real document lengths (most short, a few long);
- ``choice``: one of ``values``, by relative ``weights`` (an empirical histogram).

In grid TOML a shape's ``passage_tokens`` takes either an integer or a table, e.g.
``passage_tokens = {distribution = "lognormal", median = 96, sigma = 0.8, min = 8, max = 512}``.

Locust-free and numpy-free, like the arrival schedule it feeds.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from embed_bench.core.contract import GridError
from embed_bench.core.validation import positive_int, positive_number

KINDS = ("fixed", "uniform", "lognormal", "choice")
_KEYS: dict[str, tuple[frozenset[str], frozenset[str]]] = {  # kind -> (required, optional) keys
    "fixed": (frozenset({"tokens"}), frozenset()),
    "uniform": (frozenset({"min", "max"}), frozenset()),
    "lognormal": (frozenset({"median", "sigma", "max"}), frozenset({"min"})),
    "choice": (frozenset({"values"}), frozenset({"weights"})),
}


class LengthError(GridError):
    """A length distribution that cannot be drawn from (a grid error: same handling)."""


@dataclass(frozen=True)
class LengthDistribution:
    """One of ``KINDS``; ``low``/``high`` bound every draw (inclusive), ``median``/``sigma`` shape the
    lognormal, ``values``/``weights`` the choice."""

    kind: str
    low: int
    high: int
    median: float = 0.0
    sigma: float = 0.0
    values: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()

    @classmethod
    def fixed(cls, tokens: int) -> LengthDistribution:
        tokens = positive_int(tokens, "passage_tokens", error=LengthError)
        return cls("fixed", tokens, tokens)

    @property
    def is_fixed(self) -> bool:
        return self.low == self.high

    @property
    def longest(self) -> int:
        """The longest passage a draw can give: what a server pads a batch of these to, at worst."""
        return self.high

    def draw(self, rng: random.Random, count: int) -> tuple[int, ...]:
        """``count`` lengths, one per passage of a request."""
        return tuple(self._one(rng) for _ in range(count))

    def _one(self, rng: random.Random) -> int:
        if self.kind == "uniform":
            return rng.randint(self.low, self.high)
        if self.kind == "lognormal":
            value = round(self.median * math.exp(self.sigma * rng.gauss(0.0, 1.0)))
            return min(max(value, self.low), self.high)
        if self.kind == "choice":
            cumulative = list(itertools.accumulate(self.weights))
            index = bisect.bisect_right(cumulative, rng.random() * cumulative[-1])
            return self.values[min(index, len(self.values) - 1)]
        return self.low

    def mean(self, samples: int = 20_000) -> float:
        """The mean length (exact for fixed, uniform and choice; from a seeded sample for lognormal,
        whose clipping has no closed form worth the code)."""
        if self.kind == "uniform" or self.kind == "fixed":
            return (self.low + self.high) / 2.0
        if self.kind == "choice":
            total = sum(self.weights)
            return sum(v * w for v, w in zip(self.values, self.weights, strict=True)) / total
        return sum(self.draw(random.Random("embed-bench length mean"), samples)) / samples

    @property
    def label(self) -> str:
        """A short name for logs and run.json: ``128``, ``16-512``, ``ln96x0.8[8-512]``, ``choice4``."""
        if self.kind == "fixed":
            return str(self.low)
        if self.kind == "uniform":
            return f"{self.low}-{self.high}"
        if self.kind == "lognormal":
            return f"ln{self.median:g}x{self.sigma:g}[{self.low}-{self.high}]"
        return f"choice{len(self.values)}[{self.low}-{self.high}]"

    def describe(self) -> dict[str, Any]:
        """The grid-TOML table of this distribution (``parse_lengths`` reads it back): what run.json
        records and what a cell plan carries to the workers."""
        if self.kind == "fixed":
            return {"distribution": "fixed", "tokens": self.low}
        if self.kind == "uniform":
            return {"distribution": "uniform", "min": self.low, "max": self.high}
        if self.kind == "lognormal":
            return {
                "distribution": "lognormal",
                "median": self.median,
                "sigma": self.sigma,
                "min": self.low,
                "max": self.high,
            }
        return {"distribution": "choice", "values": list(self.values), "weights": list(self.weights)}


def _int(table: Mapping[str, Any], key: str, where: str) -> int:
    return positive_int(table[key], f"{where}: {key}", error=LengthError)


def _number(table: Mapping[str, Any], key: str, where: str, allow_zero: bool = False) -> float:
    return positive_number(table[key], f"{where}: {key}", allow_zero=allow_zero, error=LengthError)


def parse_lengths(value: Any, where: str = "passage_tokens") -> LengthDistribution:
    """A distribution from grid TOML: an integer (fixed) or a table with ``distribution``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return LengthDistribution.fixed(value)
    if not isinstance(value, Mapping):
        raise LengthError(f"{where}: expected an integer or a table with 'distribution', found {value!r}")
    kind = value.get("distribution")
    if kind not in KINDS:
        raise LengthError(f"{where}: distribution must be one of {', '.join(KINDS)}, found {kind!r}")
    required, optional = _KEYS[kind]
    keys = set(value) - {"distribution"}
    missing, unknown = sorted(required - keys), sorted(keys - required - optional)
    if missing or unknown:
        raise LengthError(
            f"{where}: a {kind} distribution needs {', '.join(sorted(required))}"
            f"{' (optional: ' + ', '.join(sorted(optional)) + ')' if optional else ''}; "
            f"missing {', '.join(missing) or 'nothing'}, unknown {', '.join(unknown) or 'nothing'}"
        )
    if kind == "fixed":
        return LengthDistribution.fixed(_int(value, "tokens", where))
    if kind == "uniform":
        low, high = _int(value, "min", where), _int(value, "max", where)
    elif kind == "lognormal":
        low = _int(value, "min", where) if "min" in value else 1
        high = _int(value, "max", where)
        median, sigma = _number(value, "median", where), _number(value, "sigma", where, allow_zero=True)
        if not low <= median <= high:
            raise LengthError(f"{where}: median {median:g} lies outside [min, max] = [{low}, {high}]")
        return LengthDistribution(kind, low, high, median=median, sigma=sigma)
    else:
        return _choice(value, where)
    if low > high:
        raise LengthError(f"{where}: min {low} is above max {high}")
    return LengthDistribution(kind, low, high)


def _choice(table: Mapping[str, Any], where: str) -> LengthDistribution:
    values = table["values"]
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise LengthError(f"{where}: values must be a non-empty list of token counts, found {values!r}")
    counts = tuple(positive_int(v, f"{where}: values", error=LengthError) for v in values)
    weights_in = table.get("weights", [1.0] * len(counts))
    if isinstance(weights_in, str) or not isinstance(weights_in, Sequence) or len(weights_in) != len(counts):
        raise LengthError(
            f"{where}: weights must list one number per value ({len(counts)}), found {weights_in!r}"
        )
    weights = tuple(positive_number(w, f"{where}: weights", error=LengthError) for w in weights_in)
    return LengthDistribution("choice", min(counts), max(counts), values=counts, weights=weights)
