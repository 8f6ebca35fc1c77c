"""Prices: the study's cost formula, the default pricing file, and how a run picks its price."""

from __future__ import annotations

import csv
import io
from importlib import resources
from pathlib import Path

import pytest

from reports.cost.pricing import (
    Price,
    choose_prices,
    hourly_cost_per_million_tokens_usd,
    load_price_book,
    price_per_million_tokens_usd,
)
from reports.errors import ReportError


def study_cost_rows() -> list[dict[str, str]]:
    text = (resources.files("reports") / "data" / "study_cost.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def test_worked_check_of_the_article_readme() -> None:
    """README: 3.908 / (15044 x 3600 / 1e6) = 0.0722 USD per million tokens (the study prints 0.0723)."""
    assert round(hourly_cost_per_million_tokens_usd(3.908, 15044), 4) == 0.0722


@pytest.mark.parametrize(
    "row", [row for row in study_cost_rows() if row["total_usd_per_hour"]], ids=lambda row: row["service"]
)
def test_default_pricing_file_holds_the_study_prices(row: dict[str, str]) -> None:
    price = load_price_book()[row["service"]]
    assert price.infrastructure_usd_per_hour == float(row["infrastructure_usd_per_hour"])
    assert price.license_usd_per_hour == float(row["license_usd_per_hour"])
    assert price.total_usd_per_hour == pytest.approx(float(row["total_usd_per_hour"]))
    # The study rounded the throughput it assumed and its printed prices (0.0722 printed as 0.0723).
    cost = price_per_million_tokens_usd(price, float(row["assumed_tokens_per_s"]))
    assert cost == pytest.approx(float(row["usd_per_million_tokens"]), rel=3e-3)


def test_jina_api_price_is_the_upper_end_of_the_study_range() -> None:
    [row] = [row for row in study_cost_rows() if row["service"] == "jina_api"]
    low, high = (float(end) for end in row["usd_per_million_tokens"].split("-"))
    price = load_price_book()["jina_api"]
    assert price.usd_per_million_tokens == high > low
    assert price_per_million_tokens_usd(price, 123.0) == price_per_million_tokens_usd(price, 99999.0) == high


def test_hourly_price_needs_a_throughput() -> None:
    price = Price("gpu", "", infrastructure_usd_per_hour=1.0, license_usd_per_hour=0.0)
    assert price_per_million_tokens_usd(price, None) is None
    assert price_per_million_tokens_usd(price, 1e6 / 3600) == pytest.approx(1.0)


def test_choose_by_run_json_name_in_the_default_file() -> None:
    prices = choose_prices(["sagemaker_us_east_1", None])
    assert prices[0] == load_price_book()["sagemaker_us_east_1"]
    assert prices[1] is None


def test_choose_one_name_for_every_run() -> None:
    prices = choose_prices(["sagemaker_us_east_1", None], pricing="self_hosted_eu_frankfurt")
    assert prices == [load_price_book()["self_hosted_eu_frankfurt"]] * 2


def test_custom_prices() -> None:
    [hourly] = choose_prices([None], usd_per_hour=2.5)
    assert hourly.total_usd_per_hour == 2.5 and hourly.usd_per_million_tokens is None
    [per_token] = choose_prices(["jina_api"], usd_per_million_tokens=0.05)
    assert per_token.usd_per_million_tokens == 0.05


def test_pricing_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        '[my_gpu]\ndescription = "one L4"\ninfrastructure_usd_per_hour = 0.8\nlicense_usd_per_hour = 0\n'
    )
    assert [price.name for price in choose_prices([None, "my_gpu"], pricing=str(path))] == [
        "my_gpu",
        "my_gpu",
    ]
    with pytest.raises(ReportError, match=r"unknown price 'jina_api'.*known: my_gpu"):
        choose_prices(["jina_api"], pricing=str(path))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pricing": "aws_moon_base"}, "unknown price 'aws_moon_base'.*known: .*jina_api"),
        ({"pricing": "missing/prices.toml"}, "no such pricing file"),
        ({}, "unknown price 'nope'"),
    ],
)
def test_unknown_prices_fail_loudly(kwargs: dict, message: str) -> None:
    with pytest.raises(ReportError, match=message):
        choose_prices(["nope"], **kwargs)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[a]\nusd_per_million_tokens = 1\ninfrastructure_usd_per_hour = 1\nlicense_usd_per_hour = 1\n",
            "either",
        ),
        ("[a]\ninfrastructure_usd_per_hour = 1\n", "either"),
        ("[a]\nusd_per_million_tokens = -1\n", "non-negative number"),
        ('[a]\nusd_per_million_tokens = "cheap"\n', "non-negative number"),
        ("usd_per_million_tokens = 1\n", r"only \[name\] tables"),
        ("[a\n", "not a valid TOML"),
    ],
)
def test_bad_pricing_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(text)
    with pytest.raises(ReportError, match=message):
        load_price_book(path)
