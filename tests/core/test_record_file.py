"""The record file as `embed-bench run` counts it against cells.csv: measured rows per cell and
repeat, a cut last member tolerated, a file that is not a record file named in the error; a failed
append leaves the file as it was."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from embed_bench.core.contract import REQUEST_RECORD_COLUMNS
from embed_bench.core.records import RecordFile, RecordFileError, RequestRecord, count_measured_records


def row(cell: str, repeat: int = 0, warmup: int = 0, index: int = 0) -> RequestRecord:
    values = dict.fromkeys(REQUEST_RECORD_COLUMNS, 0)
    values.update(cell=cell, repeat=repeat, warmup=warmup, index=index, backend="SelfHostedUser")
    values.update(worker="local", failure="", tokens_server=None, queue_ms=None, inference_ms=None)
    values.update(server_total_ms=None, tokenization_ms=None)
    return RequestRecord(**values)


def test_measured_rows_are_counted_per_cell_and_repeat_over_every_member(tmp_path: Path) -> None:
    path = tmp_path / "requests.csv.gz"
    file = RecordFile(path)
    file.append([row("b=1 t=16 c=2", warmup=1), row("b=1 t=16 c=2"), row("b=1 t=16 c=2", index=1)])
    file.append([row("b=1 t=16 c=2", repeat=1), row("r=4 b=1 t=16")])
    file.append([row("b=2 t=16 c=2")] * 3)
    counts = count_measured_records(path)
    print(dict(counts))
    assert counts == {
        ("b=1 t=16 c=2", 0): 2,
        ("b=1 t=16 c=2", 1): 1,
        ("r=4 b=1 t=16", 0): 1,
        ("b=2 t=16 c=2", 0): 3,
    }
    assert count_measured_records(tmp_path / "absent.csv.gz") == {}


def test_a_cut_last_member_ends_the_count_and_garbage_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "requests.csv.gz"
    RecordFile(path).append([row("b=1 t=16 c=2")] * 4)
    whole = path.read_bytes()
    RecordFile(path).append([row("b=1 t=16 c=2")] * 5)
    second = path.read_bytes()[len(whole) :]
    path.write_bytes(whole + second[:-8])  # a crash mid-flush, before the last member's trailer
    assert count_measured_records(path) == {("b=1 t=16 c=2", 0): 9}  # its complete rows count
    path.write_bytes(whole + second[:10])  # ... or right after its header
    assert count_measured_records(path) == {("b=1 t=16 c=2", 0): 4}
    path.write_bytes(whole + b"not a gzip member")
    with pytest.raises(RecordFileError, match=r"requests\.csv\.gz: unreadable"):
        count_measured_records(path)
    path.write_bytes(gzip.compress(b"name,value\nx,1\n"))
    with pytest.raises(RecordFileError, match=r"requests\.csv\.gz: not a request record file"):
        count_measured_records(path)


def test_a_failed_append_raises_and_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    blocked = tmp_path / "requests.csv.gz"
    blocked.mkdir()  # a directory where the file should be: every append fails
    with pytest.raises(IsADirectoryError):
        RecordFile(blocked).append([row("b=1 t=16 c=2")])
    blocked.rmdir()
    RecordFile(blocked).append([row("b=1 t=16 c=2")])  # the same rows, once the path can be written
    assert count_measured_records(blocked) == {("b=1 t=16 c=2", 0): 1}
