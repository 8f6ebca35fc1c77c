"""A team's own request log, replayed open loop: ``embed-bench run --trace FILE``.

A grid asks "how does this shape behave at this load"; a trace asks "does *our* traffic meet the
target". The log is CSV or JSONL, one row per request, in any order (rows are sorted by time, ties
kept in file order):

- the time: ``offset_s`` (seconds from any origin) or ``timestamp`` (epoch seconds, or ISO 8601; a
  time without a zone is taken as UTC);
- the inputs, one of:
  - ``tokens``: the tokens of each input. JSONL: an integer or a list of integers; CSV: integers
    separated by spaces or ``;``. One integer with ``batch_size`` N stands for N inputs of that many
    tokens;
  - ``texts``: the inputs themselves (JSONL: a list of strings, or one string; CSV: a JSON list).
    They are sent verbatim, so a replay with texts repeats the log's own requests;
- ``batch_size`` (optional): the number of inputs, checked against ``tokens`` or ``texts``.

Replay (:func:`replay_offsets`): the first row leaves at 0; ``speed`` divides every gap
(``--trace-speed 60`` plays an hour in a minute), and ``max_gap_s`` then cuts any idle gap longer than
that (a night of silence need not be waited out). Every row is sent once: the per-request records
hold exactly as many rows as the trace. Each load-generator process takes every N-th row
(:func:`share_rows`), so N processes replay it together.

A trace is also a workload for the decision table (:func:`hourly_profile`): its requests and tokens
per hour of the day, over the hours it covers. Hours it does not cover are reported missing, never
filled in.

Locust-free and pandas-free, like the rest of ``embed_bench.core``.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from embed_bench.core.contract import GridError

MAX_TRACE_BYTES = 256 * 1024 * 1024  # a larger log is a data-engineering job, not a replay
MAX_INPUTS_PER_REQUEST = 4096
MAX_TOKENS_PER_INPUT = 1_000_000
TIME_KEYS = ("offset_s", "timestamp")
INPUT_KEYS = ("tokens", "texts")
KNOWN_KEYS = frozenset({*TIME_KEYS, *INPUT_KEYS, "batch_size"})
SECONDS_PER_HOUR = 3_600.0
HOURS_PER_DAY = 24
_SEPARATORS = re.compile(r"[\s;]+")


class TraceError(GridError):
    """A trace file that cannot be replayed; the message names the file and the row."""


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One logged request: due ``time_s`` seconds after the trace's origin (epoch seconds for a
    ``timestamp`` trace), with the token count of each input, or the inputs themselves."""

    time_s: float
    lengths: tuple[int, ...] = ()
    texts: tuple[str, ...] = ()
    row: int = 0  # the row's line number in its file, for messages

    @property
    def batch_size(self) -> int:
        return len(self.texts) or len(self.lengths)


@dataclass(frozen=True)
class Trace:
    """The rows of a trace file, in time order. ``epoch`` is true for ``timestamp`` traces, whose
    times then carry their hour of the day."""

    source: str
    requests: tuple[TraceRequest, ...]
    epoch: bool = False

    def __post_init__(self) -> None:
        if not self.requests:
            raise TraceError(f"{self.source}: the trace has no requests")

    def __len__(self) -> int:
        return len(self.requests)

    @property
    def start_s(self) -> float:
        return self.requests[0].time_s

    @property
    def span_s(self) -> float:
        """Seconds from the first request to the last, as logged."""
        return self.requests[-1].time_s - self.start_s

    @property
    def has_texts(self) -> bool:
        return any(request.texts for request in self.requests)

    def describe(self) -> dict[str, Any]:
        """What run.json records of the trace itself."""
        batches = [request.batch_size for request in self.requests]
        return {
            "file": self.source,
            "rows": len(self.requests),
            "start_s": self.start_s,
            "span_s": round(self.span_s, 6),
            "inputs": sum(batches),
            "max_batch_size": max(batches),
            "tokens": None if self.has_texts else sum(sum(r.lengths) for r in self.requests),
            "times": "timestamp" if self.epoch else "offset_s",
        }


def _fail(source: str, row: int, message: str) -> TraceError:
    return TraceError(f"{source}, row {row}: {message}")


def _time(source: str, row: int, record: Mapping[str, Any]) -> tuple[float, bool]:
    present = [key for key in TIME_KEYS if record.get(key) not in (None, "")]
    if len(present) != 1:
        raise _fail(source, row, "give exactly one of offset_s (seconds) or timestamp (epoch or ISO 8601)")
    key, value = present[0], record[present[0]]
    if key == "timestamp" and isinstance(value, str) and not _is_float(value):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise _fail(source, row, f"timestamp {value!r} is neither epoch seconds nor ISO 8601") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp(), True
    number = _float(source, row, key, value)
    if key == "offset_s" and number < 0:
        raise _fail(source, row, f"offset_s must not be negative, found {value!r}")
    return number, key == "timestamp"


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _float(source: str, row: int, key: str, value: Any) -> float:
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise _fail(source, row, f"{key} must be a finite number, found {value!r}")
    return number


