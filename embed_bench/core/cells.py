"""Grid cells, the built-in grids, grid TOML files and the ``cells.csv`` record.

Kept free of Locust imports so that ``embed-bench run`` can list and check grids without gevent
monkey-patching its own process; ``embed_bench.load.shape`` re-exports all of it next to GridShape.

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

Rate cells (open loop, ``docs/open-loop.md``) take ``request_rate`` (a number or a list) and
``duration_s`` instead of ``concurrency``, one shape (``batch_size``/``passage_tokens``, integers or
lists) or a weighted ``mix = [{batch_size, passage_tokens, weight}, ...]`` with an optional ``name``
(the mix's label in request names), and an optional ``arrival`` (poisson or constant). A
``[capacity]`` table (a shape or a mix, ``slo_p95_ms``, optional ``slo_success_pct``, ``start_rate``,
``step_duration_s``, ``max_rate``, ``arrival``, ``name``) runs a capacity search after the cells::

    [[cells]]
    request_rate = [10, 20]
    duration_s = 30
    mix = [{batch_size = 1, passage_tokens = 32, weight = 0.9}, {batch_size = 64, passage_tokens = 512, weight = 0.1}]
    name = "search"

    [capacity]
    batch_size = 1
    passage_tokens = 128
    slo_p95_ms = 200
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import os
import tempfile
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embed_bench.core.arrivals import parse_mix
from embed_bench.core.capacity import (
    CONFIRM_REPEATS,
    DEFAULT_SUCCESS_PCT,
    CapacitySearch,
    Target,
    step_duration_s,
)
from embed_bench.core.contract import (
    CELLS_CSV_COLUMNS,
    DEFAULT_MIX_LABEL,
    RUN_FILES,
    Cell,
    GridError,
    RateCell,
    RateCellName,
    Shape,
    parse_cell_name,
    parse_rate_cell_name,
)
from embed_bench.core.lengths import LengthDistribution, parse_lengths
from embed_bench.core.options import CAPACITY_GRID, BenchOptions
from embed_bench.core.trace import load_trace, replay_offsets

__all__ = [
    "GRIDS",
    "CapacitySpec",
    "Cell",
    "CellRecord",
    "CellsCsv",
    "Grid",
    "GridError",
    "RateCell",
    "format_failures",
    "grid_of",
    "load_grid",
    "parse_failures",
    "single_cell_grid",
]

_CELL_KEYS = ("concurrency", "batch_size", "passage_tokens")


AnyCell = Cell | RateCell
RATE_DIGITS = 3  # capacity steps run at rates rounded to 3 significant digits: unique, readable names


def round_rate(rate_per_s: float) -> float:
    return float(f"{rate_per_s:.{RATE_DIGITS}g}")


MIN_STEP_REQUESTS = 10  # the fewest requests a capacity step at the lowest rate is expected to send


@dataclass(frozen=True)
class CapacitySpec:
    """A capacity search (``[capacity]`` or ``--grid capacity``): the shapes, the target, where to start.

    Each step is a rate cell of ``step_duration_s`` seconds (by default long enough for 200 requests,
    within ``[min_step_s, max_step_s]``)."""

    shapes: tuple[Shape, ...]
    target: Target
    start_rate: float = 1.0
    label: str = DEFAULT_MIX_LABEL
    arrival: str = "poisson"
    step_duration_s: float | None = None
    min_step_s: float = 10.0
    max_step_s: float = 60.0
    max_rate: float = float("inf")
    confirm_repeats: int = CONFIRM_REPEATS  # rounds of confirmation steps (0: a point estimate only)

    def search(self) -> CapacitySearch:
        """The search never asks for a rate whose longest step expects fewer than
        ``MIN_STEP_REQUESTS`` requests: a p95 of one or two requests (or of none) decides nothing."""
        floor = min(MIN_STEP_REQUESTS / self.max_step_s, self.start_rate)
        return CapacitySearch(
            self.target,
            self.start_rate,
            max_rate_per_s=self.max_rate,
            min_rate_per_s=floor,
            confirm_repeats=self.confirm_repeats,
        )

    def step(self, rate_per_s: float) -> RateCell:
        duration = self.step_duration_s or step_duration_s(
            rate_per_s, min(self.min_step_s, self.max_step_s), self.max_step_s
        )
        return RateCell(
            request_rate=round_rate(rate_per_s),
            duration_s=duration,
            shapes=self.shapes,
            label=self.label,
            arrival=self.arrival,
        )

    def describe(self) -> dict[str, Any]:
        """The search's settings, as run.json records them."""
        return {
            "shapes": [
                {"batch_size": s.batch_size, "passage_tokens": s.passage_tokens, "weight": s.weight}
                for s in self.shapes
            ],
            "label": self.label,
            "arrival": self.arrival,
            "start_rate_per_s": self.start_rate,
            "confirm_repeats": self.confirm_repeats,
        }


