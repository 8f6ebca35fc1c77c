"""The decision table, checked by hand at the study's three prices, and the workload's two forms."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from reports.cost.decision import (
    OptionCapacity,
    Workload,
    decide,
    load_workload,
    parse_workload,
)
from reports.cost.pricing import Price, hardware_mismatch, load_price_book
from reports.errors import ReportError
from reports.tables.decision import decision_section

PRICES = load_price_book()
TARGET = "p95 <= 200 ms and success >= 99.9%"
# 1e9 tokens a day: 11,574.07 tokens/s on average, 30,400 million tokens a month.
WORKLOAD = Workload(tokens_per_day=1e9, peak_requests_per_s=50)


# The study's Jina price without its free-key rate limits (500 requests/min would refuse a peak of 50/s).
JINA_UNLIMITED = replace(PRICES["jina_api"], requests_per_minute=None, tokens_per_minute=None)


def options(jina_requests_per_s: float = 60) -> list[OptionCapacity]:
    return [
        OptionCapacity("Jina API", JINA_UNLIMITED, jina_requests_per_s, 20_000),
        OptionCapacity("SageMaker g5.xlarge", PRICES["sagemaker_us_east_1"], 30, 9_000),
        OptionCapacity("self-hosted g5.xlarge", PRICES["self_hosted_us_east_1"], 120, 8_000),
    ]


def test_hand_checked_example_at_the_study_prices() -> None:
    """Monthly tokens: 1e9 x 30.4 = 30,400 million; mean load 1e9 / 86,400 = 11,574.07 tokens/s.

    - Jina API, 0.02 USD per million: 30,400 x 0.02 = 608.00 USD; 60/s covers the peak of 50.
    - SageMaker, 1.408 + 2.50 = 3.908 USD/h, 30/s and 9,000 tokens/s per instance:
      ceil(50 / 30) = 2 for the peak, ceil(11,574 / 9,000) = 2 for the volume: 2 instances,
      3.908 x 730 x 2 = 5,705.68 USD, 5,705.68 / 30,400 = 0.1877 USD per million, 11,574 / 18,000 = 64.3%.
    - Self-hosted, 1.006 + 2.282 = 3.288 USD/h, 120/s but 8,000 tokens/s: 1 instance for the peak,
      ceil(11,574 / 8,000) = 2 for the volume: 3.288 x 730 x 2 = 4,800.48 USD, 0.1579 USD per million.
    """
    table = decide(WORKLOAD, options(), TARGET)
    jina, sagemaker, self_hosted = table.rows
    assert jina.monthly_cost_usd == pytest.approx(608.00)
    assert jina.effective_usd_per_million_tokens == 0.02 and jina.instances is None and jina.meets_target
    assert jina.utilization_pct == pytest.approx(57.87, abs=0.01)
    assert sagemaker.instances == 2 and sagemaker.note == "set by the peak"
    assert sagemaker.monthly_cost_usd == pytest.approx(5705.68)
    assert sagemaker.effective_usd_per_million_tokens == pytest.approx(0.18769, abs=1e-5)
    assert sagemaker.utilization_pct == pytest.approx(64.30, abs=0.01)
    assert self_hosted.instances == 2 and self_hosted.note == "set by the daily token volume"
    assert self_hosted.monthly_cost_usd == pytest.approx(4800.48)
    assert self_hosted.effective_usd_per_million_tokens == pytest.approx(0.15791, abs=1e-5)
    assert table.cheapest is jina


def test_an_api_whose_capacity_misses_the_peak_is_not_chosen() -> None:
    table = decide(WORKLOAD, options(jina_requests_per_s=40), TARGET)
    jina = table.rows[0]
    assert not jina.meets_target and jina.note == "capacity 40 requests/s is below the peak 50"
    assert jina.monthly_cost_usd == pytest.approx(608.00)  # still shown, for comparison
    assert table.cheapest is not None and table.cheapest.option == "self-hosted g5.xlarge"


def test_an_option_that_met_no_rate_cannot_be_provisioned() -> None:
    table = decide(
        WORKLOAD, [OptionCapacity("timeout batching", PRICES["self_hosted_us_east_1"], 0, 0)], TARGET
    )
    [row] = table.rows
    assert not row.meets_target and row.instances is None and row.monthly_cost_usd is None
    assert row.note == "no rate met the target" and table.cheapest is None
    section = decision_section(table)
    assert "No measured option meets the target (p95 <= 200 ms and success >= 99.9%)" in section.text
    assert section.tables[0].rows[0][3:] == ("—", "—", "—", "—", "no (no rate met the target)")


def test_the_section_opens_with_the_answer_and_lists_the_assumptions() -> None:
    section = decision_section(decide(WORKLOAD, options(jina_requests_per_s=40), TARGET))
    assert section.text == (
        "Workload: 1,000,000,000 tokens a day, peaks of 50 requests/s. Target: p95 <= 200 ms and success >= 99.9%. "
        "Cheapest measured option that meets the target: self-hosted g5.xlarge at self_hosted_us_east_1, "
        "4,800.48 USD a month, 0.158 USD per million tokens."
    )
    table = section.tables[0]
    assert table.rows[1] == (
        "SageMaker g5.xlarge",
        "sagemaker_us_east_1",
        "30.0",
        "2",
        "5,705.68",
        "0.1877",
        "64.3%",
        "yes (set by the peak)",
    )
    assert table.rows[0][3] == "per token"
    assert any("730 hours a month, busy or idle" in bullet for bullet in section.bullets)
    assert any("30.4 days" in bullet for bullet in section.bullets)


def test_an_unmeasured_per_token_api_is_never_the_answer_however_cheap() -> None:
    """The study's own figures give the Jina API 87.6% success: a list price is not a capacity."""
    command = "JINA_API_KEY=... embed-bench run --backend jina --grid capacity --slo-p95-ms 200"
    unmeasured = OptionCapacity("Jina API", JINA_UNLIMITED, None, None, measure_command=command)
    table = decide(WORKLOAD, [unmeasured, *options()[1:]], TARGET)
    assert [row.option for row in table.rows] == ["SageMaker g5.xlarge", "self-hosted g5.xlarge"]
    [jina] = table.not_measured
    assert not jina.meets_target and jina.note == "not measured: list price, for information"
    assert jina.monthly_cost_usd == pytest.approx(608.00)  # shown, but never chosen
    assert table.cheapest is not None and table.cheapest.option == "self-hosted g5.xlarge"
    section = decision_section(table)
    assert "Not measured, so not considered: Jina API (jina_api)" in section.text
    assert f"measure it with: `{command}`" in section.bullets[0]
    assert "608.00 USD a month (information, not an answer)" in section.bullets[0]
    only_unmeasured = decide(WORKLOAD, [unmeasured], TARGET)
    assert only_unmeasured.cheapest is None and only_unmeasured.rows == ()


