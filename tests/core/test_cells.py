"""Built-in grids, the grid TOML format and the cells.csv record."""

from __future__ import annotations

import csv
import itertools
import re

import pytest

from embed_bench.core.capacity import StepResult, Target
from embed_bench.core.cells import (
    CELLS_CSV_COLUMNS,
    GRIDS,
    Cell,
    CellRecord,
    CellsCsv,
    GridError,
    RateCell,
    format_failures,
    grid_of,
    load_grid,
    parse_failures,
    parse_grid_toml,
)
from embed_bench.core.contract import Shape
from embed_bench.core.options import BenchOptions


def test_cell_names_are_the_request_names():
    cell = Cell(batch_size=32, passage_tokens=512, concurrency=5)
    assert cell.name == "b=32 t=512 c=5"
    assert cell.warmup_name == "warmup b=32 t=512 c=5"


def test_article_grid_is_the_studys_36_cells_concurrency_major():
    grid = GRIDS["article"]
    expected = {(c, b, t) for c, b, t in itertools.product([1, 5, 10], [1, 32, 128], [128, 512, 1024, 8192])}
    assert {(cell.concurrency, cell.batch_size, cell.passage_tokens) for cell in grid.cells} == expected
    assert len(grid.cells) == 36
    assert [cell.concurrency for cell in grid.cells] == sorted(cell.concurrency for cell in grid.cells)


def test_throughput_grid_is_the_high_load_pair():
    cells = {(cell.concurrency, cell.batch_size, cell.passage_tokens) for cell in GRIDS["throughput"].cells}
    assert cells == {(10, 32, 512), (10, 128, 128)}
    assert {cell.batch_size * cell.passage_tokens for cell in GRIDS["throughput"].cells} == {16384}


def test_quick_grid_is_small_and_fits_the_bundled_model():
    cells = GRIDS["quick"].cells
    assert 2 <= len(cells) <= 8
    assert all(cell.passage_tokens <= 254 for cell in cells)  # MiniLM truncates at 256 with specials
    assert sum(cell.concurrency * cell.batch_size * cell.passage_tokens for cell in cells) * 6 < 500_000
    assert Cell(concurrency=16, batch_size=1, passage_tokens=128) in cells  # where batching pays off


def test_toml_products_and_single_cells_in_file_order(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(
        'description = "two blocks"\n'
        "[[cells]]\nconcurrency = [1, 5]\nbatch_size = [1, 32]\npassage_tokens = 512\n"
        "[[cells]]\nconcurrency = 10\nbatch_size = 128\npassage_tokens = [128]\n"
    )
    grid = load_grid(str(path))
    assert [cell.name for cell in grid.cells] == [
        "b=1 t=512 c=1",
        "b=32 t=512 c=1",
        "b=1 t=512 c=5",
        "b=32 t=512 c=5",
        "b=128 t=128 c=10",
    ]
    assert grid.description == "two blocks"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no \\[\\[cells\\]\\]"),
        ("cells = 3", "no \\[\\[cells\\]\\]"),
        ("[[cells]]\nconcurrency = 1\nbatch_size = 1\n", "missing \\['passage_tokens'\\]"),
        (
            "[[cells]]\nconcurrency = 1\nbatch_size = 1\npassage_tokens = 8\nusers = 2\n",
            "unknown \\['users'\\]",
        ),
        ("[[cells]]\nconcurrency = 0\nbatch_size = 1\npassage_tokens = 8\n", "positive integer"),
        ("[[cells]]\nconcurrency = '1'\nbatch_size = 1\npassage_tokens = 8\n", "integer or a non-empty list"),
        ("[[cells]]\nconcurrency = []\nbatch_size = 1\npassage_tokens = 8\n", "integer or a non-empty list"),
        ("[[cells]]\nconcurrency = [1, 1]\nbatch_size = 1\npassage_tokens = 8\n", "more than once"),
        ("rounds = 2\n[[cells]]\nconcurrency = 1\nbatch_size = 1\npassage_tokens = 8\n", "unknown key"),
        ("[[cells]\n", "not valid TOML"),
    ],
)
def test_bad_grid_files_say_what_is_wrong(text, message):
    with pytest.raises(GridError, match=message):
        parse_grid_toml(text, name="g.toml")


