"""When the grid's next cell may start while an ended cell's counts are still on their way to the
master (a worker report interval): the rule ``GridWalk`` follows, ``cells.must_await_counts``."""

from __future__ import annotations

from embed_bench.core.cells import Cell, CellRecord, must_await_counts

FIRST = Cell(concurrency=1, batch_size=1, passage_tokens=16)
SECOND = Cell(concurrency=2, batch_size=1, passage_tokens=16)
THIRD = Cell(concurrency=4, batch_size=1, passage_tokens=16)


def test_a_cell_of_another_name_starts_while_the_last_cells_counts_are_pending() -> None:
    first, second = CellRecord(FIRST, start=0.0), CellRecord(SECOND, start=1.0)
    assert not must_await_counts(THIRD.name, [second], first)
    assert not must_await_counts(THIRD.name, [], first)


def test_the_first_cells_counts_are_awaited_they_can_stop_the_walk() -> None:
    first = CellRecord(FIRST, start=0.0)
    assert must_await_counts(SECOND.name, [first], first)
    assert not must_await_counts(SECOND.name, [], first)


def test_a_repeat_of_the_same_cell_awaits_its_counts_they_share_a_request_name() -> None:
    first, second = CellRecord(FIRST, start=0.0), CellRecord(SECOND, start=1.0)
    first_again = CellRecord(FIRST, start=2.0, repeat=1)
    assert must_await_counts(SECOND.name, [second], first)  # the next step is SECOND's repeat
    assert must_await_counts(FIRST.name, [second, first_again], first)
    assert not must_await_counts(SECOND.name, [first_again], first)  # FIRST's repeat: another name