def test_published_rate_limits_cap_a_per_token_api() -> None:
    """jina_api publishes 500 requests/min and 1,000,000 tokens/min per key."""
    jina = PRICES["jina_api"]
    assert (jina.requests_per_minute, jina.tokens_per_minute) == (500, 1_000_000)
    measured = OptionCapacity("Jina API", jina, 60, 20_000)
    [row] = decide(WORKLOAD, [measured], TARGET).rows  # peak 50/s = 3,000 requests/min
    assert not row.meets_target
    assert row.note == "the peak of 3,000 requests/min is over jina_api's published limit of 500 requests/min"
    # 8/s = 480/min fits; 1e9 tokens a day = 694,444 tokens/min fits; 2e9 = 1,388,889 does not.
    assert decide(Workload(1e9, 8), [measured], TARGET).rows[0].meets_target
    [heavy] = decide(Workload(2e9, 8), [measured], TARGET).rows
    assert not heavy.meets_target
    assert heavy.note == (
        "the mean load of 1,388,889 tokens/min is over jina_api's published limit of 1,000,000 tokens/min"
    )


def test_a_price_for_other_hardware_is_flagged_and_never_the_answer() -> None:
    cpu_run = {"device": "cpu", "gpu": None, "gpus": 0, "cpu": "AMD EPYC", "cpus": 2, "torch_threads": 1}
    a10g = PRICES["g5_xlarge"]
    note = hardware_mismatch(a10g, cpu_run)
    assert note == "g5_xlarge is for 1 x NVIDIA A10G (4 vCPU), the run was measured on 2 CPUs (AMD EPYC)"
    assert hardware_mismatch(PRICES["c7i_large"], cpu_run) is None
    h200 = {"device": "cuda", "gpu": "NVIDIA H200", "gpus": 1, "cpu": "x", "cpus": 16, "torch_threads": 16}
    assert hardware_mismatch(PRICES["p5en_48xlarge_per_gpu"], h200) is None
    assert "is for 1 x NVIDIA A10G" in (hardware_mismatch(PRICES["self_hosted_us_east_1"], h200) or "")
    assert hardware_mismatch(PRICES["jina_api"], "hosted") is None
    assert hardware_mismatch(a10g, None) == "the run does not say what hardware served it"
    table = decide(
        Workload(1e8, 10),
        [
            OptionCapacity("bundled, CPU", a10g, 20, 3_000, hardware_note=note),
            OptionCapacity("bundled, CPU", PRICES["c7i_large"], 20, 3_000),
        ],
        TARGET,
    )
    assert table.cheapest is not None and table.cheapest.price.name == "c7i_large"
    assert table.rows[0].hardware_note == note
    section = decision_section(table)
    assert section.tables[0].rows[0][-1] == f"yes (set by the peak); PRICE NOT MATCHED TO HARDWARE: {note}"
    cheaper_elsewhere = decide(
        Workload(1e8, 10), [OptionCapacity("bundled, CPU", a10g, 20, 3_000, hardware_note=note)], TARGET
    )
    assert cheaper_elsewhere.cheapest is None
    text = decision_section(cheaper_elsewhere).text
    assert (
        "No measured option meets the target" in text
        and f"that price is not matched to the hardware measured ({note})" in text
    )