def _count(source: str, row: int, key: str, value: Any, most: int) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
        raise _fail(source, row, f"{key} must be an integer from 1 to {most:,}, found {value!r}")
    return value


def _inputs(
    source: str, row: int, record: Mapping[str, Any], csv_row: bool
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    present = [key for key in INPUT_KEYS if record.get(key) not in (None, "")]
    if len(present) != 1:
        raise _fail(source, row, "give exactly one of tokens (per input) or texts (the inputs)")
    batch = record.get("batch_size")
    batch_size = (
        None if batch in (None, "") else _count(source, row, "batch_size", batch, MAX_INPUTS_PER_REQUEST)
    )
    value = record[present[0]]
    if present[0] == "texts":
        texts = _texts(source, row, value, csv_row)
        if batch_size is not None and batch_size != len(texts):
            raise _fail(source, row, f"batch_size {batch_size} but {len(texts)} text(s)")
        return (), texts
    items = _SEPARATORS.split(value.strip()) if isinstance(value, str) else value
    if isinstance(items, int | float) and not isinstance(items, bool):
        items = [items]
    if not isinstance(items, Sequence) or not items:
        raise _fail(source, row, f"tokens must be a token count or a list of them, found {value!r}")
    lengths = tuple(_count(source, row, "tokens", item, MAX_TOKENS_PER_INPUT) for item in items)
    if len(lengths) == 1 and batch_size is not None:
        lengths *= batch_size
    elif batch_size is not None and batch_size != len(lengths):
        raise _fail(source, row, f"batch_size {batch_size} but {len(lengths)} token count(s)")
    if len(lengths) > MAX_INPUTS_PER_REQUEST:
        raise _fail(source, row, f"{len(lengths)} inputs; at most {MAX_INPUTS_PER_REQUEST} per request")
    return lengths, ()


def _texts(source: str, row: int, value: Any, csv_row: bool) -> tuple[str, ...]:
    if csv_row:
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise _fail(
                source, row, 'texts in a CSV trace is a JSON list of strings, e.g. ["a", "b"]'
            ) from None
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or not value
        or len(value) > MAX_INPUTS_PER_REQUEST
        or not all(isinstance(text, str) and text for text in value)
    ):
        raise _fail(source, row, f"texts must be 1 to {MAX_INPUTS_PER_REQUEST} non-empty strings")
    return tuple(value)


def _records(text: str, source: str, jsonl: bool) -> Iterable[tuple[int, Mapping[str, Any]]]:
    if jsonl:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise _fail(source, number, f"not a JSON object ({error.msg})") from None
            if not isinstance(record, dict):
                raise _fail(source, number, "each line is a JSON object")
            yield number, record
        return
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip() for name in reader.fieldnames or []]
    if not header or not any(key in header for key in TIME_KEYS):
        raise TraceError(
            f"{source}: the CSV header needs offset_s or timestamp, and tokens or texts; found {header}"
        )
    for record in reader:
        if None in record:
            raise _fail(source, reader.line_num, "more fields than the header names")
        yield (
            reader.line_num,
            {key.strip(): (v.strip() if isinstance(v, str) else v) for key, v in record.items()},
        )


def parse_trace(text: str, source: str, jsonl: bool) -> Trace:
    """The trace in ``text`` (CSV with a header, or JSONL); every row checked, errors name the row."""
    requests: list[TraceRequest] = []
    kinds: set[bool] = set()
    for number, record in _records(text, source, jsonl):
        unknown = sorted(set(record) - KNOWN_KEYS)
        if unknown:
            raise _fail(
                source,
                number,
                f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_KEYS))}",
            )
        time_s, epoch = _time(source, number, record)
        kinds.add(epoch)
        lengths, texts = _inputs(source, number, record, not jsonl)
        requests.append(TraceRequest(time_s, lengths, texts, number))
    if len(kinds) > 1:
        raise TraceError(f"{source}: rows mix offset_s and timestamp; use one for the whole trace")
    requests.sort(key=lambda request: request.time_s)  # stable: ties keep their file order
    return Trace(source, tuple(requests), epoch=kinds == {True})


