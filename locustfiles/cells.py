"""Grid cells, the built-in grids, grid TOML files and the ``cells.csv`` record.

Kept free of Locust imports so that ``embed-bench run`` can list and check grids without gevent
monkey-patching its own process; ``locustfiles.grid`` re-exports all of it next to GridShape.

Grid TOML format: an array of ``[[cells]]`` tables, each with ``concurrency``, ``batch_size`` and
``passage_tokens`` given as an integer or a list of integers; a table with lists stands for the
product of its lists (concurrency outermost, then batch size, then passage tokens). Tables run in
file order; an optional top-level ``description`` string is shown in the log. Example::

    description = "small batches, then the high-load pair"

    [[cells]]
    concurrency = [1, 5]
    batch_size = [1, 32]
    passage_tokens = 512

    [[cells]]
    concurrency = 10
    batch_size = 128
    passage_tokens = 128
"""

from __future__ import annotations

import csv
import itertools
import os
import tempfile
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from embed_bench.contract import CELLS_CSV_COLUMNS, RUN_FILES, Cell, GridError, parse_cell_name

__all__ = [
    "GRIDS",
    "Cell",
    "CellRecord",
    "CellsCsv",
    "Grid",
    "GridError",
    "format_failures",
    "load_grid",
    "parse_failures",
    "single_cell_grid",
]

_CELL_KEYS = ("concurrency", "batch_size", "passage_tokens")