def test_unknown_grid_name():
    with pytest.raises(GridError, match="quick, article, throughput"):
        load_grid("nonesuch")


def test_cells_csv_leaves_the_end_and_counts_of_an_unfinished_cell_empty(tmp_path):
    writer = CellsCsv(tmp_path / "run")
    first, second = (
        Cell(concurrency=1, batch_size=1, passage_tokens=16),
        Cell(concurrency=3, batch_size=2, passage_tokens=16),
    )
    done = CellRecord(first, 100.25, 101.5, planned=5, completed=5, succeeded=0, failures={"HTTP 404": 5})
    writer.write([done, CellRecord(second, 102.0, repeat=1, planned=15)])
    with writer.path.open(newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == list(CELLS_CSV_COLUMNS)
    assert rows[1] == [
        "b=1 t=16 c=1",
        "0",
        "100.250000",
        "101.500000",
        "1",
        "5",
        "5",
        "0",
        "HTTP 404 (5)",
        "",
        "",
        "",  # workers_lost: none
    ]
    assert rows[2] == ["b=2 t=16 c=3", "1", "102.000000", "", "3", "15", "", "", "", "", "", ""]
    assert [path.name for path in writer.path.parent.iterdir()] == ["cells.csv"]  # no temporary left


def test_a_cells_csv_row_reads_back_as_written(tmp_path):
    cell = Cell(concurrency=10, batch_size=128, passage_tokens=8192)
    failures = {"timeout": 3, "HTTP 429 queue_full": 7}
    record = CellRecord(cell, 1.5, 9.25, repeat=2, planned=50, completed=40, succeeded=30, failures=failures)
    CellsCsv(tmp_path).write([record])
    with (tmp_path / "cells.csv").open(newline="") as stream:
        (row,) = csv.DictReader(stream)
    assert CellRecord.from_row(row) == record
    assert CellRecord.from_row({"cell": "Aggregated", "start": "1"}) is None


def test_an_old_cells_csv_row_without_counts_still_reads():
    record = CellRecord.from_row({"cell": "b=1 t=16 c=2", "start": "1.0", "end": "", "users": "2"})
    assert record == CellRecord(Cell(concurrency=2, batch_size=1, passage_tokens=16), 1.0)


@pytest.mark.parametrize(
    ("completed", "succeeded", "failures", "outcome"),
    [
        (5, 5, {}, "5/5 ok"),
        (5, 0, {"HTTP 404": 5}, "0/5 ok, HTTP 404 (5)"),
        (3, 2, {"timeout": 1}, "2/5 ok, 2 unsent or unfinished, timeout (1)"),
        (0, 0, {}, "0/5 ok, 5 unsent or unfinished"),
    ],
)
def test_a_cells_outcome_names_what_did_not_succeed(completed, succeeded, failures, outcome):
    cell = Cell(concurrency=1, batch_size=1, passage_tokens=128)
    record = CellRecord(
        cell, 0.0, 1.0, planned=5, completed=completed, succeeded=succeeded, failures=failures
    )
    assert record.outcome() == outcome


def test_failures_are_listed_most_frequent_first_and_capped():
    failures = {"a": 1, "b": 5, "c": 2, "d": 2}
    assert format_failures(failures) == "b (5); c (2); d (2); 1 more class(es)"
    assert parse_failures(format_failures(failures)) == {"b": 5, "c": 2, "d": 2}


RATE_GRID = """
[[cells]]
request_rate = [10, 20.5]
duration_s = 30
batch_size = 1
passage_tokens = [32, 128]

[[cells]]
request_rate = 40
duration_s = 10
arrival = "constant"
name = "search"
mix = [{batch_size = 1, passage_tokens = 32, weight = 9}, {batch_size = 64, passage_tokens = 512, weight = 1}]

[capacity]
batch_size = 1
passage_tokens = 128
slo_p95_ms = 200
start_rate = 5
"""


def test_a_grid_file_takes_rate_cells_mixes_and_a_capacity_search():
    grid = parse_grid_toml(RATE_GRID, "rates.toml")
    assert [cell.name for cell in grid.cells] == [
        "r=10 b=1 t=32",
        "r=10 b=1 t=128",
        "r=20.5 b=1 t=32",
        "r=20.5 b=1 t=128",
        "r=40 mix=search",
    ]
    mix = grid.cells[-1]
    assert isinstance(mix, RateCell) and mix.arrival == "constant" and mix.duration_s == 10
    assert [(s.batch_size, s.passage_tokens, s.weight) for s in mix.shapes] == [(1, 32, 0.9), (64, 512, 0.1)]
    spec = grid.capacity
    assert spec is not None and spec.target == Target(200.0, 99.9) and spec.start_rate == 5
    # Steps: rates to 3 significant digits, long enough for 200 requests within 10-60 s.
    assert (spec.step(123.456).name, spec.step(123.456).duration_s) == ("r=123 b=1 t=128", 10.0)
    assert spec.step(5).duration_s == 40.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[cells]]\nrequest_rate = 5\nbatch_size = 1\npassage_tokens = 8", "missing ['duration_s']"),
        (
            "[[cells]]\nrequest_rate = 0\nduration_s = 5\nbatch_size = 1\npassage_tokens = 8",
            "positive number",
        ),
        (
            "[[cells]]\nrequest_rate = 5\nduration_s = 5\nbatch_size = 1",
            "needs batch_size and passage_tokens",
        ),
        (
            "[[cells]]\nrequest_rate = 5\nduration_s = 5\nmix = [{batch_size = 1, passage_tokens = 8}, "
            "{batch_size = 2, passage_tokens = 8}]",
            "missing weight",
        ),
        (
            "[[cells]]\nconcurrency = 1\nduration_s = 5\nbatch_size = 1\npassage_tokens = 8",
            "needs request_rate",
        ),
        ("[capacity]\nbatch_size = 1\npassage_tokens = 8", "missing slo_p95_ms"),
        (
            "[capacity]\nbatch_size = 1\npassage_tokens = 8\nslo_p95_ms = 100\nslo_success_pct = 120",
            "up to 100",
        ),
        ("[capacity]\nbatch_size = [1, 2]\npassage_tokens = 8\nslo_p95_ms = 100", "one shape"),
    ],
)
def test_bad_rate_cells_and_capacity_tables_are_refused(text, message):
    with pytest.raises(GridError, match=re.escape(message)):
        parse_grid_toml(text, "bad.toml")