def test_the_table_provisions_at_the_lower_bound_of_the_capacity_interval() -> None:
    """Capacity 14 (12-16) requests/s: a peak of 24 needs ceil(24 / 12) = 2 instances, not ceil(24 / 14) = 2;
    a peak of 26 needs 3 at the lower bound where the point estimate would say 2."""
    option = OptionCapacity(
        "bundled", PRICES["c7i_large"], 12, 1_500, capacity_interval_requests_per_s=(12, 16)
    )
    [row] = decide(Workload(1e6, 26), [option], TARGET).rows
    assert row.instances == 3 and row.capacity_interval_requests_per_s == (12, 16)
    section = decision_section(decide(Workload(1e6, 26), [option], TARGET))
    assert section.tables[0].rows[0][2] == "12.0 (12.0-16.0)"
    assert "provisioned at the lower bound of its capacity interval, 12.0 requests/s" in section.text


def test_bad_options_are_rejected() -> None:
    with pytest.raises(ReportError, match="needs at least one priced run"):
        decide(WORKLOAD, [], TARGET)
    with pytest.raises(ReportError, match="x: capacity must not be negative"):
        decide(WORKLOAD, [OptionCapacity("x", PRICES["jina_api"], -1, 5)], TARGET)
    with pytest.raises(ReportError, match="neither per token nor hourly"):
        decide(WORKLOAD, [OptionCapacity("x", Price("empty", ""), 1, 5)], TARGET)