@dataclass(frozen=True)
class Grid:
    name: str
    cells: tuple[Cell, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if not self.cells:
            raise GridError(f"grid {self.name!r} has no cells")
        seen: set[str] = set()
        for cell in self.cells:
            if cell.name in seen:
                # Locust keys statistics by request name: a repeated cell would merge two measurements.
                raise GridError(f"grid {self.name!r} lists cell {cell.name!r} more than once")
            seen.add(cell.name)


def product(
    concurrency: Iterable[int], batch_size: Iterable[int], passage_tokens: Iterable[int]
) -> tuple[Cell, ...]:
    """Cells of a product, concurrency outermost (the study's tables are grouped that way)."""
    return tuple(
        Cell(concurrency=c, batch_size=b, passage_tokens=t)
        for c, b, t in itertools.product(concurrency, batch_size, passage_tokens)
    )


GRIDS: dict[str, Grid] = {
    # Small enough for the demo on 2 CPU cores with the bundled MiniLM model (it truncates at 256);
    # the last cell, many small concurrent requests, is where continuous batching pays off.
    "quick": Grid(
        "quick",
        (*product([1, 8], [1, 16], [128]), Cell(concurrency=16, batch_size=1, passage_tokens=128)),
        "demo: 5 cells, seconds each on a CPU",
    ),
    # The study's grid: every latency cell plus the 8192-token passages of its success-by-length table.
    "article": Grid(
        "article", product([1, 5, 10], [1, 32, 128], [128, 512, 1024, 8192]), "the study's 36 cells"
    ),
    # The study's high-load token throughput: concurrency 10, 16,384 tokens per request.
    "throughput": Grid(
        "throughput",
        (
            Cell(concurrency=10, batch_size=32, passage_tokens=512),
            Cell(concurrency=10, batch_size=128, passage_tokens=128),
        ),
        "concurrency 10 x (32 x 512, 128 x 128)",
    ),
}


def _as_ints(value: object, key: str, where: str) -> list[int]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise GridError(f"{where}: {key} must be an integer or a non-empty list of integers")
    return list(values)


def parse_grid_toml(text: str, name: str = "file") -> Grid:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GridError(f"{name}: not valid TOML ({exc})") from exc
    unknown = set(data) - {"cells", "description"}
    if unknown:
        raise GridError(f"{name}: unknown key(s) {', '.join(sorted(unknown))}; expected [[cells]] tables")
    tables = data.get("cells")
    if not isinstance(tables, list) or not tables:
        raise GridError(f"{name}: no [[cells]] tables")
    cells: list[Cell] = []
    for number, table in enumerate(tables, start=1):
        where = f"{name}: [[cells]] #{number}"
        if not isinstance(table, dict):
            raise GridError(f"{where}: expected a table")
        missing = [key for key in _CELL_KEYS if key not in table]
        extra = sorted(set(table) - set(_CELL_KEYS))
        if missing or extra:
            raise GridError(f"{where}: missing {missing or 'nothing'}, unknown {extra or 'nothing'}")
        cells.extend(product(*(_as_ints(table[key], key, where) for key in _CELL_KEYS)))
    description = data.get("description", "")
    if not isinstance(description, str):
        raise GridError(f"{name}: description must be a string")
    return Grid(name, tuple(cells), description)


def load_grid(spec: str) -> Grid:
    """A built-in grid by name, or a grid TOML file by path."""
    spec = spec.strip()
    if spec in GRIDS:
        return GRIDS[spec]
    path = Path(spec).expanduser()
    if not path.is_file():
        raise GridError(f"unknown grid {spec!r}: choose {', '.join(GRIDS)} or give a grid TOML file")
    return parse_grid_toml(path.read_text(encoding="utf-8"), name=str(path))


def single_cell_grid(batch_size: int, passage_tokens: int, concurrency: int) -> Grid:
    cell = Cell(concurrency=concurrency, batch_size=batch_size, passage_tokens=passage_tokens)
    return Grid("single", (cell,), "one cell from --batch-size, --passage-tokens and --users")


FAILURES_SHOWN = 3  # failure classes named per cell in cells.csv and on the console


@dataclass
class CellRecord:
    """One walked cell (of one repeat) as ``cells.csv`` records it.

    ``completed`` stays None until the cell's counts are final (a master waits for its workers' last
    statistics); ``failures`` maps failure class -> occurrences among the completed requests."""

    cell: Cell
    start: float
    end: float | None = None
    repeat: int = 0
    planned: int = 0
    completed: int | None = None
    succeeded: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def unfinished(self) -> int:
        """Planned requests that got no outcome: never sent, or cut off by the cell's end."""
        return max(0, self.planned - (self.completed or 0))

    def outcome(self) -> str:
        """``0/5 ok, HTTP 404 (5)``: successes of the planned requests, what did not finish, why."""
        parts = [f"{self.succeeded}/{self.planned} ok"]
        if self.unfinished:
            parts.append(f"{self.unfinished} unsent or unfinished")
        if self.failures:
            parts.append(format_failures(self.failures))
        return ", ".join(parts)

    def row(self) -> list[object]:
        end = "" if self.end is None else f"{self.end:.6f}"
        counts: list[object] = ["", "", ""]
        if self.completed is not None:
            counts = [self.completed, self.succeeded, format_failures(self.failures)]
        return [
            self.cell.name,
            self.repeat,
            f"{self.start:.6f}",
            end,
            self.cell.concurrency,
            self.planned,
            *counts,
        ]

    @classmethod
    def from_row(cls, row: dict[str, str]) -> CellRecord | None:
        """A ``cells.csv`` row read back (old files have no counts); None for a foreign row."""
        cell = parse_cell_name(row.get("cell", ""))
        if cell is None:
            return None
        completed = row.get("completed") or ""
        return cls(
            cell=cell,
            start=float(row["start"]),
            end=float(row["end"]) if row.get("end") else None,
            repeat=int(row.get("repeat") or 0),
            planned=int(row.get("planned") or 0),
            completed=int(completed) if completed else None,
            succeeded=int(row.get("succeeded") or 0),
            failures=parse_failures(row.get("failures") or ""),
        )


def parse_failures(text: str) -> dict[str, int]:
    """The inverse of ``format_failures`` (a "N more class(es)" entry is dropped)."""
    failures: dict[str, int] = {}
    for part in filter(None, (item.strip() for item in text.split("; "))):
        error, _, count = part.rpartition(" (")
        if error and count.endswith(")") and count[:-1].isdigit():
            failures[error] = int(count[:-1])
    return failures


def format_failures(failures: dict[str, int], limit: int = FAILURES_SHOWN) -> str:
    """The most frequent failure classes, e.g. ``HTTP 404 (5); timeout (2)``."""
    ranked = sorted(failures.items(), key=lambda item: (-item[1], item[0]))
    shown = [f"{error} ({count})" for error, count in ranked[:limit]]
    if len(ranked) > limit:
        shown.append(f"{len(ranked) - limit} more class(es)")
    return "; ".join(shown)


class CellsCsv:
    """``cells.csv`` (``CELLS_CSV_COLUMNS``): rewritten whole at every change, atomically, so an
    interrupted run leaves the started cell with an empty end rather than a torn file."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / RUN_FILES.cells_csv

    def write(self, records: Sequence[CellRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".cells-", suffix=".csv")
        try:
            with os.fdopen(handle, "w", newline="", encoding="utf-8") as stream:
                writer = csv.writer(stream)
                writer.writerow(CELLS_CSV_COLUMNS)
                writer.writerows(record.row() for record in records)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