def test_options_choose_a_rate_cell_or_a_capacity_search():
    single = grid_of(BenchOptions(request_rate=12.5, cell_duration=8, batch_size=2, passage_tokens=64), 1)
    (cell,) = single.cells
    assert cell.name == "r=12.5 b=2 t=64" and cell.duration_s == 8
    search = grid_of(BenchOptions(grid="capacity", slo_p95_ms=150, request_rate=3, cell_duration=20), 1)
    assert search.cells == () and search.capacity is not None
    assert search.capacity.start_rate == 3 and search.capacity.step(3).duration_s == 20
    assert grid_of(BenchOptions(), 4).cells == (Cell(concurrency=4, batch_size=1, passage_tokens=128),)


def test_a_rate_cells_row_reads_back_with_its_rate_users_and_drops(tmp_path):
    cell = RateCell(request_rate=20, duration_s=5, shapes=(Shape(1, 32),))
    record = CellRecord(cell, 1.0, 6.0, planned=99, completed=99, succeeded=97, users=16, dropped=2)
    CellsCsv(tmp_path).write([record])
    with (tmp_path / "cells.csv").open(newline="") as stream:
        (row,) = csv.DictReader(stream)
    assert (row["users"], row["request_rate"], row["dropped"]) == ("16", "20", "2")
    back = CellRecord.from_row(row)
    assert back is not None and back.cell.name == cell.name and (back.users, back.dropped) == (16, 2)