@dataclass(frozen=True)
class Grid:
    name: str
    cells: tuple[AnyCell, ...]
    description: str = ""
    capacity: CapacitySpec | None = None

    def __post_init__(self) -> None:
        if not self.cells and self.capacity is None:
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


_SHAPE_KEYS = ("batch_size", "passage_tokens")
_RATE_KEYS = {"request_rate", "duration_s", "mix", "arrival", "name", *_SHAPE_KEYS}
_CAPACITY_KEYS = {
    "slo_p95_ms",
    "slo_success_pct",
    "start_rate",
    "step_duration_s",
    "max_rate",
    "confirm_repeats",
    "mix",
    "arrival",
    "name",
    *_SHAPE_KEYS,
}


def _as_numbers(value: object, key: str, where: str) -> list[float]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and v > 0 and v != float("inf") for v in values
    ):
        raise GridError(f"{where}: {key} must be a positive number or a non-empty list of them")
    return [float(v) for v in values]


def _lengths_of(value: object, where: str) -> LengthDistribution | None:
    """A variable ``passage_tokens`` (a distribution table), else None (an integer or a list)."""
    return parse_lengths(value, f"{where}: passage_tokens") if isinstance(value, Mapping) else None


def _variable_shape(batch_size: int, lengths: LengthDistribution | None, tokens: int, weight: float) -> Shape:
    if lengths is None or lengths.is_fixed:
        return Shape(batch_size, tokens if lengths is None else lengths.longest, weight)
    return Shape(batch_size, lengths.longest, weight, lengths)


def _shape_sets(table: Mapping[str, Any], where: str) -> list[tuple[Shape, ...]]:
    """The shapes of a rate table: one weighted mix, or the product of batch_size x passage_tokens.
    ``passage_tokens`` may be a length distribution (``embed_bench.core.lengths``) in either form."""
    given = [key for key in _SHAPE_KEYS if key in table]
    if "mix" in table:
        if given:
            raise GridError(f"{where}: give either mix or {' and '.join(_SHAPE_KEYS)}, not both")
        entries = table["mix"]
        lengths: list[LengthDistribution | None] = []
        if isinstance(entries, list):  # parse_mix checks the rest; a distribution enters as its longest
            lengths = [
                _lengths_of(entry.get("passage_tokens"), f"{where}: mix entry {number}")
                if isinstance(entry, Mapping)
                else None
                for number, entry in enumerate(entries, start=1)
            ]
            entries = [
                dict(entry, passage_tokens=dist.longest) if dist is not None else entry
                for entry, dist in zip(entries, lengths, strict=True)
            ]
        mix = parse_mix(entries, where=f"{where}: mix")
        return [
            tuple(
                _variable_shape(shape.batch_size, dist, shape.passage_tokens, weight)
                for shape, weight, dist in zip(
                    mix.shapes, mix.probabilities, lengths or [None] * len(mix.shapes), strict=True
                )
            )
        ]
    if len(given) < len(_SHAPE_KEYS):
        raise GridError(f"{where}: needs batch_size and passage_tokens, or a mix")
    batches = _as_ints(table["batch_size"], "batch_size", where)
    dist = _lengths_of(table["passage_tokens"], where)
    if dist is not None:
        return [(_variable_shape(b, dist, dist.longest, 1.0),) for b in batches]
    tokens = _as_ints(table["passage_tokens"], "passage_tokens", where)
    return [(Shape(b, t),) for b, t in itertools.product(batches, tokens)]


def _label_and_arrival(table: Mapping[str, Any], where: str) -> tuple[str, str]:
    label, arrival = table.get("name", DEFAULT_MIX_LABEL), table.get("arrival", "poisson")
    if not isinstance(label, str) or not isinstance(arrival, str):
        raise GridError(f"{where}: name and arrival must be strings")
    return label, arrival


