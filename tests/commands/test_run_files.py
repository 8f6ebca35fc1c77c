"""What `embed-bench run` reads back from its run directory: a directory it cannot write stops it
before anything is sent; a cells.csv or capacity.json it cannot read is an error that names the
file (never an empty result); request records missing from requests.csv.gz mark the run partial
with the count lost."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from embed_bench.commands.run import (
    Outcome,
    RunError,
    capacity_of,
    check_writable,
    missing_records,
    read_cells,
)
from embed_bench.core.cells import CellRecord, CellsCsv
from embed_bench.core.contract import RUN_FILES, Cell
from embed_bench.core.records import RecordFile
from tests.core.test_record_file import row

CELL = Cell(concurrency=2, batch_size=1, passage_tokens=16)


def test_a_run_directory_under_a_file_is_refused_and_nothing_is_created(tmp_path: Path) -> None:
    (tmp_path / "runs").write_text("a file, not a folder")
    with pytest.raises(RunError, match=r"runs/mine: the run directory cannot be created, .*runs is a file"):
        check_writable(tmp_path / "runs" / "mine")
    check_writable(tmp_path / "new" / "deep" / "run")  # the nearest folder that exists takes a probe
    assert sorted(os.listdir(tmp_path)) == ["runs"]  # the probe is gone, nothing was created


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_directory_is_refused(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(RunError, match="the run directory cannot be written"):
            check_writable(tmp_path / "run")
    finally:
        tmp_path.chmod(0o700)


def test_a_broken_cells_csv_is_an_error_naming_the_file_and_line(tmp_path: Path) -> None:
    assert read_cells(tmp_path / RUN_FILES.cells_csv) == []  # not written yet: no cell started
    CellsCsv(tmp_path).write([CellRecord(CELL, start=1.0, end=2.0, planned=6, completed=6, succeeded=6)])
    path = tmp_path / RUN_FILES.cells_csv
    assert [record.completed for record in read_cells(path)] == [6]
    path.write_text(path.read_text().replace("1.000000", "one", 1))
    with pytest.raises(RunError, match=r"cells\.csv, line 2: not a cells\.csv row"):
        read_cells(path)
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(RunError, match=r"cells\.csv: cannot be read"):
        read_cells(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object, found list")],
)
def test_a_broken_capacity_json_is_an_error_never_an_empty_answer(
    tmp_path: Path, text: str, message: str
) -> None:
    assert capacity_of(tmp_path) == {}  # no search ran
    (tmp_path / RUN_FILES.capacity_json).write_text(text)
    with pytest.raises(RunError, match=rf"capacity\.json: {message}"):
        capacity_of(tmp_path)


def test_records_missing_from_the_file_mark_the_run_partial_with_the_count(tmp_path: Path) -> None:
    cells = (
        CellRecord(CELL, start=1.0, end=2.0, planned=6, completed=6, succeeded=6),
        CellRecord(
            Cell(concurrency=2, batch_size=4, passage_tokens=16),
            start=3.0,
            end=4.0,
            planned=6,
            completed=6,
            succeeded=6,
        ),
    )
    RecordFile(tmp_path / RUN_FILES.requests).append(
        [row(CELL.name, index=index) for index in range(6)] + [row("b=4 t=16 c=2")] * 2
    )
    missing, error = missing_records(tmp_path, cells)
    assert (missing, error) == ({"b=4 t=16 c=2": 4}, None)
    outcome = Outcome(cells, steps=2, missing_records=missing)
    assert outcome.status() == ("partial (4 request record(s) lost)", None)
    summary = outcome.summary()
    print("\n".join(summary))
    assert (
        "request records LOST: 4 completed measured request(s) have no row in requests.csv.gz "
        "(b=4 t=16 c=2: 4); locust.log says why"
    ) in summary
    assert outcome.losses() == {"records_lost": 4, "records_lost_by_cell": {"b=4 t=16 c=2": 4}}


def test_a_cell_that_lost_a_worker_makes_the_run_partial(tmp_path: Path) -> None:
    record = CellRecord(CELL, start=1.0, end=2.0, planned=10, completed=6, succeeded=6, workers_lost=1)
    CellsCsv(tmp_path).write([record])
    (read,) = read_cells(tmp_path / RUN_FILES.cells_csv)
    assert read.workers_lost == 1
    assert read.outcome() == "6/10 ok, 4 unsent or unfinished, 1 Locust worker(s) lost mid-cell"
    outcome = Outcome((read,), steps=1)
    assert outcome.status() == ("partial (1 cell(s) cut short; 1 Locust worker(s) lost)", None)
    assert outcome.losses() == {"workers_lost": 1, "workers_lost_by_cell": {CELL.name: 1}}