def test_a_capacity_search_never_steps_below_a_rate_that_expects_ten_requests_per_step():
    """With 6 s steps the floor is 10 / 6 per second: a step at 0.25/s (one request, or none) decides nothing."""
    options = BenchOptions.from_mapping(
        {"grid": "capacity", "slo_p95_ms": "1", "request_rate": "4", "cell_duration": "6"}
    )
    spec = grid_of(options, 1).capacity
    search = spec.search()
    assert search.min_rate_per_s == pytest.approx(10 / 6)
    rates = []
    while (rate := search.next_rate()) is not None:  # every step misses a 1 ms target
        rates.append(rate)
        search.record(StepResult(rate, 1000.0, 100.0, 1.0))
    assert rates == [4.0, 2.0, pytest.approx(10 / 6)] and search.result.capacity_requests_per_s == 0
    assert all(rate * spec.step(rate).duration_s >= 10 - 1e-9 for rate in rates)


def test_confirmation_rounds_come_from_the_grid_file_or_the_option() -> None:
    from embed_bench.core.capacity import CONFIRM_REPEATS
    from embed_bench.core.cells import grid_of, parse_grid_toml
    from embed_bench.core.options import OptionError

    base = "[capacity]\nslo_p95_ms = 200\nbatch_size = 1\npassage_tokens = 128\n"
    assert parse_grid_toml(base).capacity.search().confirm_repeats == CONFIRM_REPEATS == 2
    assert parse_grid_toml(base + "confirm_repeats = 0\n").capacity.search().confirm_repeats == 0
    with pytest.raises(GridError, match="confirm_repeats takes 0 to 10 rounds, found 11"):
        parse_grid_toml(base + "confirm_repeats = 11\n")
    options = BenchOptions(grid="capacity", slo_p95_ms=200, confirm_repeats=0)
    assert grid_of(options, 1).capacity.search().confirm_repeats == 0
    with pytest.raises(OptionError, match="--confirm-repeats takes 0 to 10 rounds"):
        BenchOptions(confirm_repeats=-1)


def test_max_rate_bounds_the_search_and_a_pass_there_answers_at_least_it() -> None:
    """``--max-rate``: the search climbs to it, not past it; meeting the target there ends the search
    with ``at_rate_limit`` (a capacity of at least that rate); below the start rate it says which
    options to change."""
    from embed_bench.core.options import OptionError

    options = BenchOptions(grid="capacity", slo_p95_ms=200, request_rate=2, max_rate=8, confirm_repeats=0)
    search = grid_of(options, 1).capacity.search()
    rates = []
    while (rate := search.next_rate()) is not None:  # every step meets the target
        rates.append(rate)
        search.record(StepResult(rate, 10.0, 100.0, rate * 16))
    assert rates == [2.0, 4.0, 8.0]
    result = search.result
    assert result.at_rate_limit and result.converged and result.capacity_requests_per_s == 8
    assert "at least 8" in result.describe()
    unbounded = grid_of(BenchOptions(grid="capacity", slo_p95_ms=200), 1).capacity
    assert unbounded.max_rate == float("inf")
    with pytest.raises(
        GridError, match=re.escape("--max-rate 4 is below the search's start rate (--request-rate 8)")
    ):
        grid_of(BenchOptions(grid="capacity", slo_p95_ms=200, request_rate=8, max_rate=4), 1)
    with pytest.raises(OptionError, match="--max-rate"):
        BenchOptions(max_rate=0)