def test_workload_string() -> None:
    assert parse_workload("tokens-per-day=2e9, peak-requests-per-s=40") == Workload(2e9, 40.0)
    assert parse_workload("peak-requests-per-s=0.5,tokens-per-day=1_000_000") == Workload(1e6, 0.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected KEY=VALUE pairs separated by commas, e.g. tokens-per-day=2e9,peak-requests-per-s=40"),
        ("tokens-per-day 2e9", "expected KEY=VALUE pairs"),
        ("tokens-per-day=2e9,", "expected KEY=VALUE pairs"),
        ("tokens_per_day=2e9", "unknown key 'tokens_per_day'; known: tokens-per-day, peak-requests-per-s"),
        ("tokens-per-day=2e9,tokens-per-day=3e9", "tokens-per-day is given twice"),
        ("tokens-per-day=2e9", "missing peak-requests-per-s"),
        ("tokens-per-day=lots,peak-requests-per-s=4", "tokens-per-day must be a number, found 'lots'"),
        ("tokens-per-day=0,peak-requests-per-s=4", "tokens-per-day must be a positive number"),
        ("tokens-per-day=inf,peak-requests-per-s=4", "tokens-per-day must be a positive number"),
    ],
)
def test_bad_workload_strings(text: str, message: str) -> None:
    with pytest.raises(ReportError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_workload(text)


def test_workload_toml(tmp_path: Path) -> None:
    path = tmp_path / "workload.toml"
    path.write_text(
        'description = "search and nightly indexing"\ntokens_per_day = 2_000_000_000\npeak_requests_per_s = 40\n'
    )
    workload = load_workload(str(path))
    assert workload == Workload(2e9, 40.0, "search and nightly indexing")
    assert (
        workload.describe()
        == "search and nightly indexing: 2,000,000,000 tokens a day, peaks of 40 requests/s"
    )
    assert load_workload("tokens-per-day=2e9,peak-requests-per-s=40") == Workload(2e9, 40.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tokens_per_day = ", "not a valid TOML workload file"),
        ("tokens_per_day = 5", "missing peak_requests_per_s, unknown nothing"),
        ("tokens_per_day = 5\npeak_requests_per_s = 1\npeak = 2", "missing nothing, unknown peak"),
        ("tokens_per_day = 5\npeak_requests_per_s = true", "peak_requests_per_s must be a positive number"),
        ("tokens_per_day = 5\npeak_requests_per_s = 1\ndescription = 3", "description must be a string"),
    ],
)
def test_bad_workload_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "workload.toml"
    path.write_text(text)
    with pytest.raises(ReportError, match=f"{path}: .*{message}"):
        load_workload(str(path))


def test_a_missing_workload_file_is_named() -> None:
    with pytest.raises(ReportError, match=r"--workload nowhere/workload\.toml: cannot read workload file"):
        load_workload("nowhere/workload.toml")


def test_a_daily_profile_costs_autoscaled_beside_peak_provisioned(tmp_path: Path) -> None:
    """Hand calculation: one instance carries 10 requests/s and 1,000 tokens/s at 2 USD/h; requests
    carry 10 tokens. Hours 0-7 at 5/s, 8-15 at 15/s, 16-19 at 25/s, 20-23 idle (min 1 instance):
    instances 1, 2, 3, 1 -> 8 + 16 + 12 + 4 = 40 instance-hours a day -> 40 x 2 x 30.4 = 2,432.00 USD
    autoscaled. Peak provisioned: ceil(25 / 10) = 3 instances x 2 x 730 = 4,380.00 USD. The volume,
    9,360,000 tokens a day, bills a per-token API at 0.02 USD per million: 9.36 x 30.4 x 0.02 = 5.69 USD."""
    hours = [5.0] * 8 + [15.0] * 8 + [25.0] * 4 + [0.0] * 4
    csv_lines = ["hour,requests_per_s,tokens_per_request"] + [
        f"{h},{rate},10" for h, rate in enumerate(hours)
    ]
    profile_file = tmp_path / "day.csv"
    profile_file.write_text("\n".join(csv_lines) + "\n")
    workload = load_workload(str(profile_file))
    assert workload.tokens_per_day == pytest.approx(9_360_000) and workload.peak_requests_per_s == 25
    server = Price("server", "", infrastructure_usd_per_hour=2.0, license_usd_per_hour=0.0)
    api = OptionCapacity("Jina API", JINA_UNLIMITED, 100, 100_000)
    table = decide(workload, [OptionCapacity("bundled", server, 10, 1_000), api], TARGET)
    bundled, jina = table.rows
    assert bundled.instances_per_hour == (1,) * 8 + (2,) * 8 + (3,) * 4 + (1,) * 4
    assert bundled.monthly_cost_autoscaled_usd == pytest.approx(2432.00)
    assert bundled.monthly_cost_usd == pytest.approx(4380.00) and bundled.instances == 3
    assert jina.monthly_cost_usd == pytest.approx(9.36 * 30.4 * 0.02)
    section = decision_section(table)
    header, bundled_row = section.tables[0].header, section.tables[0].rows[0]
    assert dict(zip(header, bundled_row, strict=True))["autoscaled (USD/month)"] == "2,432.00"
    assert "a 24-hour profile, busiest at 16:00" in section.text
    assert "Cheapest measured option that meets the target: Jina API" in section.text