def _rate_cells(table: Mapping[str, Any], where: str) -> list[RateCell]:
    extra = sorted(set(table) - _RATE_KEYS)
    missing = [key for key in ("request_rate", "duration_s") if key not in table]
    if missing or extra:
        raise GridError(f"{where}: missing {missing or 'nothing'}, unknown {extra or 'nothing'}")
    if isinstance(table["duration_s"], list):
        raise GridError(f"{where}: duration_s is one number")
    (duration,) = _as_numbers(table["duration_s"], "duration_s", where)
    label, arrival = _label_and_arrival(table, where)
    return [
        RateCell(request_rate=rate, duration_s=duration, shapes=shapes, label=label, arrival=arrival)
        for rate in _as_numbers(table["request_rate"], "request_rate", where)
        for shapes in _shape_sets(table, where)
    ]


def _optional_number(table: Mapping[str, Any], key: str, where: str) -> float | None:
    return _as_numbers(table[key], key, where)[0] if key in table else None


def _confirm_repeats(table: Mapping[str, Any], where: str) -> int:
    value = table.get("confirm_repeats", CONFIRM_REPEATS)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
        raise GridError(f"{where}: confirm_repeats takes 0 to 10 rounds, found {value!r}")
    return value


def parse_capacity(table: object, where: str) -> CapacitySpec:
    """A grid file's ``[capacity]`` table."""
    if not isinstance(table, dict):
        raise GridError(f"{where}: expected a table")
    extra = sorted(set(table) - _CAPACITY_KEYS)
    if extra or "slo_p95_ms" not in table:
        raise GridError(
            f"{where}: missing {'slo_p95_ms' if 'slo_p95_ms' not in table else 'nothing'}, "
            f"unknown {extra or 'nothing'}"
        )
    shape_sets = _shape_sets(table, where)
    if len(shape_sets) != 1:
        raise GridError(f"{where}: one shape (or one mix) per capacity search")
    (shapes,) = shape_sets
    label, arrival = _label_and_arrival(table, where)
    success = _optional_number(table, "slo_success_pct", where)
    spec = CapacitySpec(
        shapes=shapes,
        target=Target(_optional_number(table, "slo_p95_ms", where) or 0.0, success or DEFAULT_SUCCESS_PCT),
        start_rate=_optional_number(table, "start_rate", where) or 1.0,
        label=label,
        arrival=arrival,
        step_duration_s=_optional_number(table, "step_duration_s", where),
        max_rate=_optional_number(table, "max_rate", where) or float("inf"),
        confirm_repeats=_confirm_repeats(table, where),
    )
    spec.search()  # the start rate against the bounds
    spec.step(spec.start_rate)  # the label and arrival
    return spec


def parse_grid_toml(text: str, name: str = "file") -> Grid:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GridError(f"{name}: not valid TOML ({exc})") from exc
    unknown = set(data) - {"cells", "description", "capacity"}
    if unknown:
        raise GridError(
            f"{name}: unknown key(s) {', '.join(sorted(unknown))}; expected [[cells]] tables and [capacity]"
        )
    tables = data.get("cells", [])
    capacity = parse_capacity(data["capacity"], f"{name}: [capacity]") if "capacity" in data else None
    if not isinstance(tables, list) or (not tables and capacity is None):
        raise GridError(f"{name}: no [[cells]] tables and no [capacity] table")
    cells: list[AnyCell] = []
    for number, table in enumerate(tables, start=1):
        where = f"{name}: [[cells]] #{number}"
        if not isinstance(table, dict):
            raise GridError(f"{where}: expected a table")
        if "request_rate" in table:
            cells.extend(_rate_cells(table, where))
            continue
        missing = [key for key in _CELL_KEYS if key not in table]
        extra = sorted(set(table) - set(_CELL_KEYS))
        if missing or extra:
            hint = " (a rate cell needs request_rate and duration_s)" if set(extra) & _RATE_KEYS else ""
            raise GridError(f"{where}: missing {missing or 'nothing'}, unknown {extra or 'nothing'}{hint}")
        cells.extend(product(*(_as_ints(table[key], key, where) for key in _CELL_KEYS)))
    description = data.get("description", "")
    if not isinstance(description, str):
        raise GridError(f"{name}: description must be a string")
    return Grid(name, tuple(cells), description, capacity)


