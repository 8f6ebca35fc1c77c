"""A day of traffic: autoscaled and peak-provisioned costs checked by hand, and the profile's two forms."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from reports.cost.profile import (
    AutoscalingPolicy,
    DailyProfile,
    autoscaled_monthly_cost,
    hourly_profile_cost,
    instances_per_hour,
    load_profile,
    load_sample_profile,
    parse_profile_csv,
    parse_profile_toml,
    peak_provisioned_monthly_cost,
    per_token_monthly_cost,
    shortfall_hours,
)
from reports.errors import ReportError

# Hours 0-7 at 5 requests/s, 8-15 at 15, 16-19 at 25, 20-23 idle; 10 tokens per request.
RATES = (5.0,) * 8 + (15.0,) * 8 + (25.0,) * 4 + (0.0,) * 4
PROFILE = DailyProfile(requests_per_s=RATES, tokens_per_request=10)
CAPACITY_RPS, CAPACITY_TPS = 10.0, 1_000.0  # one instance at the latency target
USD_PER_HOUR = 2.0


def toml_text(rates: str = ", ".join(f"{rate:g}" for rate in RATES), extra: str = "") -> str:
    return f"[profile]\nrequests_per_s = [{rates}]\ntokens_per_request = 10\n{extra}"


def csv_text(rows: list[tuple[object, object, object]] | None = None) -> str:
    rows = rows if rows is not None else [(hour, f"{rate:g}", 10) for hour, rate in enumerate(RATES)]
    return "hour,requests_per_s,tokens_per_request\n" + "".join(f"{h},{r},{t}\n" for h, r, t in rows)


def test_autoscaled_cost_matches_a_hand_calculation() -> None:
    """Capacity 10 requests/s and 1,000 tokens/s per instance; tokens/s are 50/150/250, never binding.

    - hours 0-7, 5 requests/s: ceil(5 / 10) = 1 instance each -> 8 instance-hours;
    - hours 8-15, 15 requests/s: ceil(15 / 10) = 2 each -> 16;
    - hours 16-19, 25 requests/s: ceil(25 / 10) = 3 each -> 12;
    - hours 20-23, idle: min_instances = 1 each -> 4.
    40 instance-hours a day; at 2 USD/h: 40 x 2 x 30.4 days = 2,432.00 USD a month autoscaled.
    Provisioned for the peak: 3 instances x 2 USD x 730 h = 4,380.00 USD a month.
    """
    expected = (1,) * 8 + (2,) * 8 + (3,) * 4 + (1,) * 4
    assert instances_per_hour(PROFILE, CAPACITY_RPS, CAPACITY_TPS) == expected
    assert autoscaled_monthly_cost(PROFILE, CAPACITY_RPS, CAPACITY_TPS, USD_PER_HOUR) == pytest.approx(
        2432.00
    )
    assert peak_provisioned_monthly_cost(PROFILE, CAPACITY_RPS, CAPACITY_TPS, USD_PER_HOUR) == pytest.approx(
        4380.00
    )
    cost = hourly_profile_cost(PROFILE, CAPACITY_RPS, CAPACITY_TPS, USD_PER_HOUR)
    assert cost.instances_per_hour == expected
    assert cost.instance_hours_per_day == 40 and cost.peak_instances == 3
    assert cost.monthly_cost_autoscaled_usd == pytest.approx(2432.00)
    assert cost.monthly_cost_peak_provisioned_usd == pytest.approx(4380.00)
    assert cost.shortfall_hours == () and cost.meets_target
    assert cost.saving_pct == pytest.approx(100 * (1 - 2432 / 4380))
    # 9,360,000 tokens a day (below) x 30.4 = 284.544 million tokens a month.
    assert cost.effective_usd_per_million_autoscaled == pytest.approx(2432 / 284.544)
    assert cost.effective_usd_per_million_peak_provisioned == pytest.approx(4380 / 284.544)


def test_derived_figures_and_per_token_cost_on_the_same_volume() -> None:
    """Tokens a day: (5 x 8 + 15 x 8 + 25 x 4) requests/s-hours x 3,600 s x 10 tokens = 260 x 36,000
    = 9,360,000; mean 9,360,000 / 86,400 = 108.33 tokens/s. At 0.02 USD per million tokens:
    9,360,000 x 30.4 x 0.02 / 1e6 = 5.69088 USD a month."""
    assert PROFILE.tokens_per_day == pytest.approx(9_360_000)
    assert PROFILE.mean_tokens_per_s == pytest.approx(108.333, abs=1e-3)
    assert PROFILE.peak_requests_per_s == 25 and PROFILE.peak_hour == 16
    assert PROFILE.tokens_per_s_by_hour[:1] == (50.0,) and PROFILE.peak_tokens_per_s == 250
    assert PROFILE.tokens_per_request == (10.0,) * 24
    assert PROFILE.tokens_per_month == pytest.approx(9_360_000 * 30.4)
    assert per_token_monthly_cost(PROFILE, 0.02) == pytest.approx(5.69088)
    assert "9,360,000 tokens a day" in PROFILE.describe()


def test_the_token_volume_can_set_the_count() -> None:
    """Hour 3 at 5 requests/s of 400 tokens: ceil(5 / 10) = 1 for the rate, but 2,000 tokens/s needs
    ceil(2,000 / 1,000) = 2 instances."""
    tokens = [10.0] * 24
    tokens[3] = 400.0
    profile = DailyProfile(RATES, tuple(tokens))
    assert instances_per_hour(profile, CAPACITY_RPS, CAPACITY_TPS)[3] == 2


def test_headroom() -> None:
    """40% headroom: 5 x 1.4 / 10 = 0.7 -> 1; 15 x 1.4 / 10 = 2.1 -> 3; 25 x 1.4 / 10 = 3.5 -> 4;
    idle -> 1. 8 + 24 + 16 + 4 = 52 instance-hours: 52 x 2 x 30.4 = 3,161.60 USD; peak 4 x 2 x 730."""
    policy = AutoscalingPolicy(headroom_pct=40)
    assert (
        instances_per_hour(PROFILE, CAPACITY_RPS, CAPACITY_TPS, policy)
        == (1,) * 8 + (3,) * 8 + (4,) * 4 + (1,) * 4
    )
    cost = hourly_profile_cost(PROFILE, CAPACITY_RPS, CAPACITY_TPS, USD_PER_HOUR, policy)
    assert cost.monthly_cost_autoscaled_usd == pytest.approx(3161.60)
    assert cost.monthly_cost_peak_provisioned_usd == pytest.approx(5840.00)


def test_headroom_that_lands_on_a_whole_count_is_not_rounded_up() -> None:
    """100 requests/s x 1.1 / 10 is 11.000000000000002 in floating point; it needs 11 instances, not 12."""
    assert 100 * (1 + 10 / 100) / 10 > 11
    flat = DailyProfile((100.0,) * 24, 10)
    assert instances_per_hour(flat, CAPACITY_RPS, 1e9, AutoscalingPolicy(headroom_pct=10)) == (11,) * 24


def test_min_instances() -> None:
    """min 2: 2 x 8 + 2 x 8 + 3 x 4 + 2 x 4 = 52; min 0 scales idle hours to zero: 8 + 16 + 12 + 0 = 36."""
    at_least_two = instances_per_hour(PROFILE, CAPACITY_RPS, CAPACITY_TPS, AutoscalingPolicy(min_instances=2))
    assert sum(at_least_two) == 52 and at_least_two[20:] == (2,) * 4
    to_zero = instances_per_hour(PROFILE, CAPACITY_RPS, CAPACITY_TPS, AutoscalingPolicy(min_instances=0))
    assert sum(to_zero) == 36 and to_zero[20:] == (0,) * 4
    assert autoscaled_monthly_cost(
        PROFILE, CAPACITY_RPS, CAPACITY_TPS, USD_PER_HOUR, AutoscalingPolicy(min_instances=0)
    ) == pytest.approx(36 * 2 * 30.4)


def test_max_instances_caps_and_reports_a_shortfall() -> None:
    """max 2: hours 16-19 need 3 and run at 2, short of the target: 8 + 16 + 8 + 4 = 36 instance-hours."""
    policy = AutoscalingPolicy(max_instances=2)
    assert shortfall_hours(PROFILE, CAPACITY_RPS, CAPACITY_TPS, policy) == (16, 17, 18, 19)
    cost = hourly_profile_cost(PROFILE, CAPACITY_RPS, CAPACITY_TPS, USD_PER_HOUR, policy)
    assert cost.instances_per_hour[16:20] == (2,) * 4 and cost.instance_hours_per_day == 36
    assert cost.shortfall_hours == (16, 17, 18, 19) and not cost.meets_target
    assert cost.monthly_cost_peak_provisioned_usd == pytest.approx(2 * 2 * 730)
    assert shortfall_hours(PROFILE, CAPACITY_RPS, CAPACITY_TPS, AutoscalingPolicy(max_instances=3)) == ()


def test_the_profiles_own_policy_is_the_default() -> None:
    profile = parse_profile_toml(toml_text(extra="[autoscaling]\nmin_instances = 0\n"), "p.toml")
    assert profile.autoscaling == AutoscalingPolicy(min_instances=0)
    assert sum(instances_per_hour(profile, CAPACITY_RPS, CAPACITY_TPS)) == 36
    assert sum(instances_per_hour(profile, CAPACITY_RPS, CAPACITY_TPS, AutoscalingPolicy())) == 40


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_instances": -1}, "min_instances must be an integer of at least 0, found -1"),
        ({"min_instances": 1.5}, "min_instances must be an integer of at least 0, found 1.5"),
        ({"min_instances": 3, "max_instances": 2}, "max_instances must be an integer of at least 3, found 2"),
        ({"max_instances": 0}, "max_instances must be an integer of at least 1, found 0"),
        ({"headroom_pct": -5}, "headroom_pct must be a non-negative number, found -5"),
        ({"headroom_pct": math.nan}, "headroom_pct must be a non-negative number, found nan"),
    ],
)
def test_a_bad_policy_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ReportError, match=message):
        AutoscalingPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("capacity", "message"),
    [
        ((0, 1000), "capacity: requests/s per instance must be a positive number, found 0"),
        ((10, math.inf), "capacity: tokens/s per instance must be a positive number, found inf"),
    ],
)
def test_a_bad_capacity_is_refused(capacity: tuple[float, float], message: str) -> None:
    with pytest.raises(ReportError, match=message):
        instances_per_hour(PROFILE, *capacity)


def test_a_bad_price_is_refused() -> None:
    with pytest.raises(ReportError, match="price: USD per hour must be a non-negative number"):
        autoscaled_monthly_cost(PROFILE, CAPACITY_RPS, CAPACITY_TPS, -1)
    with pytest.raises(ReportError, match="price: USD per million tokens must be a non-negative number"):
        per_token_monthly_cost(PROFILE, math.nan)


def test_a_profile_built_in_code_is_checked() -> None:
    with pytest.raises(ReportError, match="requests_per_s must list 24 hourly values"):
        DailyProfile(RATES[:23], 10)
    with pytest.raises(ReportError, match="tokens_per_request at hour 0 must be a positive number"):
        DailyProfile(RATES, 0)
    with pytest.raises(ReportError, match="every hour is at 0 requests/s"):
        DailyProfile((0.0,) * 24, 10)


# --- the TOML form ----------------------------------------------------------------------------------


def test_toml_profile_parses() -> None:
    text = toml_text(extra="[autoscaling]\nmin_instances = 2\nmax_instances = 5\nheadroom_pct = 10.5\n")
    text = text.replace("[profile]\n", '[profile]\ndescription = "search"\n')
    profile = parse_profile_toml(text, "p.toml")
    assert profile.requests_per_s == RATES and profile.tokens_per_request == (10.0,) * 24
    assert profile.description == "search"
    assert profile.autoscaling == AutoscalingPolicy(2, 5, 10.5)
    assert parse_profile_toml(toml_text(), "p.toml").autoscaling == AutoscalingPolicy()


def test_toml_tokens_per_request_may_be_hourly() -> None:
    text = toml_text().replace("tokens_per_request = 10", f"tokens_per_request = [{', '.join(['300'] * 24)}]")
    assert parse_profile_toml(text, "p.toml").tokens_per_request == (300.0,) * 24


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[profile\n", r"p\.toml: not a valid TOML profile file"),
        ('description = "x"\n', r"p\.toml: unknown key\(s\) in the file .*: description"),
        ("[autoscaling]\nmin_instances = 1\n", r"p\.toml: missing the \[profile\] table"),
        ("[profile]\ntokens_per_request = 10\n", r"p\.toml: \[profile\] is missing requests_per_s"),
        (
            f"[profile]\nrequests_per_s = [{', '.join(['1'] * 24)}]\n",
            r"p\.toml: \[profile\] is missing tokens_per_request",
        ),
        (
            toml_text(rates=", ".join(["1"] * 23)),
            r"p\.toml: \[profile\]: requests_per_s must list 24 hourly values \(hour 0 to 23\), found 23",
        ),
        (
            toml_text(rates=", ".join(["1"] * 25)),
            r"p\.toml: \[profile\]: requests_per_s must list 24 hourly values \(hour 0 to 23\), found 25",
        ),
        (
            toml_text(rates=", ".join(["1"] * 23 + ["-2"])),
            r"p\.toml: \[profile\]: requests_per_s at hour 23 must be a non-negative number, found -2",
        ),
        (
            toml_text(rates=", ".join(["nan"] + ["1"] * 23)),
            r"p\.toml: \[profile\]: requests_per_s at hour 0 must be a non-negative number, found nan",
        ),
        (
            toml_text(rates=", ".join(['"5"'] + ["1"] * 23)),
            r"p\.toml: \[profile\]: requests_per_s at hour 0 must be a non-negative number, found '5'",
        ),
        ("[profile]\nrequests_per_s = 5\ntokens_per_request = 10\n", r"requests_per_s must be a list of 24"),
        (
            toml_text().replace("= 10", "= -10"),
            r"p\.toml: \[profile\]: tokens_per_request must be a positive number, found -10",
        ),
        (
            toml_text().replace("= 10", "= inf"),
            r"p\.toml: \[profile\]: tokens_per_request must be a positive number, found inf",
        ),
        (
            toml_text().replace("= 10", '= "10"'),
            r"p\.toml: \[profile\]: tokens_per_request must be a number or a list of 24",
        ),
        (
            toml_text().replace("= 10", "= [300, 300]"),
            r"p\.toml: \[profile\]: tokens_per_request must list 24 hourly values \(hour 0 to 23\), found 2",
        ),
        (
            toml_text(extra="peak = 3\n"),
            r"p\.toml: unknown key\(s\) in \[profile\]: peak; known: requests_per_s",
        ),
        (toml_text().replace("[profile]\n", "[profile]\ndescription = 3\n"), r"description must be a string"),
        (toml_text(extra="[autoscaling]\nmax = 3\n"), r"p\.toml: unknown key\(s\) in \[autoscaling\]: max"),
        (
            toml_text(extra="[autoscaling]\nmin_instances = -1\n"),
            r"p\.toml: \[autoscaling\]: min_instances must be an integer of at least 0, found -1",
        ),
        (
            toml_text(extra="[autoscaling]\nmin_instances = 4\nmax_instances = 2\n"),
            r"p\.toml: \[autoscaling\]: max_instances must be an integer of at least 4, found 2",
        ),
        (
            toml_text(extra="[autoscaling]\nheadroom_pct = -1\n"),
            r"p\.toml: \[autoscaling\]: headroom_pct must be a non-negative number, found -1",
        ),
        (toml_text(extra="autoscaling = 3\n"), r"p\.toml: unknown key\(s\) in \[profile\]: autoscaling"),
        (
            toml_text(rates=", ".join(["0"] * 24)),
            r"every hour is at 0 requests/s; give at least one hour some traffic",
        ),
    ],
)
def test_a_bad_toml_profile_is_refused(text: str, message: str) -> None:
    with pytest.raises(ReportError, match=message):
        parse_profile_toml(text, "p.toml")


# --- the CSV form -----------------------------------------------------------------------------------


def test_csv_profile_parses_in_any_order() -> None:
    rows = [(hour, f"{rate:g}", 10 + hour) for hour, rate in enumerate(RATES)]
    profile = parse_profile_csv(csv_text(rows[::-1]) + "\n", "p.csv")
    assert profile.requests_per_s == RATES
    assert profile.tokens_per_request == tuple(float(10 + hour) for hour in range(24))
    assert profile.autoscaling == AutoscalingPolicy() and profile.description == ""
    same = parse_profile_csv(csv_text(), "p.csv")
    assert instances_per_hour(same, CAPACITY_RPS, CAPACITY_TPS) == instances_per_hour(
        PROFILE, CAPACITY_RPS, CAPACITY_TPS
    )


def _rows(**changes: tuple[object, object, object] | None) -> list[tuple[object, object, object]]:
    """The good rows with some replaced (``h3=(...)``) or dropped (``h3=None``)."""
    rows: list[tuple[object, object, object]] = []
    for hour, rate in enumerate(RATES):
        change = changes.get(f"h{hour}", (hour, f"{rate:g}", 10))
        if change is not None:
            rows.append(change)
    return rows


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"p\.csv: empty profile; expected the header hour,requests_per_s,tokens_per_request"),
        (
            "hour,rate,tokens\n0,1,1\n",
            r"p\.csv: the header must be hour,requests_per_s,tokens_per_request, found hour,rate,tokens",
        ),
        (csv_text(_rows(h23=None)), r"p\.csv: found 23 hours, expected 24; missing hour\(s\) 23"),
        (
            csv_text(_rows(h5=(4, 1, 10))),
            r"p\.csv, line 7: hour 4 is given twice; give each hour 0 to 23 once",
        ),
        (csv_text(_rows(h5=(24, 1, 10))), r"p\.csv, line 7: hour must be an integer from 0 to 23, found 24"),
        (
            csv_text(_rows(h5=("five", 1, 10))),
            r"p\.csv, line 7: hour must be an integer from 0 to 23, found 'five'",
        ),
        (
            csv_text(_rows(h5=(5, -1, 10))),
            r"p\.csv, line 7: requests_per_s must be a non-negative number, found -1\.0",
        ),
        (csv_text(_rows(h5=(5, "nan", 10))), r"p\.csv, line 7: requests_per_s must be a non-negative number"),
        (
            csv_text(_rows(h5=(5, "lots", 10))),
            r"p\.csv, line 7: requests_per_s must be a number, found 'lots'",
        ),
        (
            csv_text(_rows(h5=(5, 1, 0))),
            r"p\.csv, line 7: tokens_per_request must be a positive number, found 0",
        ),
        (csv_text(_rows(h5=(5, 1, "inf"))), r"p\.csv, line 7: tokens_per_request must be a positive number"),
        (csv_text() + "24,1,10,extra\n", r"p\.csv, line 26: expected 3 values"),
    ],
)
def test_a_bad_csv_profile_is_refused(text: str, message: str) -> None:
    with pytest.raises(ReportError, match=message):
        parse_profile_csv(text, "p.csv")


# --- files ------------------------------------------------------------------------------------------


def test_load_profile_picks_the_parser_by_suffix(tmp_path: Path) -> None:
    (tmp_path / "day.toml").write_text(toml_text(), encoding="utf-8")
    (tmp_path / "day.CSV").write_text(csv_text(), encoding="utf-8")
    assert load_profile(tmp_path / "day.toml").requests_per_s == RATES
    assert load_profile(str(tmp_path / "day.CSV")).requests_per_s == RATES
    with pytest.raises(
        ReportError, match=r"day\.json: a profile file ends in \.toml or \.csv, found '\.json'"
    ):
        load_profile(tmp_path / "day.json")
    with pytest.raises(ReportError, match=r"missing\.toml: cannot read profile file"):
        load_profile(tmp_path / "missing.toml")


def test_the_sample_profile_parses() -> None:
    """The packaged sample: 24 hours, daytime-heavy with its peak at 14:00, a nightly bump, 300 tokens
    per request, 20% headroom."""
    profile = load_sample_profile()
    assert len(profile.requests_per_s) == 24 and profile.tokens_per_request == (300.0,) * 24
    assert profile.peak_hour == 14
    assert (
        profile.requests_per_s[2] > profile.requests_per_s[1]
        and profile.requests_per_s[3] > profile.requests_per_s[4]
    )
    assert profile.autoscaling == AutoscalingPolicy(min_instances=1, headroom_pct=20)
    assert "illustrative" in profile.description
    cost = hourly_profile_cost(profile, 30, 9_000, 3.908)
    assert cost.meets_target and cost.monthly_cost_autoscaled_usd < cost.monthly_cost_peak_provisioned_usd
    path = Path(__file__).resolve().parents[2] / "reports" / "data" / "sample_profile.toml"
    assert load_profile(path) == profile
