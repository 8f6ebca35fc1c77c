"""Trace files: parsing, errors that name the row, replay offsets, shares, the hourly profile, and
the shipped sample trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embed_bench.core.sample_trace import SAMPLE_TRACE, sample_trace_text
from embed_bench.core.trace import (
    TraceError,
    hourly_profile,
    load_trace,
    parse_trace,
    replay_offsets,
    share_rows,
)


def test_a_csv_trace_gives_each_input_its_tokens_and_sorts_rows_by_time() -> None:
    text = "offset_s,batch_size,tokens\n5,1,12\n1.5,3,8 9;10\n2,4,7\n"
    trace = parse_trace(text, "log.csv", jsonl=False)
    assert [r.time_s for r in trace.requests] == [1.5, 2.0, 5.0]
    assert [r.lengths for r in trace.requests] == [(8, 9, 10), (7, 7, 7, 7), (12,)]
    assert [r.row for r in trace.requests] == [3, 4, 2]  # file line numbers, for messages
    assert trace.describe()["tokens"] == 27 + 28 + 12


def test_a_jsonl_trace_takes_texts_and_iso_timestamps() -> None:
    lines = [
        {"timestamp": "2026-12-01T10:00:00Z", "texts": ["hello world", "again"]},
        {"timestamp": "2026-12-01T10:00:02.5", "tokens": [4, 5]},  # no zone: UTC
    ]
    trace = parse_trace("\n".join(map(json.dumps, lines)) + "\n\n", "log.jsonl", jsonl=True)
    assert trace.epoch and trace.span_s == pytest.approx(2.5)
    assert trace.requests[0].texts == ("hello world", "again") and trace.requests[0].batch_size == 2
    assert trace.describe()["tokens"] is None  # texts: counted by the run's tokenizer


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("offset_s,tokens\n1,12\nx,3\n", "row 3: offset_s must be a finite number"),
        ("offset_s,tokens\n-1,12\n", "row 2: offset_s must not be negative"),
        ("offset_s,tokens\n1,0\n", "row 2: tokens must be an integer from 1"),
        ("offset_s,batch_size,tokens\n1,2,3 4 5\n", "row 2: batch_size 2 but 3 token count(s)"),
        ("offset_s,tokens,texts\n1,3,\n2,,\n", "row 3: give exactly one of tokens"),
        ("offset_s,tokens,colour\n1,3,red\n", "row 2: unknown field(s) colour"),
        ("when,tokens\n1,3\n", "the CSV header needs offset_s or timestamp"),
        ("offset_s,tokens\n", "the trace has no requests"),
        ("offset_s,texts\n1,hello\n", "texts in a CSV trace is a JSON list"),
    ],
)
def test_a_bad_row_is_an_error_that_names_it(text: str, message: str) -> None:
    with pytest.raises(TraceError, match=r"log\.csv") as error:
        parse_trace(text, "log.csv", jsonl=False)
    assert message in str(error.value)


def test_rows_may_not_mix_offsets_and_timestamps() -> None:
    lines = ['{"offset_s": 1, "tokens": 3}', '{"timestamp": 1700000000, "tokens": 3}']
    with pytest.raises(TraceError, match="mix offset_s and timestamp"):
        parse_trace("\n".join(lines), "log.jsonl", jsonl=True)


def test_a_missing_trace_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="trace file not found"):
        load_trace(tmp_path / "nope.csv")


def test_an_unchanged_file_is_parsed_once_and_a_changed_one_again(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("offset_s,tokens\n0,3\n1,4\n")
    first = load_trace(path)
    assert load_trace(path) is first and load_trace(str(path)) is first
    path.write_text("offset_s,tokens\n0,3\n1,4\n2,5\n")  # a new size: parsed again
    assert len(load_trace(path)) == 3
    path.unlink()
    with pytest.raises(TraceError, match="trace file not found"):
        load_trace(path)


def test_replay_starts_at_zero_compresses_time_and_cuts_idle_gaps() -> None:
    trace = parse_trace("offset_s,tokens\n100,1\n110,1\n3700,1\n3701,1\n", "t.csv", jsonl=False)
    assert replay_offsets(trace) == [0.0, 10.0, 3600.0, 3601.0]
    assert replay_offsets(trace, speed=10) == pytest.approx([0.0, 1.0, 360.0, 360.1])
    # the 359 s gap (after speed) is cut to 5 s; the others stay
    assert replay_offsets(trace, speed=10, max_gap_s=5) == pytest.approx([0.0, 1.0, 6.0, 6.1])
    with pytest.raises(TraceError, match="--trace-speed"):
        replay_offsets(trace, speed=0)


def test_the_shares_of_n_processes_cover_every_row_once() -> None:
    shares = [list(share_rows(10, 3, index)) for index in range(3)]
    assert sorted(row for share in shares for row in share) == list(range(10))
    assert shares[1] == [1, 4, 7]


def test_the_hourly_profile_counts_requests_over_the_seconds_each_hour_is_covered() -> None:
    # Two requests in hour 0 (covered from 0 s to 3600 s), one in hour 1 (covered 3600 to 5400 s).
    trace = parse_trace("offset_s,tokens\n0,10\n1800,20\n5400,30\n", "t.csv", jsonl=False)
    load = hourly_profile(trace)
    assert load.covered_s[:3] == (3600.0, 1800.0, 0.0)
    assert load.requests_per_s[0] == pytest.approx(2 / 3600) and load.requests_per_s[1] == pytest.approx(
        1 / 1800
    )
    assert load.tokens_per_request[:2] == (15.0, 30.0)
    assert load.missing_hours == list(range(2, 24))  # never filled in


def test_the_shipped_sample_trace_is_the_generators_output_and_covers_a_day() -> None:
    assert SAMPLE_TRACE.read_text() == sample_trace_text()
    trace = load_trace(SAMPLE_TRACE)
    assert 900 < len(trace) < 1200 and trace.span_s > 23 * 3600
    load = hourly_profile(trace)
    assert load.missing_hours == []
    assert max(r.batch_size for r in trace.requests) == 8  # the indexing bursts
    assert max(length for r in trace.requests for length in r.lengths) <= 256  # the bundled model's limit
