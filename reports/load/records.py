"""Reads a run's per-request records (``requests.csv.gz``) and the cell windows they belong to.

The record file is the run contract's ``RUN_FILES.requests``: multi-member gzip CSV with the columns
of ``REQUEST_RECORD_COLUMNS``, appended by the Locust master while the run goes on. A run killed
mid-way may end in a gzip member cut short: everything before it is read, the cut rows are dropped
and a note says so. A file with missing columns is not a record file and raises ``ReportError``.

``cells.csv`` is read here a second time, raw, because the records path needs what the Locust-CSV
path does not: one window per cell *and repeat* (a grid walked N times lists a cell N times), and
the ``planned`` / ``completed`` request counts where the run wrote them.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from embed_bench.core.contract import REQUEST_RECORD_COLUMNS, RUN_FILES, parse_cell_name, parse_rate_cell_name
from reports.errors import ReportError

RECORDS_FILE = RUN_FILES.requests
_FLAGS = ("warmup", "ok", "dropped")
_INTEGERS = ("repeat", "batch_size", "passage_tokens", "status")
_NUMBERS = (
    "tokens_client",
    "tokens_server",
    "planned_at",
    "sent_at",
    "completed_at",
    "latency_ms",
    "lag_ms",
    "bytes_sent",
    "bytes_received",
    "queue_ms",
    "inference_ms",
    "server_total_ms",
    "tokenization_ms",
)
_TEXT = ("cell", "backend", "worker", "user", "index", "failure")


@dataclass(frozen=True)
class Records:
    """Every record of a run, typed: flags as bool, times and counts as float (NaN: not known),
    ``cell`` canonical (``b=.. t=.. c=..``); rows whose cell is not a grid cell are dropped."""

    frame: pd.DataFrame
    notes: tuple[str, ...]
    rate: pd.DataFrame | None = None  # rows of rate cells (``r=.. b=.. t=..``), typed alike

    @property
    def measured(self) -> pd.DataFrame:
        """Measured requests that were sent (warm-ups and never-sent open-loop requests left out)."""
        frame = self.frame
        return frame[~frame["warmup"] & ~frame["dropped"]]

    @property
    def repeats(self) -> int:
        return int(self.frame["repeat"].max()) + 1 if len(self.frame) else 0


def _read_members(path: Path, notes: list[str]) -> str:
    """The text of every gzip member; a member cut short (a crash mid-flush) ends the read, its
    complete lines kept."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReportError(f"{path}: cannot be read ({exc})") from exc
    parts = []
    while data:
        member = zlib.decompressobj(wbits=31)  # 31: a gzip header and trailer
        try:
            parts.append(member.decompress(data))
        except zlib.error as exc:
            raise ReportError(
                f"{path}: unreadable gzip data after {len(parts)} complete member(s) ({exc}); the "
                "records after it cannot be read"
            ) from exc
        if not member.eof:
            notes.append(f"{RECORDS_FILE}: ends in a cut gzip member (a crash mid-flush): its last row lost")
            break
        data = member.unused_data
    value = b"".join(parts).decode("utf-8", errors="replace")
    if value and not value.endswith("\n"):
        value = value[: value.rfind("\n") + 1]
        notes.append(f"{RECORDS_FILE}: last row cut off (the run stopped while writing it), ignored")
    return value


def load_records(directory: Path) -> Records | None:
    """The run's records, or None when it has no record file (a run from before records)."""
    path = directory / RECORDS_FILE
    if not path.is_file():
        return None
    notes: list[str] = []
    text = _read_members(path, notes)
    if not text.strip():
        notes.append(f"{RECORDS_FILE} is empty (the run stopped before its first flush)")
        return None
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, ValueError) as exc:
        raise ReportError(f"{path}: not a readable CSV file ({exc})") from exc
    missing = [column for column in REQUEST_RECORD_COLUMNS if column not in frame.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(missing)}; not a request record file")
    frame = frame[frame["cell"] != frame.columns[0]]  # a header repeated by a later gzip member
    is_rate = frame["cell"].map(lambda name: parse_rate_cell_name(name) is not None).astype(bool)
    rate = _typed_columns(frame[is_rate].copy()).reset_index(drop=True) if is_rate.any() else None
    return Records(_typed(frame[~is_rate], notes), tuple(notes), rate)


