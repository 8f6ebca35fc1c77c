"""Per-request records: the row, the file and the token-count audit (``embed_bench.load.recorder`` moves them).

Locust's own statistics round each response time to two significant digits and keep no request, so
exact percentiles, success-only latency and "where the time goes" need a record per request:

- ``RequestRecord``: one row, the columns of the run contract's ``REQUEST_RECORD_COLUMNS``
  (``embed_bench/core/contract.py``), built by ``EmbeddingUser`` for every request it sends or refuses;
- ``RecordFile``: ``<run dir>/requests.csv.gz``, appended one complete gzip member per flush (the
  header in the first), so ``pandas.read_csv`` reads it whole at any time and a crash loses at most
  the rows since the last flush;
- ``TokenAudit``: when a server's usage strays from the client's exact count beyond special tokens,
  one warning per cell names the likely cause (``token_mismatch``).

No Locust import (so no gevent monkey-patching): tests and tools read it as plain Python.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import logging
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from embed_bench.core.contract import REQUEST_RECORD_COLUMNS, RUN_FILES
from embed_bench.core.options import BenchOptions

logger = logging.getLogger(__name__)

SPECIAL_TOKENS_PER_INPUT = 2  # [CLS] and [SEP], <s> and </s>: what a server may add to each input
TOKEN_TOLERANCE = 0.01  # and a server's count may differ by 1% before it is called a mismatch
AUDITED_PER_CELL = 100


class RequestRecord(NamedTuple):
    """One row of ``requests.csv.gz``: the fields of ``REQUEST_RECORD_COLUMNS``, in their order."""

    cell: str
    repeat: int
    warmup: int
    backend: str
    worker: str
    user: int
    index: int
    batch_size: int
    passage_tokens: int
    tokens_client: int
    tokens_server: int | None
    status: int
    ok: int
    failure: str
    planned_at: float
    sent_at: float
    completed_at: float
    latency_ms: float
    lag_ms: float
    dropped: int
    bytes_sent: int
    bytes_received: int
    queue_ms: float | None
    inference_ms: float | None
    server_total_ms: float | None
    tokenization_ms: float | None


if RequestRecord._fields != REQUEST_RECORD_COLUMNS:
    raise ImportError("RequestRecord no longer matches embed_bench.core.contract.REQUEST_RECORD_COLUMNS")

SERVER_TIMING_HEADERS = ("x-queue-time", "x-inference-time", "x-total-time", "x-tokenization-time")


_fast_headers: type | None = None  # geventhttpclient's Headers once checked (imported on first use:
# importing the package loads gevent, which a command that only reads records must not)
_checked = False


def _headers_type() -> type | None:
    """geventhttpclient's ``Headers`` when it still stores each field under its lowercased name as an
    (original name, value) pair, which lets ``server_timings`` skip its case-insensitive lookups."""
    global _fast_headers, _checked
    if not _checked:
        _checked = True
        from geventhttpclient.header import Headers

        if dict.get(Headers({"X-Probe": "1"}), "x-probe") == ("X-Probe", "1"):
            _fast_headers = Headers
    return _fast_headers


def server_timings(headers: Any) -> tuple[float | None, ...]:
    """The server's timing headers in ms, in record order; None where absent or not a number.
    Runs for every request, so it reads FastHttpUser's headers straight from their storage when it
    can (a quarter of the cost of four case-insensitive lookups, one of them a KeyError)."""
    if not headers:
        return (None, None, None, None)
    fast = _fast_headers if _checked else _headers_type()
    if fast is None or type(headers) is not fast:
        return tuple(_milliseconds(headers.get(name)) for name in SERVER_TIMING_HEADERS)
    values = []
    for name in SERVER_TIMING_HEADERS:
        stored = dict.get(headers, name)
        if stored is None:
            values.append(None)
        else:  # a pair, or a list of pairs for a repeated header (not a number then)
            values.append(_milliseconds(stored[1]) if type(stored) is tuple else None)
    return tuple(values)


def _milliseconds(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class RecordFile:
    """``requests.csv.gz``, appended one complete gzip member per flush; the header goes into the
    first member of a new or empty file only, so a second run from the web UI appends rows.

    A write that fails half-way is cut back to where it started, so the file never holds a torn
    member in its middle (readers stop at one) and the same rows can be appended again later."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, rows: list[tuple]) -> None:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        if not self.path.exists() or self.path.stat().st_size == 0:
            writer.writerow(REQUEST_RECORD_COLUMNS)
        writer.writerows(rows)
        member = gzip.compress(text.getvalue().encode(), compresslevel=1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab", buffering=0) as stream:  # unbuffered: a failed write is cut back
            start = stream.tell()
            try:
                rest = memoryview(member)
                while rest:
                    written = stream.write(rest)
                    if not written:
                        raise OSError(f"no byte of {len(rest)} written")
                    rest = rest[written:]
            except OSError:
                with contextlib.suppress(OSError):
                    stream.truncate(start)
                raise


class RecordFileError(Exception):
    """A record file that cannot be read: the message names it and what is wrong."""


def count_measured_records(path: Path) -> Counter[tuple[str, int]]:
    """Measured rows (warm-ups left out, dropped open-loop arrivals in) of ``requests.csv.gz`` per
    (cell, repeat): what ``embed-bench run`` compares with ``cells.csv``'s ``completed``. Read as the
    report reads it: member after member, a cut last member (a crash mid-flush) keeping its complete
    lines. A missing file counts nothing; one that cannot be read as a record file raises
    ``RecordFileError`` naming it and what is wrong. Streams, so a long run's file is never whole in
    memory."""
    counts: Counter[tuple[str, int]] = Counter()
    if not path.exists():
        return counts
    rest = b""
    header: list[str] | None = None
    try:
        for text in _member_text(path):
            lines = (rest + text).split(b"\n")
            rest = lines.pop()  # the line not ended yet: the next piece completes it
            for row in csv.reader(line.decode("utf-8") for line in lines):
                if header is None:
                    header = row
                    if tuple(header[:3]) != REQUEST_RECORD_COLUMNS[:3]:
                        raise RecordFileError(f"{path}: not a request record file (it starts {header[:3]})")
                elif len(row) > 2 and row[2] == "0":
                    counts[row[0], int(row[1])] += 1
    except (OSError, UnicodeDecodeError, csv.Error, zlib.error) as error:
        raise RecordFileError(f"{path}: unreadable ({error})") from error
    except ValueError as error:  # int(repeat)
        raise RecordFileError(f"{path}: a row's repeat is not a number ({error})") from None
    return counts


def _member_text(path: Path, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The decompressed bytes of every gzip member of ``path`` in order; a member cut short ends it."""
    with path.open("rb") as stream:
        member = zlib.decompressobj(wbits=31)  # 31: a gzip header and trailer
        data = stream.read(chunk)
        while data:
            yield member.decompress(data)
            if member.eof:
                data = member.unused_data or stream.read(chunk)
                member = zlib.decompressobj(wbits=31)
            else:
                data = stream.read(chunk)


def token_mismatch(record: RequestRecord, passage_chars: int | None) -> str | None:
    """Why a successful request's server count strays from the client's, or None when it does not:
    a server may add up to SPECIAL_TOKENS_PER_INPUT per input (and differ by TOKEN_TOLERANCE).

    The client's count is exact (payloads are token-exact under the run's tokenizer), so a stray
    count has a cause: characters counted instead of tokens (the count matches the passages'
    characters), truncation at the model's limit (fewer tokens, the same number per input), or a
    different tokenizer (anything else)."""
    server, client, inputs = record.tokens_server, record.tokens_client, record.batch_size
    if server is None:
        return None
    slack = TOKEN_TOLERANCE * client
    if -slack <= server - client <= SPECIAL_TOKENS_PER_INPUT * inputs + slack:
        return None
    counts = f"server {server:,} vs client {client:,} tokens per request"
    if (
        passage_chars
        and abs(server - passage_chars) <= 0.05 * passage_chars + SPECIAL_TOKENS_PER_INPUT * inputs
    ):
        return (
            f"{counts}: the server counts characters, not tokens (the passages hold {passage_chars:,} "
            "characters; e.g. Infinity without --lengths-via-tokenize)"
        )
    if server < client and server % inputs == 0:
        return (
            f"{counts}: likely truncation at the model's limit ({server // inputs:,} tokens per input "
            f"counted, {record.passage_tokens:,} sent)"
        )
    return f"{counts}: likely a different tokenizer than the run's --tokenizer"


class TokenAudit:
    """Warns once per cell when the server's usage strays from the client's count. A cell's counts
    stray from its first requests on (every request of a cell has the same shape), so the audit
    looks at no more than AUDITED_PER_CELL successful requests of each cell."""

    def __init__(self, environment: Any) -> None:
        self.environment = environment  # a Locust Environment: its user classes and parsed options
        self._audited: dict[str, int] = {}  # cell -> successful requests with a server count checked
        self._overheads: dict[tuple[str, int], int | None] = {}

    def check(self, rows: list[tuple]) -> None:
        audited = self._audited
        for row in rows:  # a plain loop over tuples: the master may check thousands per flush
            cell, server_count, ok = row[0], row[10], row[12]
            if not ok or server_count is None or audited.get(cell, 0) >= AUDITED_PER_CELL:
                continue
            audited[cell] = audited.get(cell, 0) + 1
            record = RequestRecord._make(row)
            reason = token_mismatch(record, self._passage_chars(record))
            if reason is not None:
                audited[cell] = AUDITED_PER_CELL  # one warning per cell
                logger.warning(
                    "cell %s: the server's token count strays from the client's, %s. Throughput uses "
                    "the client's count; the server's is kept as tokens_server in %s",
                    record.cell,
                    reason,
                    RUN_FILES.requests,
                )

    def _passage_chars(self, record: RequestRecord) -> int | None:
        """Characters of the passages: the body's bytes less the backend's JSON around them (exact for
        ASCII passages, which the passage generator makes)."""
        key = (record.backend, record.batch_size)
        if key not in self._overheads:
            self._overheads[key] = self._overhead(*key)
        overhead = self._overheads[key]
        return record.bytes_sent - overhead if overhead is not None and record.bytes_sent else None

    def _overhead(self, backend: str, inputs: int) -> int | None:
        for user_class in self.environment.user_classes:
            if user_class.__name__ == backend and hasattr(user_class, "encode_request"):
                options = BenchOptions.from_namespace(self.environment.parsed_options)
                return len(user_class.encode_request([""] * inputs, options))
        return None
