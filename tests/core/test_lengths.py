"""Passage-length distributions: parsing, bounds, seeded draws, and token-exact passages per length."""

from __future__ import annotations

import random

import pytest

from embed_bench.core.cells import parse_grid_toml
from embed_bench.core.lengths import LengthError, parse_lengths
from embed_bench.core.payloads import PassageFactory, count_tokens


@pytest.mark.parametrize(
    "table",
    [
        {"distribution": "uniform", "min": 4, "max": 40},
        {"distribution": "lognormal", "median": 32, "sigma": 0.9, "min": 2, "max": 300},
        {"distribution": "choice", "values": [8, 64, 200], "weights": [5, 3, 1]},
        {"distribution": "fixed", "tokens": 17},
    ],
)
def test_every_draw_lies_within_the_bounds_and_the_table_reads_back(table: dict) -> None:
    lengths = parse_lengths(table)
    draws = lengths.draw(random.Random(1), 2000)
    assert min(draws) >= lengths.low and max(draws) <= lengths.high == lengths.longest
    assert parse_lengths(lengths.describe()) == lengths
    assert lengths.draw(random.Random(1), 50) == draws[:50]  # seeded


def test_a_lognormal_has_its_median_and_a_long_tail() -> None:
    lengths = parse_lengths({"distribution": "lognormal", "median": 50, "sigma": 0.8, "max": 1000})
    draws = sorted(lengths.draw(random.Random(7), 4001))
    assert 45 <= draws[2000] <= 55 and draws[3900] > 3 * draws[2000]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"distribution": "gamma"}, "distribution must be one of"),
        ({"distribution": "uniform", "min": 9, "max": 3}, "min 9 is above max 3"),
        ({"distribution": "uniform", "min": 1}, "missing max"),
        ({"distribution": "lognormal", "median": 900, "sigma": 1, "max": 100}, "median 900 lies outside"),
        ({"distribution": "choice", "values": [1, 2], "weights": [1]}, "one number per value"),
        ({"distribution": "uniform", "min": 0, "max": 3}, "min must be a positive integer"),
        ("long", "expected an integer or a table"),
    ],
)
def test_a_bad_distribution_says_what_to_fix(table: object, message: str) -> None:
    with pytest.raises(LengthError) as error:
        parse_lengths(table, "cells[1]: passage_tokens")
    assert message in str(error.value)


def test_variable_length_passages_are_token_exact_each() -> None:
    factory = PassageFactory("", seed=3)
    lengths = parse_lengths({"distribution": "lognormal", "median": 40, "sigma": 1.0, "min": 1, "max": 256})
    drawn = list(lengths.draw(random.Random(5), 64))
    passages = factory.passages_of(drawn, "stream")
    assert count_tokens(factory.tokenizer, passages) == drawn
    assert len(set(passages)) == 64


def test_a_grid_rate_cell_takes_a_distribution_and_is_named_by_its_label() -> None:
    grid = parse_grid_toml(
        """
        [[cells]]
        request_rate = 5
        duration_s = 10
        batch_size = 4
        passage_tokens = {distribution = "uniform", min = 8, max = 64}
        name = "docs"

        [[cells]]
        request_rate = 5
        duration_s = 10
        mix = [{batch_size = 1, passage_tokens = 16, weight = 3},
               {batch_size = 8, passage_tokens = {distribution = "choice", values = [32, 128]}, weight = 1}]
        """
    )
    first, second = grid.cells
    assert first.name == "r=5 mix=docs" and first.shapes[0].passage_tokens == 64
    assert first.mean_tokens_per_request == pytest.approx(4 * 36)
    assert [s.variable for s in second.shapes] == [False, True]
    assert second.shapes[1].passage_tokens == 128
