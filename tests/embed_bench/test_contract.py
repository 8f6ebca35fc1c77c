"""The run contract: one Cell, one request-name format, one set of run-directory file names."""

from __future__ import annotations

import pytest

from embed_bench.contract import RUN_FILES, Cell, GridError, is_warmup_name, parse_cell_name


def test_a_cell_is_built_by_keyword_only() -> None:
    with pytest.raises(TypeError):
        Cell(1, 32, 512)  # type: ignore[misc]  # positional order is exactly what two packages disagreed on
    cell = Cell(concurrency=5, batch_size=32, passage_tokens=512)
    assert (cell.concurrency, cell.batch_size, cell.passage_tokens) == (5, 32, 512)


@pytest.mark.parametrize(
    "cell",
    [
        Cell(concurrency=5, batch_size=32, passage_tokens=512),
        Cell(concurrency=1, batch_size=128, passage_tokens=8192),
    ],
)
def test_request_names_round_trip(cell: Cell) -> None:
    assert parse_cell_name(cell.name) == cell
    assert parse_cell_name(cell.warmup_name) is None and is_warmup_name(cell.warmup_name)
    assert not is_warmup_name(cell.name)


def test_request_name_format_and_foreign_names() -> None:
    assert Cell(concurrency=5, batch_size=32, passage_tokens=512).name == "b=32 t=512 c=5"
    for foreign in ("Aggregated", "b=32 t=512", "b=0x1 t=2 c=3", "POST /embed"):
        assert parse_cell_name(foreign) is None


def test_cells_sort_concurrency_outermost_as_the_study_lists_them() -> None:
    cells = [Cell(concurrency=c, batch_size=b, passage_tokens=128) for c in (5, 1) for b in (32, 1)]
    assert [cell.name for cell in sorted(cells)] == [
        "b=1 t=128 c=1",
        "b=32 t=128 c=1",
        "b=1 t=128 c=5",
        "b=32 t=128 c=5",
    ]


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "8"])
def test_a_cell_refuses_what_is_not_a_positive_integer(bad: object) -> None:
    with pytest.raises(GridError, match="batch_size must be a positive integer"):
        Cell(concurrency=1, batch_size=bad, passage_tokens=128)  # type: ignore[arg-type]


def test_run_files_are_spelled_once_and_agree_with_each_other() -> None:
    assert RUN_FILES.stats_csv == f"{RUN_FILES.csv_prefix}_stats.csv"
    assert RUN_FILES.history_csv == f"{RUN_FILES.csv_prefix}_stats_history.csv"
    assert RUN_FILES.failures_csv == f"{RUN_FILES.csv_prefix}_failures.csv"
    assert set(RUN_FILES.marks_a_run) <= {RUN_FILES.run_json, RUN_FILES.stats_csv}
