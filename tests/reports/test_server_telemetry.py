"""The report's server telemetry: server_metrics.csv read back, per-cell means computed from gauges and
counter deltas, the timeline plot, the section, and runs without an endpoint said to be unmeasured."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embed_bench.core.server_metrics import SERVER_METRICS_COLUMNS, format_labels
from reports.errors import ReportError
from reports.load.server_metrics import load_cell_spans, load_server_samples
from reports.metrics.server import server_series
from reports.pipeline import build_report, write_report
from tests.reports.record_fixtures import RateRecordCell, RateShape, write_rate_run

SHAPE = (RateShape(batch_size=1, passage_tokens=128, median_ms=40.0),)
CELLS = (RateRecordCell(2.0, 10.0, SHAPE), RateRecordCell(20.0, 10.0, SHAPE))
# What the server's counters do per second in each cell: requests waiting, requests and tokens per
# pass, passes per second, pass time, CPU seconds per second.
PER_CELL = {
    "r=2 b=1 t=128": dict(queue=0, per_pass=1, tokens=130, passes=2, pass_s=0.030, cpu=0.5),
    "r=20 b=1 t=128": dict(queue=12, per_pass=4, tokens=520, passes=5, pass_s=0.120, cpu=1.0),
}


def write_samples(directory: Path, gpu: bool = False) -> None:
    """One scrape a second from 1 s before the first cell to 1 s after the last, as the sampler writes
    them: cumulative counters, gauges, ``up``; one failed scrape in the middle of the second cell."""
    spans = load_cell_spans(directory)
    rows: list[tuple[object, ...]] = []
    totals = dict.fromkeys(("count", "requests", "tokens", "seconds", "cpu"), 0.0)
    now = spans[0].start_s - 1.0
    while now <= spans[-1].end_s + 1.0:
        span = next((s for s in spans if s.start_s <= now <= s.end_s), None)
        figures = (
            PER_CELL[span.cell] if span else dict(queue=0, per_pass=0, tokens=0, passes=0, pass_s=0, cpu=0.1)
        )
        totals["count"] += figures["passes"]
        totals["requests"] += figures["passes"] * figures["per_pass"]
        totals["tokens"] += figures["passes"] * figures["tokens"]
        totals["seconds"] += figures["passes"] * figures["pass_s"]
        totals["cpu"] += figures["cpu"]
        if span is not None and span.cell.startswith("r=20") and abs(now - (span.start_s + 5)) < 0.5:
            rows.append((now, "up", format_labels({"error": "timed out"}), 0))
            now += 1.0
            continue
        rows += [
            (now, "up", "", 1),
            (now, "embed_queue_requests", "", figures["queue"]),
            (now, "embed_queue_tokens", "", figures["queue"] * 130),
            (now, "embed_batch_requests_count", "", totals["count"]),
            (now, "embed_batch_requests_sum", "", totals["requests"]),
            (now, "embed_batch_tokens_count", "", totals["count"]),
            (now, "embed_batch_tokens_sum", "", totals["tokens"]),
            (now, "embed_batch_seconds_count", "", totals["count"]),
            (now, "embed_batch_seconds_sum", "", totals["seconds"]),
            (now, "process_cpu_seconds_total", "", totals["cpu"]),
            (now, "embed_requests_total", format_labels({"endpoint": "embed", "status": "200"}), 1),
        ]
        if gpu:
            for index in ("0", "1"):
                labels = format_labels({"gpu": index, "gpu_name": "NVIDIA H200"})
                rows.append((now, "embed_gpu_utilization_percent", labels, 90.0 if index == "0" else 70.0))
        now += 1.0
    with (directory / "server_metrics.csv").open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(SERVER_METRICS_COLUMNS)
        writer.writerows(rows)
    info = json.loads((directory / "run.json").read_text())
    info["server_metrics"] = {"url": "http://127.0.0.1:8000/metrics", "interval_s": 1.0, "scrapes": 25}
    (directory / "run.json").write_text(json.dumps(info))


@pytest.fixture
def sampled_run(tmp_path: Path) -> Path:
    directory = tmp_path / "sampled"
    write_rate_run(directory, CELLS, label="sampled")
    write_samples(directory)
    return directory


def telemetry_rows(report) -> dict[str, dict[str, str]]:
    section = next(section for section in report.sections if section.title == "Server telemetry")
    (table,) = section.tables
    return {row[0]: dict(zip(table.header, row, strict=True)) for row in table.rows}


def test_each_cell_gets_its_mean_queue_pass_size_pass_time_and_cpu(sampled_run: Path) -> None:
    report = build_report([sampled_run])
    rows = telemetry_rows(report)
    low, high = rows["r=2 b=1 t=128"], rows["r=20 b=1 t=128"]
    assert (low["mean queue (requests)"], high["mean queue (requests)"]) == ("0.0", "12.0")
    assert (low["mean queue (tokens)"], high["mean queue (tokens)"]) == ("0", "1,560")
    assert (low["requests per pass"], high["requests per pass"]) == ("1.00", "4.00")
    assert (low["tokens per pass"], high["tokens per pass"]) == ("130", "520")
    assert (low["pass time (ms)"], high["pass time (ms)"]) == ("30.0", "120.0")
    assert (low["CPU (cores)"], high["CPU (cores)"]) == ("0.50", "1.00")
    # A CPU server has no GPU series, and the inputs-per-pass histogram was not in this file.
    assert low["GPU utilization (%)"] == high["GPU utilization (%)"] == "not measured"
    assert low["inputs per pass"] == "not measured"
    assert int(high["samples"]) == int(low["samples"]) - 1  # the failed scrape is not a sample


def test_the_timeline_plot_and_the_section_reach_both_exports(sampled_run: Path, tmp_path: Path) -> None:
    report = build_report([sampled_run])
    section = next(section for section in report.sections if section.title == "Server telemetry")
    (key,) = section.plots
    plot = report.plots[key]
    assert plot.filename == "server_telemetry_sampled.png" and plot.png.startswith(b"\x89PNG")
    written = write_report(report, tmp_path / "report")
    assert tmp_path / "report" / plot.filename in written
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "## Server telemetry" in markdown and f"]({plot.filename})" in markdown
    assert "Server telemetry per cell: sampled" in (tmp_path / "report" / "report.html").read_text()


def test_gpu_utilization_is_averaged_over_the_gpus_and_the_samples(tmp_path: Path) -> None:
    directory = tmp_path / "gpu"
    write_rate_run(directory, CELLS, label="gpu")
    write_samples(directory, gpu=True)
    rows = telemetry_rows(build_report([directory]))
    assert rows["r=20 b=1 t=128"]["GPU utilization (%)"] == "80"


def test_runs_without_an_endpoint_say_so_and_why(sampled_run: Path, tmp_path: Path) -> None:
    hosted = tmp_path / "hosted"
    write_rate_run(hosted, CELLS, label="hosted")
    info = json.loads((hosted / "run.json").read_text())
    info["server_metrics"] = {
        "url": None,
        "note": "not available: the jina backend has no Prometheus endpoint",
    }
    (hosted / "run.json").write_text(json.dumps(info))
    older = tmp_path / "older"
    write_rate_run(older, CELLS, label="older")
    report = build_report([sampled_run, hosted, older])
    section = next(section for section in report.sections if section.title == "Server telemetry")
    assert len(section.tables) == 1 and len(section.plots) == 1
    assert "hosted: server telemetry not measured: not available: the jina backend" in section.bullets[0]
    assert section.bullets[1].startswith("older: server telemetry not measured: no server_metrics.csv")
    alone = build_report([hosted])
    only = next(section for section in alone.sections if section.title == "Server telemetry")
    assert not only.tables and not only.plots and "No run sampled" in only.text


def test_a_server_restart_gives_no_figure_for_that_interval() -> None:
    """Counters that go down (a restarted server) give NaN, never a negative pass size or CPU."""
    times = [100.0, 101.0, 102.0, 103.0]
    rows = []
    for now, count, total, cpu in zip(
        times, [10, 20, 2, 12], [40, 80, 4, 44], [5.0, 6.0, 0.2, 1.2], strict=True
    ):
        rows += [
            (now, "embed_batch_size_count", "", count),
            (now, "embed_batch_size_sum", "", total),
            (now, "process_cpu_seconds_total", "", cpu),
        ]
    series = server_series(pd.DataFrame(rows, columns=list(SERVER_METRICS_COLUMNS)))
    assert series["pass_inputs"].tolist()[1:] == [4.0, pytest.approx(np.nan, nan_ok=True), 4.0]
    assert np.isnan(series["cpu_cores"].iloc[2]) and series["cpu_cores"].iloc[3] == pytest.approx(1.0)


def test_a_file_that_is_not_a_sample_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "server_metrics.csv").write_text("when,what\n1,2\n")
    with pytest.raises(ReportError, match="missing column"):
        load_server_samples(tmp_path, {})
    (tmp_path / "server_metrics.csv").write_text(
        "time,metric,labels,value\n1.0,up,,1\n2.0,up,,1\n3.0,embed_q"
    )
    samples = load_server_samples(tmp_path, {})  # a row cut by a kill mid-write is dropped
    assert samples.frame is not None and len(samples.frame) == 2
