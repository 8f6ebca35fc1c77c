"""Traffic figures (length bands, shapes, SLO windows) and a trace as the decision's day of traffic,
each checked against a hand calculation."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from reports.cost.decision import load_workload
from reports.cost.profile import is_trace_file, profile_of_trace
from reports.errors import ReportError
from reports.metrics.traffic import band_of, length_bands, shape_figures, slo_windows, traffic_figures


def records(rows: list[tuple[int, int, int, int, float, float]]) -> pd.DataFrame:
    """(batch_size, passage_tokens = longest, tokens_client, ok, latency_ms, planned_at) rows."""
    return pd.DataFrame(
        rows, columns=["batch_size", "passage_tokens", "tokens_client", "ok", "latency_ms", "planned_at"]
    )


@pytest.mark.parametrize(
    ("tokens", "band"), [(1, (1, 16)), (16, (1, 16)), (17, (17, 32)), (128, (65, 128)), (129, (129, 256))]
)
def test_bands_are_powers_of_two(tokens: int, band: tuple[int, int]) -> None:
    assert band_of(tokens) == band


def test_bands_shapes_and_padding_match_a_hand_count() -> None:
    frame = records(
        [
            (1, 10, 10, 1, 50.0, 0.0),
            (1, 12, 12, 1, 70.0, 1.0),
            (4, 100, 250, 1, 400.0, 2.0),  # 4 x 100 padded, 250 real: 37.5% padding
            (4, 120, 480, 0, float("nan"), 3.0),  # failed: counts in requests, not in latency
        ]
    )
    short, long = length_bands(frame)
    assert (short.label, short.requests, short.succeeded, short.p95_ms, short.padding_pct) == (
        "1-16",
        2,
        2,
        70.0,
        0.0,
    )
    assert (long.label, long.requests, long.succeeded, long.p50_ms) == ("65-128", 2, 1, 400.0)
    assert long.padding_pct == pytest.approx(100 * (1 - 730 / 880))
    assert [group.label for group in shape_figures(frame)] == ["b=1 t=1-16", "b=4 t=65-128"]


def test_slo_windows_count_what_met_the_target_among_all_offered() -> None:
    frame = records(
        [
            (1, 8, 8, 1, 100.0, 0.0),
            (1, 8, 8, 1, 900.0, 1.0),  # over 500 ms: succeeded, not within the target
            (1, 8, 8, 0, float("nan"), 5.0),  # failed
            (1, 8, 8, 1, 200.0, 10.0),
        ]
    )
    first, second = slo_windows(frame, target_ms=500.0, windows=2)
    # windows of (10 - 0) / 2 = 5 s: [0, 5) and [5, 10]
    assert (first.offered, first.succeeded, first.within_target, first.p95_ms) == (2, 2, 1, 900.0)
    assert (second.offered, second.succeeded, second.within_target) == (
        2,
        1,
        1,
    ) and second.attainment_pct == 50.0
    figures = traffic_figures(frame, {"trace": {"slo_p95_ms": 500.0}})
    assert figures is not None and figures.attainment_pct == 50.0
    assert traffic_figures(frame, {}) is None  # fixed lengths, no trace: nothing to break down


def test_a_day_long_trace_is_a_daily_profile_by_hand(tmp_path: Path) -> None:
    # Hour 0: 3 requests of 10, 20 and 30 tokens; hour 5: one of 4 x 50; the trace runs to 23:59:59.
    lines = ["offset_s,batch_size,tokens", "0,1,10", "600,1,20", "1200,1,30", "18000,4,50", "86399,1,7"]
    trace = tmp_path / "day.csv"
    trace.write_text("\n".join(lines) + "\n")
    assert is_trace_file(trace)
    profile = profile_of_trace(trace)
    assert profile.requests_per_s[0] == pytest.approx(3 / 3600) and profile.requests_per_s[
        5
    ] == pytest.approx(1 / 3600)
    assert profile.requests_per_s[1] == 0.0  # covered, and idle
    assert profile.tokens_per_request[0] == 20.0 and profile.tokens_per_request[5] == 200.0
    # hour 23 is covered for 3,599 s of its 3,600 (the last row is at 86,399 s)
    assert profile.requests_per_s[23] == pytest.approx(1 / 3599)
    assert profile.tokens_per_day == pytest.approx(60 + 200 + 7 * 3600 / 3599)
    workload = load_workload(str(trace))
    assert workload.profile == profile and "trace day.csv (5 requests" in workload.describe()


def test_a_trace_that_misses_hours_is_refused_by_name(tmp_path: Path) -> None:
    trace = tmp_path / "morning.jsonl"
    trace.write_text('{"offset_s": 28800, "tokens": 5}\n{"offset_s": 36000, "tokens": [5, 6]}\n')
    with pytest.raises(ReportError, match=r"does not cover hour\(s\) 00:00, .*07:00, 10:00, .*23:00"):
        profile_of_trace(trace)
    profile_csv = tmp_path / "profile.csv"
    profile_csv.write_text("hour,requests_per_s,tokens_per_request\n")
    assert not is_trace_file(profile_csv)


def test_the_html_report_shows_a_command_as_code_not_backticks() -> None:
    from reports.export.html import inline

    html = inline("jina_api: not measured; measure it with: `embed-bench run --backend jina-api --grid <g>`")
    assert "`" not in html and "<code>embed-bench run --backend jina-api --grid &lt;g&gt;</code>" in html
