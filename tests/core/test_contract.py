"""The run contract: one Cell, one request-name format, one set of run-directory file names."""

from __future__ import annotations

import pytest

from embed_bench.core.contract import (
    RUN_FILES,
    Cell,
    GridError,
    RateCell,
    RateCellName,
    Shape,
    is_warmup_name,
    parse_cell_name,
    parse_rate_cell_name,
)


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


def test_rate_cell_names_round_trip_and_stay_out_of_closed_loop_parsing() -> None:
    query = RateCell(request_rate=20, duration_s=30, shapes=(Shape(1, 128),))
    mix = RateCell(
        request_rate=12.5, duration_s=10, shapes=(Shape(1, 32, 0.9), Shape(64, 512, 0.1)), label="search"
    )
    assert (query.name, query.warmup_name) == ("r=20 b=1 t=128", "warmup r=20 b=1 t=128")
    assert mix.name == "r=12.5 mix=search"
    assert mix.mean_tokens_per_request == pytest.approx(0.9 * 32 + 0.1 * 64 * 512)
    assert parse_rate_cell_name(query.name) == RateCellName(request_rate=20, batch_size=1, passage_tokens=128)
    assert parse_rate_cell_name(mix.name) == RateCellName(request_rate=12.5, mix_label="search")
    assert all(parse_rate_cell_name(cell.name).name == cell.name for cell in (query, mix))  # type: ignore[union-attr]
    for name in (query.name, mix.name, query.warmup_name):
        assert parse_cell_name(name) is None
    for foreign in ("b=1 t=128 c=5", "r=x b=1 t=2", "r=0 b=1 t=2", "r=5 mix=", "warmup r=5 mix=a"):
        assert parse_rate_cell_name(foreign) is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"request_rate": 0}, "request_rate must be a positive"),
        ({"duration_s": float("inf")}, "duration_s must be a positive"),
        ({"shapes": ()}, "non-empty tuple of shapes"),
        ({"shapes": (Shape(1, 2), Shape(1, 2, 3))}, "lists a shape twice"),
        ({"label": "two words"}, "one word"),
        ({"arrival": "bursty"}, "arrival must be poisson or constant"),
    ],
)
def test_a_rate_cell_refuses_what_it_cannot_run(fields: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {"request_rate": 5, "duration_s": 10, "shapes": (Shape(1, 128),)}
    with pytest.raises(GridError, match=message):
        RateCell(**{**settings, **fields})  # type: ignore[arg-type]
