"""The one check of positive numbers and integers, with each caller's error class and wording."""

from __future__ import annotations

import math

import pytest

from embed_bench.core.arrivals import ArrivalError, parse_mix
from embed_bench.core.capacity import CapacityError, Target
from embed_bench.core.contract import GridError, Shape
from embed_bench.core.options import BenchOptions, OptionError
from embed_bench.core.validation import positive_int, positive_number
from reports.cost.decision import parse_workload
from reports.cost.pricing import parse_price
from reports.errors import ReportError


@pytest.mark.parametrize("value", [1, 0.5, 2.0, 10**6])
def test_a_positive_finite_number_comes_back_as_a_float(value: float) -> None:
    result = positive_number(value, "rate")
    assert result == value and isinstance(result, float)


@pytest.mark.parametrize("value", [0, 0.0, -1, -0.5, math.inf, -math.inf, math.nan, True, False, "1", None])
def test_anything_else_is_refused_with_the_name_and_the_value(value: object) -> None:
    with pytest.raises(ValueError, match=r"^rate must be a positive number, found ") as caught:
        positive_number(value, "rate")
    assert str(caught.value).endswith(repr(value))


def test_allow_zero_takes_zero_and_says_non_negative() -> None:
    assert positive_number(0, "price", allow_zero=True) == 0.0
    with pytest.raises(ValueError, match=r"^price must be a non-negative number, found -1$"):
        positive_number(-1, "price", allow_zero=True)
    with pytest.raises(ValueError, match="non-negative"):
        positive_number(math.nan, "price", allow_zero=True)


def test_the_caller_chooses_the_error_class_and_the_wording() -> None:
    class Custom(ValueError):
        pass

    with pytest.raises(Custom, match=r"^weight must be a positive finite number, got 0$"):
        positive_number(
            0, "weight", error=Custom, message="{name} must be a {kind} finite number, got {value!r}"
        )


@pytest.mark.parametrize("value", [1, 7, 10**9])
def test_a_positive_int_comes_back_unchanged(value: int) -> None:
    assert positive_int(value, "processes") == value


@pytest.mark.parametrize("value", [0, -3, 1.0, 2.5, True, "2", None])
def test_a_positive_int_refuses_zero_floats_and_bools(value: object) -> None:
    with pytest.raises(ValueError, match=r"^processes must be a positive integer, found "):
        positive_int(value, "processes")
    with pytest.raises(GridError, match=r"^n must be a positive integer, got "):
        positive_int(value, "n", error=GridError, message="{name} must be a positive integer, got {value!r}")


# Each caller keeps its own exception class and message, word for word.
@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: Shape(1, 8, weight=0), GridError, "weight must be a positive finite number, got 0"),
        (
            lambda: parse_mix([{"batch_size": 1, "passage_tokens": 8, "weight": -1}]),
            ArrivalError,
            "mix entry 1: weight must be a positive finite number, found -1",
        ),
        (
            lambda: Target(p95_latency_ms=math.inf),
            CapacityError,
            "the p95 latency target (ms) must be a positive number, found inf",
        ),
        (
            lambda: BenchOptions(max_lag=0.0),
            OptionError,
            "--max-lag must be a positive number, got 0.0",
        ),
        (
            lambda: parse_workload("tokens-per-day=-5,peak-requests-per-s=4"),
            ReportError,
            "--workload 'tokens-per-day=-5,peak-requests-per-s=4': tokens-per-day must be a positive number, "
            "found -5.0",
        ),
        (
            lambda: parse_price("p", {"usd_per_million_tokens": -1}, "prices.toml"),
            ReportError,
            "prices.toml [p]: usd_per_million_tokens must be a non-negative number, found -1",
        ),
    ],
)
def test_every_caller_keeps_its_error_class_and_wording(build, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as caught:
        build()
    assert str(caught.value) == message
