"""The report checks each cell's request records against the counts the run kept in cells.csv, and
flags what does not match (report.md, report.html, the console); run files that cannot be read are
errors that name them, never an empty result."""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from embed_bench.core.contract import RUN_FILES
from reports.cli import main
from reports.errors import ReportError
from reports.load.runs import load_run
from reports.metrics.rates import rate_run
from reports.metrics.runs import run_metrics
from tests.reports.record_fixtures import (
    RateRecordCell,
    RateShape,
    RecordCell,
    read_records,
    write_gzip_members,
    write_rate_run,
    write_record_run,
)

CELLS = [
    RecordCell(1, 128, 2, requests_per_user=10, median_ms=100.0),
    RecordCell(4, 128, 4, requests_per_user=10, median_ms=300.0),
]
SHORT = "b=4 t=128 c=4"


def drop_records(directory: Path, cell: str, count: int) -> None:
    """Take ``count`` measured rows of ``cell`` out of requests.csv.gz, as a recorder that could not
    write them would have left it."""
    frame = read_records(directory / RUN_FILES.requests)
    rows = frame.index[(frame["cell"] == cell) & (frame["warmup"] == 0)][:count]
    write_gzip_members(directory / RUN_FILES.requests, frame.drop(rows))


def report(directory: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str, str]:
    """``embed-bench report``: the console, report.md and report.html."""
    out = directory / "report"
    assert main([str(directory), "--out", str(out)]) == 0
    console = capsys.readouterr().out
    return console, (out / "report.md").read_text(), (out / "report.html").read_text()


def test_records_missing_from_a_cell_flag_the_run_partial_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "run"
    write_record_run(directory, CELLS, label="short")
    drop_records(directory, SHORT, 7)
    metrics = run_metrics(load_run(directory))
    expected = f"{SHORT}: 33 request record(s) for 40 completed request(s) in cells.csv: 7 record(s) MISSING"
    flagged = [reason for reason in metrics.partial if reason.startswith(expected)]
    print("partial:", metrics.partial)
    assert len(flagged) == 1, metrics.partial
    assert not any(reason.startswith("b=1 t=128 c=2") for reason in metrics.partial)  # its 20 are all there
    console, markdown, html = report(directory, capsys)
    assert f"warning: short is a PARTIAL run: {expected}" in console
    assert expected in markdown
    assert f'<div class="alert">⚠ short is a PARTIAL run: {expected}' in html


def test_more_records_than_completed_requests_say_the_figures_mix_runs(tmp_path: Path) -> None:
    directory = tmp_path / "run"
    write_record_run(directory, CELLS, label="mixed")
    frame = read_records(directory / RUN_FILES.requests)
    extra = frame[(frame["cell"] == SHORT) & (frame["warmup"] == 0)].head(3)
    write_gzip_members(directory / RUN_FILES.requests, pd.concat([frame, extra], ignore_index=True))
    reasons = run_metrics(load_run(directory)).partial
    assert any(
        reason.startswith(f"{SHORT}: 43 request record(s) for 40 completed")
        and "3 record(s) too many" in reason
        for reason in reasons
    ), reasons


def test_a_cell_that_lost_a_worker_is_flagged_with_what_it_completed(tmp_path: Path) -> None:
    directory = tmp_path / "run"
    write_record_run(directory, CELLS, label="lost")
    path = directory / RUN_FILES.cells_csv
    rows = list(csv.DictReader(path.open(newline="")))
    for row in rows:
        if row["cell"] == SHORT:
            row["planned"], row["workers_lost"] = "60", "1"  # a third of its users went with the worker
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=[*rows[0].keys()])
        writer.writeheader()
        writer.writerows(rows)
    reasons = run_metrics(load_run(directory)).partial
    assert f"{SHORT}: 1 Locust worker(s) lost mid-cell, 40/60 requests completed" in reasons, reasons


def test_rate_cells_records_are_checked_against_their_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "rates"
    cells = [RateRecordCell(rate, 10, (RateShape(1, 128, 80.0),), drop_every=9) for rate in (4.0, 8.0)]
    write_rate_run(directory, cells, label="rates")
    assert rate_run(load_run(directory)).alerts == ()  # dropped arrivals count as completed failures
    drop_records(directory, "r=8 b=1 t=128", 5)
    alerts = rate_run(load_run(directory)).alerts
    assert alerts == (
        "r=8 b=1 t=128: 75 request record(s) for 80 completed request(s) in cells.csv: 5 record(s) MISSING, "
        "its figures rest on a subset (locust.log says why the recorder could not write them)",
    ), alerts
    console, markdown, _ = report(directory, capsys)
    assert f"warning: rates: {alerts[0]}" in console
    assert alerts[0] in markdown


def test_connection_failures_say_the_target_was_unreachable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "run"
    write_record_run(directory, CELLS, label="restarted")
    frame = read_records(directory / RUN_FILES.requests)
    hit = frame.index[(frame["cell"] == SHORT) & (frame["warmup"] == 0)][:6]
    frame["failure"] = frame["failure"].astype(object)
    frame.loc[hit, ["ok", "status", "failure"]] = [0, 0, "connection refused"]
    write_gzip_members(directory / RUN_FILES.requests, frame)
    console, markdown, _ = report(directory, capsys)
    expected = (
        "restarted: the target was UNREACHABLE for part of the run (it stopped, restarted or the network "
        f"failed): requests failed on the connection in 1 cell(s) ({SHORT}: connection refused (6)); "
        "1 of the 1 other cell(s) measured with every request successful"
    )
    assert f"warning: {expected}" in console
    assert expected in markdown


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda path: path.write_bytes(b"\xff\xfe\x00garbage"), "cells.csv: cannot be read ('utf-8' codec"),
        (
            lambda path: path.write_text(path.read_text().replace("1760000000.000", "soon", 1)),
            "cells.csv, line 2: start 'soon' is not a number",
        ),
        (
            lambda path: path.write_text(path.read_text().replace(",40,", ",forty,", 1)),
            "is not a number",
        ),
    ],
)
def test_a_broken_cells_csv_is_an_error_naming_it(tmp_path: Path, damage, message: str) -> None:
    directory = tmp_path / "run"
    write_record_run(directory, CELLS)
    damage(directory / RUN_FILES.cells_csv)
    with pytest.raises(ReportError, match=re.escape(message)):
        load_run(directory)


def test_a_corrupt_record_file_is_an_error_but_a_cut_last_member_is_a_note(tmp_path: Path) -> None:
    directory = tmp_path / "run"
    write_record_run(directory, CELLS)
    path = directory / RUN_FILES.requests
    data = path.read_bytes()
    path.write_bytes(data + b"not gzip at all" + gzip.compress(b"more rows\n"))
    with pytest.raises(ReportError, match=r"requests\.csv\.gz: unreadable gzip data after 1 complete member"):
        load_run(directory)
    path.write_bytes(data[:-20])  # a crash mid-flush: the last member cut short
    notes = load_run(directory).records.notes
    assert any("ends in a cut gzip member" in note for note in notes), notes


def test_run_json_that_is_not_an_object_is_an_error(tmp_path: Path) -> None:
    directory = tmp_path / "run"
    write_record_run(directory, CELLS)
    (directory / RUN_FILES.run_json).write_text(json.dumps([1, 2]))
    with pytest.raises(ReportError, match=r"run\.json: expected a JSON object, found list"):
        load_run(directory)