def load_grid(spec: str) -> Grid:
    """A built-in grid by name, or a grid TOML file by path."""
    spec = spec.strip()
    if spec in GRIDS:
        return GRIDS[spec]
    path = Path(spec).expanduser()
    if not path.is_file():
        raise GridError(
            f"unknown grid {spec!r}: choose {', '.join([*GRIDS, CAPACITY_GRID])} or give a grid TOML file"
        )
    return parse_grid_toml(path.read_text(encoding="utf-8"), name=str(path))


def single_cell_grid(batch_size: int, passage_tokens: int, concurrency: int) -> Grid:
    cell = Cell(concurrency=concurrency, batch_size=batch_size, passage_tokens=passage_tokens)
    return Grid("single", (cell,), "one cell from --batch-size, --passage-tokens and --users")


def grid_of(options: BenchOptions, concurrency: int) -> Grid:
    """The grid the options ask for: ``--grid`` (a name, a file or ``capacity``), else one rate cell
    (``--request-rate``), else one closed-loop cell at ``concurrency`` (Locust's ``--users``)."""
    shape = (Shape(options.batch_size, options.passage_tokens),)
    if options.trace:
        return Grid("trace", (trace_cell(options),), f"replay of {options.trace}")
    if options.grid == CAPACITY_GRID:
        if options.slo_p95_ms is None:
            raise GridError("--grid capacity needs --slo-p95-ms")
        start_rate = options.request_rate or 1.0
        if options.max_rate is not None and options.max_rate < start_rate:
            raise GridError(
                f"--max-rate {options.max_rate:g} is below the search's start rate "
                f"(--request-rate {start_rate:g}): raise --max-rate or lower --request-rate"
            )
        spec = CapacitySpec(
            shapes=shape,
            target=Target(options.slo_p95_ms, options.slo_success_pct),
            start_rate=start_rate,
            arrival=options.arrival,
            max_step_s=options.cell_duration,
            max_rate=options.max_rate or float("inf"),
            confirm_repeats=options.confirm_repeats,
        )
        return Grid(CAPACITY_GRID, (), "capacity search of --batch-size x --passage-tokens", spec)
    if options.grid:
        return load_grid(options.grid)
    if options.request_rate is not None:
        cell = RateCell(
            request_rate=options.request_rate,
            duration_s=options.cell_duration,
            shapes=shape,
            arrival=options.arrival,
        )
        return Grid("single", (cell,), "one rate cell from --request-rate and --cell-duration")
    return single_cell_grid(options.batch_size, options.passage_tokens, concurrency)


TRACE_LABEL = "trace"
TRACE_TAIL_S = 1.0  # the replay cell lasts this long past its last request's offset


def trace_cell(options: BenchOptions) -> RateCell:
    """The rate cell of ``--trace``: as long as the replay (plus ``TRACE_TAIL_S``), at the replay's
    mean rate, named ``r=<rate> mix=trace``; each process reads the file again for its share."""
    trace = load_trace(options.trace)
    offsets = replay_offsets(trace, options.trace_speed, options.trace_max_gap)
    duration = offsets[-1] + TRACE_TAIL_S
    longest = max(max(request.lengths, default=1) for request in trace.requests)
    batch = max(request.batch_size for request in trace.requests)
    return RateCell(
        request_rate=round_rate(len(offsets) / duration),
        duration_s=duration,
        shapes=(Shape(batch, longest),),
        label=TRACE_LABEL,
        arrival="constant",  # not drawn: the trace's own times
        trace=options.trace,
        trace_rows=len(trace),
    )


def workload_record(grid: Grid, options: BenchOptions) -> dict[str, Any]:
    """What run.json records of the traffic beyond the cell names: a replayed trace (its file, rows,
    span, SHA-256 and the replay's speed, gap cut and length) and each variable length distribution."""
    record: dict[str, Any] = {}
    lengths = {
        cell.name: [
            shape.lengths.describe() if shape.lengths else shape.passage_tokens for shape in cell.shapes
        ]
        for cell in grid.cells
        if isinstance(cell, RateCell) and any(shape.variable for shape in cell.shapes)
    }
    if lengths:
        record["passage_lengths"] = lengths
    for cell in grid.cells:
        if isinstance(cell, RateCell) and cell.trace:
            trace = load_trace(cell.trace)
            record["trace"] = trace.describe() | {
                "sha256": hashlib.sha256(Path(cell.trace).expanduser().read_bytes()).hexdigest(),
                "speed": options.trace_speed,
                "max_gap_s": options.trace_max_gap,
                "replay_s": round(cell.duration_s - TRACE_TAIL_S, 3),
                "slo_p95_ms": options.slo_p95_ms,  # the target SLO attainment is measured against
            }
    return record