def test_the_sample_profile_is_a_workload() -> None:
    workload = load_workload(
        str(Path(__file__).resolve().parents[2] / "reports" / "data" / "sample_profile.toml")
    )
    assert (
        workload.profile is not None and workload.peak_requests_per_s == workload.profile.peak_requests_per_s
    )


def test_your_own_rate_always_matches_the_hardware_measured() -> None:
    from reports.cost.pricing import choose_prices

    [own] = choose_prices([None], usd_per_hour=0.5)
    assert own.as_measured and own.total_usd_per_hour == 0.5
    h200 = {"device": "cuda", "gpu": "NVIDIA H200", "gpus": 1, "cpu": "x", "cpus": 16, "torch_threads": 16}
    assert hardware_mismatch(own, h200) is None and hardware_mismatch(own, None) is None


def test_options_within_each_others_noise_are_equal_not_a_winner() -> None:
    """Two servers at the same price whose capacity intervals overlap (10-14 and 12-16 requests/s): at a
    peak of 26 the first needs ceil(26 / 10) = 3 instances and the second ceil(26 / 12) = 3, the same
    cost; at a peak of 23 the first needs 3 and the second 2, yet which holds more is noise. Both are
    the answer. A third whose interval (30-34) lies clear of them is cheaper at a peak of 26 and wins."""
    price = PRICES["c7i_large"]
    bundled = OptionCapacity("bundled", price, 10, 1_200, capacity_interval_requests_per_s=(10, 14))
    infinity = OptionCapacity("infinity", price, 12, 1_400, capacity_interval_requests_per_s=(12, 16))
    for peak in (26, 23):
        table = decide(Workload(1e6, peak), [bundled, infinity], TARGET)
        assert table.cheapest is not None
        if peak == 23:  # 2 instances against 3: cheaper by count, yet within noise
            assert table.cheapest.option == "infinity"
        assert len(table.equal_to_cheapest) == 1
        section = decision_section(table)
        assert "Equal to it within the measurement's noise, so no winner between them" in section.text
        verdicts = [row[-1] for row in section.tables[0].rows]
        assert all(verdict.startswith("THE ANSWER, EQUAL WITHIN NOISE") for verdict in verdicts)
    faster = OptionCapacity("faster", price, 30, 3_600, capacity_interval_requests_per_s=(30, 34))
    table = decide(Workload(1e6, 26), [bundled, faster], TARGET)
    assert table.cheapest.option == "faster" and table.equal_to_cheapest == ()
    assert "Equal to it" not in decision_section(table).text


def test_runs_of_one_deployment_are_one_option() -> None:
    """A grid run, a trace replay and a capacity search of the same server (backend, host, model,
    hardware) are one option: the search's. A run of another host stays an option of its own."""
    from types import SimpleNamespace

    from reports.pipeline import same_server

    def run(label: str, host: str) -> SimpleNamespace:
        info = {"backend": "self-hosted", "host": host, "model": "m", "hardware": {"device": "cpu"}}
        return SimpleNamespace(label=label, info=info)

    searched = SimpleNamespace(capacity=object())
    loaded = [
        run("grid", "http://a"),
        run("trace", "http://a"),
        run("search", "http://a"),
        run("other", "http://b"),
    ]
    rates = [None, SimpleNamespace(capacity=None), searched, None]
    assert same_server(loaded, rates) == {"grid": "search", "trace": "search"}


def test_an_option_whose_answer_straddles_says_so_rather_than_that_no_rate_met() -> None:
    """The search's answer was 8/s, but only on 55 requests: no rate passed confidently, so the lower
    bound (what is provisioned) is 0 and the interval 0-13."""
    option = OptionCapacity(
        "none",
        PRICES["c7i_large"],
        0.0,
        0.0,
        capacity_interval_requests_per_s=(0.0, 13.0),
        point_requests_per_s=8.0,
    )
    [row] = decide(Workload(1e6, 1), [option], TARGET).rows
    assert row.note == (
        "no rate met the target with 95% confidence: the search's answer, 8 requests/s, does not hold at its "
        "interval's lower bound (0-13 requests/s)"
    )
    timeout = replace(option, point_requests_per_s=0.0, capacity_interval_requests_per_s=(0.0, 1.0))
    assert decide(Workload(1e6, 1), [timeout], TARGET).rows[0].note == "no rate met the target"
