"""Reports from per-request records, on fixture runs drawn from known distributions: exact
percentiles, the 1 s throughput series and its peak window by hand, where the time goes, repeats,
token counts and partial runs."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from embed_bench.core.contract import RUN_FILES
from reports.cli import main
from reports.load.runs import load_run
from reports.metrics.records import latency_distribution
from reports.metrics.runs import LATENCY_FROM_LOCUST, LATENCY_FROM_RECORDS, run_metrics
from reports.tables.records import THIN
from tests.reports.record_fixtures import RecordCell, read_records, write_record_run
from tests.reports.test_cli import markdown_table

CELLS = [
    RecordCell(1, 128, 1, requests_per_user=12, median_ms=120.0),
    RecordCell(8, 128, 10, requests_per_user=25, median_ms=400.0, fail_every=20),
    RecordCell(16, 256, 4, requests_per_user=10, median_ms=900.0, sigma=0.6),
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("records") / "run"
    write_record_run(directory, CELLS, label="recorded")
    return directory


def measured(directory: Path) -> pd.DataFrame:
    frame = read_records(directory / "requests.csv.gz")
    return frame[frame["warmup"] == 0]


def test_percentiles_are_numpy_linear_over_every_request(run_dir: Path) -> None:
    metrics = run_metrics(load_run(run_dir))
    assert metrics.latency_source == LATENCY_FROM_RECORDS
    frame = measured(run_dir)
    for cell in metrics.cells:
        rows = frame[frame["cell"] == cell.cell]
        everything, ok = rows["latency_ms"].to_numpy(), rows.loc[rows["ok"] == 1, "latency_ms"].to_numpy()
        assert cell.request_count == len(rows) and cell.success_count == len(ok)
        assert cell.mean_latency_ms == pytest.approx(everything.mean())
        for percentile, value in (
            (50, cell.median_latency_ms),
            (95, cell.p95_latency_ms),
            (99, cell.p99_latency_ms),
        ):
            assert value == pytest.approx(np.percentile(everything, percentile))
        assert cell.latency_ok.p99_9_ms == pytest.approx(np.percentile(ok, 99.9))
        assert cell.latency_ok.max_ms == pytest.approx(ok.max())
    # the cell with failures: the successful requests' distribution differs from all requests'
    failing = next(cell for cell in metrics.cells if cell.failure_count)
    assert failing.cell == "b=8 t=128 c=10" and failing.failure_count == 250 // 20
    assert failing.latency_ok.count == failing.success_count


def test_thin_percentiles_are_marked(run_dir: Path, tmp_path: Path) -> None:
    distribution = latency_distribution(np.arange(1, 51, dtype=float))
    assert not distribution.thin(95) and distribution.thin(99) and distribution.thin(99.9)
    assert latency_distribution(np.ones(9)).thin(90)
    assert latency_distribution(np.ones(1000)).thin(99.9) is False
    assert main([str(run_dir), "--out", str(tmp_path)]) == 0
    rows = markdown_table(
        (tmp_path / "report.md").read_text(),
        "Latency percentiles (ms), all requests (the study's definition): recorded",
    )
    assert rows[0] == [
        "concurrency",
        "batch size",
        "passage tokens",
        "requests",
        "p50",
        "p90",
        "p95",
        "p99",
        "p99.9",
        "max",
    ]
    by_cell = {(row[0], row[1], row[2]): row for row in rows[1:]}
    small = by_cell[("1", "1", "128")]  # 12 requests: p90 fine, p95 and up thin
    assert small[3] == "12"
    assert not small[5].endswith(THIN) and small[6].endswith(THIN) and small[7].endswith(THIN)
    big = by_cell[("10", "8", "128")]  # 250 requests: only p99.9 thin
    assert big[3] == "250" and not big[7].endswith(THIN) and big[8].endswith(THIN)


def test_throughput_series_sums_to_each_cells_tokens_and_the_peak_is_reproduced_by_hand(
    run_dir: Path,
) -> None:
    metrics = run_metrics(load_run(run_dir))
    series = metrics.timeline.series
    for cell in metrics.cells:
        assert series[cell.cell].sum() == pytest.approx(cell.successful_tokens)  # 1 s bins: tokens/s x 1 s
        assert cell.successful_tokens == cell.success_count * cell.nominal_tokens_per_request  # client count

    # by hand: bin every successful request at the second its answer arrived, then the best 10 s
    frame = read_records(run_dir / "requests.csv.gz")
    start = min(frame["sent_at"].min(), pd.read_csv(run_dir / "cells.csv")["start"].min())
    ok = frame[(frame["warmup"] == 0) & (frame["ok"] == 1)]
    seconds = np.floor(ok["completed_at"] - start).astype(int)
    per_second = np.zeros(seconds.max() + 1)
    np.add.at(per_second, seconds, ok["tokens_client"])
    best = max(range(len(per_second) - 9), key=lambda first: (per_second[first : first + 10].sum(), -first))
    peak = metrics.peak_window
    assert (peak.start_s, peak.end_s) == (best, best + 10)
    assert peak.tokens_per_s == pytest.approx(per_second[best : best + 10].sum() / 10)
    # the true peak differs from the study's "best cell" (a cell's mean)
    assert metrics.peak_throughput_tokens_per_s != pytest.approx(peak.tokens_per_s)


def test_where_the_time_goes(run_dir: Path) -> None:
    frame = measured(run_dir)
    metrics = run_metrics(load_run(run_dir))
    for cell in metrics.cells:
        rows = frame[(frame["cell"] == cell.cell) & (frame["ok"] == 1)]
        split = cell.time_split
        assert split.requests == len(rows)
        assert split.mean_queue_ms == pytest.approx(rows["queue_ms"].mean())
        assert split.p95_inference_ms == pytest.approx(np.percentile(rows["inference_ms"], 95))
        assert 3 <= split.mean_rest_ms <= 8  # the fixture's rest: 3-8 ms


def test_report_sections_and_plots_from_records(run_dir: Path, tmp_path: Path, capsys) -> None:
    assert main([str(run_dir), "--out", str(tmp_path)]) == 0
    markdown = (tmp_path / "report.md").read_text()
    for heading in (
        "## Where the time goes",
        "### Peak token throughput",
        "### Latency percentiles (ms), successful requests: recorded",
    ):
        assert heading in markdown
    for plot in (
        "throughput_over_time.png",
        "where_the_time_goes.png",
        "latency_cdf.png",
        "latency_vs_throughput.png",
    ):
        assert (tmp_path / plot).read_bytes().startswith(b"\x89PNG"), plot
    assert "## Repeats" not in markdown  # one repeat: no CI table
    peak_rows = {row[0]: row[1] for row in markdown_table(markdown, "Peak token throughput")[1:]}
    assert "s (b=" in peak_rows["window (seconds since the run's start; cells in it)"]
    assert "warning" not in capsys.readouterr().out  # complete run, counts agree within special tokens


def test_repeats_give_a_mean_and_a_95_percent_interval(tmp_path: Path) -> None:
    cells = CELLS[:2]
    write_record_run(tmp_path / "a", cells, label="a", repeats=3, seed=1)
    write_record_run(tmp_path / "b", cells, label="b", repeats=3, seed=2)
    metrics = run_metrics(load_run(tmp_path / "a"))
    assert metrics.repeats == 3
    frame = measured(tmp_path / "a")
    for cell in metrics.cells:
        per_repeat = [
            rows["latency_ms"].mean() for _, rows in frame[frame["cell"] == cell.cell].groupby("repeat")
        ]
        ci = cell.repeats["mean_latency_ms"]
        assert ci.n == 3 and ci.mean == pytest.approx(np.mean(per_repeat))
        assert ci.half_width == pytest.approx(
            stats.t.ppf(0.975, 2) * np.std(per_repeat, ddof=1) / math.sqrt(3)
        )
        assert 4.30 < stats.t.ppf(0.975, 2) < 4.31
        assert set(cell.repeats) >= {"p95_latency_ms", "throughput_tokens_per_s"}
    out = tmp_path / "out"
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    rows = markdown_table((out / "report.md").read_text(), "Mean latency (ms) over repeats")
    assert rows[0] == ["concurrency", "batch size", "passage tokens", "a", "b"]
    assert all("± " in row[3] and "(n=3)" in row[3] for row in rows[1:])
    # same distribution, other seed: the difference is within run-to-run noise
    assert any(row[4].endswith("≈") for row in rows[1:])
    assert main([str(tmp_path / "a"), "--out", str(tmp_path / "single")]) == 0  # and alone


def test_count_tokens_server_and_a_server_counting_characters(tmp_path: Path, capsys) -> None:
    characters = [
        RecordCell(4, 64, 2, requests_per_user=5, median_ms=50.0, server_tokens=lambda b, t: b * t * 5)
    ]
    write_record_run(tmp_path / "chars", characters, label="chars")
    client, server = (run_metrics(load_run(tmp_path / "chars"), count) for count in ("client", "server"))
    assert server.cells[0].successful_tokens == pytest.approx(5 * client.cells[0].successful_tokens)
    assert "characters" in client.token_check.cause
    assert (
        main([str(tmp_path / "chars"), "--out", str(tmp_path / "out"), "--price-per-million-tokens", "0.02"])
        == 0
    )
    out = capsys.readouterr().out
    assert "warning: chars: the server's token count is 5.00x the client's" in out
    assert "Infinity" in out
    summary = pd.read_csv(tmp_path / "out" / "summary.csv").set_index("metric")["chars"]
    assert summary["price_usd_per_million_tokens"] == pytest.approx(0.1)  # billed 5 per token counted
    assert main([str(tmp_path / "chars"), "--out", str(tmp_path / "s"), "--count-tokens", "server"]) == 0
    assert "server count" in (tmp_path / "s" / "report.md").read_text()
    assert main([str(tmp_path / "chars"), "--out", str(tmp_path / "x"), "--count-tokens", "bytes"]) == 2


def test_truncation_and_another_tokenizer_are_named(tmp_path: Path) -> None:
    truncating = [
        RecordCell(
            2, length, 1, requests_per_user=3, median_ms=50.0, server_tokens=lambda b, t: b * min(t + 2, 512)
        )
        for length in (256, 1024, 2048)
    ]
    write_record_run(tmp_path / "trunc", truncating)
    assert "truncation at the model's limit" in run_metrics(load_run(tmp_path / "trunc")).token_check.cause
    other = [
        RecordCell(
            2, 128, 1, requests_per_user=3, median_ms=50.0, server_tokens=lambda b, t: int(b * t * 1.3)
        )
    ]
    write_record_run(tmp_path / "other", other)
    assert "different tokenizer" in run_metrics(load_run(tmp_path / "other")).token_check.cause


def test_partial_run_is_flagged_in_the_summary_and_on_stdout(tmp_path: Path, capsys) -> None:
    cells = [RecordCell(1, 128, 2, requests_per_user=5, median_ms=80.0, planned=12)]
    write_record_run(tmp_path / "cut", cells, label="cut", status="interrupted")
    assert main([str(tmp_path / "cut"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert (
        "warning: cut is a PARTIAL run: run.json status 'interrupted'; b=1 t=128 c=2 completed 10/12 requests"
        in out
    )
    markdown = (tmp_path / "out" / "report.md").read_text()
    summary = markdown.split("## Summary", 1)[1].split("###", 1)[0]
    assert "> **⚠ cut is a PARTIAL run" in summary
    assert markdown_table(markdown, "Requests completed / planned per cell")[1] == ["2", "1", "128", "10/12"]


def test_a_record_file_cut_mid_member_keeps_every_complete_member(tmp_path: Path) -> None:
    frame = write_record_run(tmp_path / "crash", CELLS[:2])
    path = tmp_path / "crash" / "requests.csv.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # the last member cut short, as a crash mid-flush leaves it
    run = load_run(tmp_path / "crash")
    assert any("cut gzip member" in note for note in run.records.notes)
    kept = len(run.records.frame)
    assert 0 < kept < len(frame)
    assert gzip.decompress(data).count(b"\n") - 1 == len(frame)


def test_runs_without_records_say_their_percentiles_are_rounded(tmp_path: Path) -> None:
    write_record_run(tmp_path / "old", CELLS[:1], with_records=False)
    metrics = run_metrics(load_run(tmp_path / "old"))
    assert metrics.latency_source == LATENCY_FROM_LOCUST and metrics.timeline is None
    assert any("rounded to two significant digits" in note for note in metrics.notes)
    assert main([str(tmp_path / "old"), "--out", str(tmp_path / "out")]) == 0
    assert not (tmp_path / "out" / "throughput_over_time.png").exists()


def test_a_cell_walked_twice_without_records_is_timed_by_both_walks(tmp_path: Path) -> None:
    """Repeats list a cell once per walk (cells.csv ``repeat``); Locust's CSVs merge their requests, so
    without records the report times the cell by the sum of its walks, not by the first alone."""
    write_record_run(tmp_path / "twice", CELLS[:1], repeats=2, with_records=False)
    windows = pd.read_csv(tmp_path / "twice" / RUN_FILES.cells_csv)
    metrics = run_metrics(load_run(tmp_path / "twice"))
    assert metrics.cells[0].duration_s == pytest.approx((windows["end"] - windows["start"]).sum())
    assert metrics.repeats == 1 and metrics.cells[0].request_count == 24