FAILURES_SHOWN = 3  # failure classes named per cell in cells.csv and on the console


@dataclass
class CellRecord:
    """One walked cell (of one repeat) as ``cells.csv`` records it.

    ``completed`` stays None until the cell's counts are final (a master waits for its workers' last
    statistics); ``failures`` maps failure class -> occurrences among the completed requests."""

    cell: Cell | RateCell | RateCellName  # a rate cell read back from cells.csv knows only its name
    start: float
    end: float | None = None
    repeat: int = 0
    planned: int = 0
    completed: int | None = None
    succeeded: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    users: int | None = None  # None: the cell's concurrency (rate cells: --max-in-flight)
    dropped: int | None = None  # rate cells: arrivals never sent (empty until counted)
    workers_lost: int = 0  # Locust workers that vanished while the cell ran (their users' requests lost)

    @property
    def unfinished(self) -> int:
        """Planned requests that got no outcome: never sent, or cut off by the cell's end."""
        return max(0, self.planned - (self.completed or 0))

    @property
    def drew_nothing(self) -> bool:
        """A rate cell whose arrivals drew none (Poisson at a low rate over a short cell): nothing was
        due, so nothing is missing; a capacity search runs such a step again, longer."""
        return (
            not isinstance(self.cell, Cell)
            and self.completed == 0
            and self.planned == 0
            and not self.workers_lost
        )

    def outcome(self) -> str:
        """``0/5 ok, HTTP 404 (5)``: successes of the planned requests, what did not finish, why."""
        if self.drew_nothing:
            return "no arrival drawn (nothing was due)"
        parts = [f"{self.succeeded}/{self.planned} ok"]
        if self.unfinished:
            parts.append(f"{self.unfinished} unsent or unfinished")
        if self.workers_lost:
            parts.append(f"{self.workers_lost} Locust worker(s) lost mid-cell")
        if self.failures:
            parts.append(format_failures(self.failures))
        return ", ".join(parts)

    def row(self) -> list[object]:
        end = "" if self.end is None else f"{self.end:.6f}"
        counts: list[object] = ["", "", ""]
        if self.completed is not None:
            counts = [self.completed, self.succeeded, format_failures(self.failures)]
        rate = getattr(self.cell, "request_rate", None)
        users = self.users if self.users is not None else getattr(self.cell, "concurrency", "")
        return [
            self.cell.name,
            self.repeat,
            f"{self.start:.6f}",
            end,
            users,
            self.planned,
            *counts,
            "" if rate is None else f"{rate:g}",
            "" if self.dropped is None else self.dropped,
            self.workers_lost or "",
        ]

    @classmethod
    def from_row(cls, row: dict[str, str]) -> CellRecord | None:
        """A ``cells.csv`` row read back (old files have no counts); None for a foreign row."""
        name = row.get("cell", "")
        cell: Cell | RateCellName | None = parse_cell_name(name) or parse_rate_cell_name(name)
        if cell is None:
            return None
        completed = row.get("completed") or ""
        users, dropped = row.get("users") or "", row.get("dropped") or ""
        lost = row.get("workers_lost") or ""
        return cls(
            cell=cell,
            users=int(users) if users.isdigit() and isinstance(cell, RateCellName) else None,
            dropped=int(dropped) if dropped.isdigit() else None,
            start=float(row["start"]),
            end=float(row["end"]) if row.get("end") else None,
            repeat=int(row.get("repeat") or 0),
            planned=int(row.get("planned") or 0),
            completed=int(completed) if completed else None,
            succeeded=int(row.get("succeeded") or 0),
            failures=parse_failures(row.get("failures") or ""),
            workers_lost=int(lost) if lost.isdigit() else 0,
        )


def must_await_counts(next_name: str, uncounted: Sequence[CellRecord], first: CellRecord) -> bool:
    """Whether the grid's next cell must wait for the counts of cells that ended but are not counted
    yet (a master awaits its workers' last reports, a report interval: 3.5 s a cell). Counts are
    taken per request name, so a cell of another name may run meanwhile; the wait stays for a
    repeat of the same cell (same name) and for the first cell (all client errors there stop the
    walk before anything else is sent)."""
    return any(record.cell.name == next_name or record is first for record in uncounted)


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