def _typed(frame: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    cells = frame["cell"].map(parse_cell_name)
    foreign = sorted(set(frame.loc[cells.isna(), "cell"]))
    if foreign:
        notes.append(
            f"{RECORDS_FILE}: rows of request names that are not grid cells ignored: {', '.join(foreign)}"
        )
    frame = frame[cells.notna()].copy()
    frame["cell"] = [cell.name for cell in cells[cells.notna()]]
    return _typed_columns(frame).reset_index(drop=True)


def _typed_columns(frame: pd.DataFrame) -> pd.DataFrame:
    for column in _FLAGS:
        frame[column] = frame[column].str.strip().isin(("1", "true", "True"))
    for column in (*_INTEGERS, *_NUMBERS):
        frame[column] = pd.to_numeric(frame[column].replace("", None), errors="coerce")
    for column in _INTEGERS:
        frame[column] = frame[column].fillna(0).astype(int)
    for column in _TEXT:
        frame[column] = frame[column].astype(str)
    return frame


@dataclass(frozen=True)
class CellWindow:
    """One walk of one cell: when its users were held, how many requests it planned and completed
    (None where ``cells.csv`` has no such columns), and how many Locust workers it lost."""

    cell: str
    repeat: int
    start_s: float
    end_s: float | None
    planned: int | None
    completed: int | None
    workers_lost: int = 0


def _optional_int(value: object, path: Path, line: int, column: str) -> int | None:
    """An empty field is None (not counted yet, or an older file); anything else must be a number."""
    if value is None or str(value).strip() == "":
        return None
    number = pd.to_numeric(value, errors="coerce")
    if pd.isna(number):
        raise ReportError(f"{path}, line {line}: {column} {value!r} is not a number")
    return int(number)


def load_cell_windows(directory: Path) -> tuple[list[CellWindow], list[CellWindow]]:
    """Every ``cells.csv`` row as a window: the grid cells' (canonical names), then the rate cells';
    a cell listed k times without a ``repeat`` column is taken as repeats 0..k-1 in file order. Both
    empty without ``cells.csv`` (a plain Locust run); a file that cannot be read, or a row whose
    start or counts are not numbers, raises ``ReportError`` naming the file and the line."""
    path = directory / RUN_FILES.cells_csv
    if not path.is_file():
        return [], []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot be read ({exc})") from exc
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # a row cut off by a crash mid-write
    if not text.strip():
        return [], []
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, ValueError) as exc:
        raise ReportError(f"{path}: not a readable CSV file ({exc})") from exc
    missing = [column for column in ("cell", "start") if column not in frame.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(missing)}; is this a cells.csv?")
    cells: list[CellWindow] = []
    rates: list[CellWindow] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(frame.to_dict("records"), start=2):
        raw_name = str(row["cell"]).strip()
        grid_cell = parse_cell_name(raw_name)
        if grid_cell is None and parse_rate_cell_name(raw_name) is None:
            continue  # not a cell of ours: the Locust-CSV loader notes foreign names
        name = grid_cell.name if grid_cell is not None else raw_name
        start = _number(row["start"], path, line)
        occurrence = seen.get(name, 0)
        seen[name] = occurrence + 1
        repeat = _optional_int(row.get("repeat"), path, line, "repeat")
        end = row.get("end", "")
        window = CellWindow(
            cell=name,
            repeat=occurrence if repeat is None else repeat,
            start_s=start,
            end_s=None if str(end).strip() == "" else _number(end, path, line, "end"),
            planned=_optional_int(row.get("planned"), path, line, "planned"),
            completed=_optional_int(row.get("completed"), path, line, "completed"),
            workers_lost=_optional_int(row.get("workers_lost"), path, line, "workers_lost") or 0,
        )
        (cells if grid_cell is not None else rates).append(window)
    return cells, rates


def _number(value: object, path: Path, line: int, column: str = "start") -> float:
    """A time of the row: it must be a number."""
    number = pd.to_numeric(value, errors="coerce")
    if pd.isna(number):
        raise ReportError(f"{path}, line {line}: {column} {value!r} is not a number")
    return float(number)