def load_trace(path: str | Path) -> Trace:
    """A trace file: ``.jsonl``/``.ndjson`` is JSON lines, anything else CSV. A process that asks for
    the same unchanged file again (the master plans the cell, records it in run.json and takes its
    own share) gets the parse it already made: a ``Trace`` is frozen, and a file of MAX_TRACE_BYTES
    takes seconds to parse."""
    file = Path(path).expanduser()
    try:
        stat = file.stat()
    except FileNotFoundError:
        raise TraceError(f"trace file not found: {file}") from None
    except OSError as error:
        raise TraceError(f"trace file {file} cannot be read: {error}") from None
    if stat.st_size > MAX_TRACE_BYTES:
        raise TraceError(f"{file}: {stat.st_size:,} bytes; a trace is at most {MAX_TRACE_BYTES:,} bytes")
    return _parsed_trace(file, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _parsed_trace(file: Path, _mtime_ns: int, _size: int) -> Trace:
    """The parse of ``file`` as it was at (``_mtime_ns``, ``_size``): a changed file is parsed again."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TraceError(f"trace file not found: {file}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise TraceError(f"trace file {file} cannot be read: {error}") from None
    return parse_trace(text, str(file), file.suffix.lower() in (".jsonl", ".ndjson"))


def replay_offsets(trace: Trace, speed: float = 1.0, max_gap_s: float | None = None) -> list[float]:
    """Each row's due time in the replay: from 0, every gap divided by ``speed``, then any gap longer
    than ``max_gap_s`` (replay seconds) cut to it."""
    if not (isinstance(speed, int | float) and math.isfinite(speed) and speed > 0):
        raise TraceError(f"--trace-speed must be a positive number, found {speed!r}")
    if max_gap_s is not None and not (math.isfinite(max_gap_s) and max_gap_s > 0):
        raise TraceError(f"--trace-max-gap must be a positive number of seconds, found {max_gap_s!r}")
    offsets, previous_time, at = [], trace.start_s, 0.0
    for request in trace.requests:
        gap = (request.time_s - previous_time) / speed
        at += gap if max_gap_s is None else min(gap, max_gap_s)
        offsets.append(at)
        previous_time = request.time_s
    return offsets


def share_rows(rows: int, processes: int, process_index: int) -> range:
    """The rows one of ``processes`` load generators replays: every ``processes``-th, from its index."""
    if processes < 1 or not 0 <= process_index < processes:
        raise TraceError(f"process index must be in 0..{processes - 1}, found {process_index!r}")
    return range(process_index, rows, processes)


@dataclass(frozen=True)
class HourlyLoad:
    """A trace as a day: per hour of the day, the seconds of it the trace covers, its requests and
    tokens there. An hour it does not cover has ``covered_s`` 0 and no rate."""

    covered_s: tuple[float, ...]
    requests: tuple[int, ...]
    tokens: tuple[int, ...]
    peak_minute_requests_per_s: float

    @property
    def missing_hours(self) -> list[int]:
        return [hour for hour, seconds in enumerate(self.covered_s) if seconds <= 0]

    @property
    def requests_per_s(self) -> tuple[float, ...]:
        return tuple(n / s if s > 0 else 0.0 for n, s in zip(self.requests, self.covered_s, strict=True))

    @property
    def tokens_per_request(self) -> tuple[float, ...]:
        """Per hour; an hour without requests takes the trace's overall mean (it carries no tokens)."""
        mean = sum(self.tokens) / max(sum(self.requests), 1)
        return tuple(t / n if n else mean for t, n in zip(self.tokens, self.requests, strict=True))


def hourly_profile(trace: Trace, tokens_of: Sequence[int] | None = None) -> HourlyLoad:
    """The trace's load per hour of the day. Times are hours from the trace's start for an
    ``offset_s`` trace whose first row is at 0 (and from midnight UTC for a ``timestamp`` trace),
    so an ``offset_s`` trace of a day starts at 00:00. ``tokens_of`` gives each row's tokens where
    the trace has texts (counted by the caller's tokenizer)."""
    if trace.has_texts and tokens_of is None:
        raise TraceError(
            f"{trace.source}: a trace of texts needs their token counts (a tokenizer) to give tokens per hour"
        )
    covered = [0.0] * HOURS_PER_DAY
    requests = [0] * HOURS_PER_DAY
    tokens = [0] * HOURS_PER_DAY
    origin = 0.0 if trace.epoch else min(trace.start_s, 0.0)
    start, end = trace.start_s - origin, trace.requests[-1].time_s - origin
    end = max(end, start + 1.0)  # a trace of one instant covers at least its second
    hour_start = math.floor(start / SECONDS_PER_HOUR) * SECONDS_PER_HOUR
    while hour_start < end:
        seconds = min(end, hour_start + SECONDS_PER_HOUR) - max(start, hour_start)
        covered[int(hour_start // SECONDS_PER_HOUR) % HOURS_PER_DAY] += max(seconds, 0.0)
        hour_start += SECONDS_PER_HOUR
    minutes: dict[int, int] = {}
    for number, request in enumerate(trace.requests):
        at = request.time_s - origin
        hour = int(at // SECONDS_PER_HOUR) % HOURS_PER_DAY
        requests[hour] += 1
        tokens[hour] += tokens_of[number] if tokens_of is not None else sum(request.lengths)
        minutes[int(at // 60)] = minutes.get(int(at // 60), 0) + 1
    return HourlyLoad(tuple(covered), tuple(requests), tuple(tokens), max(minutes.values()) / 60.0)
