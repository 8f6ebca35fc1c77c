"""Writes run directories with per-request records drawn from known distributions.

Each cell's users send back to back (closed loop): a user's next request goes out when its previous
answer arrives, after one warm-up request. Latencies are log-normal around ``median_ms`` (seeded),
every ``fail_every``-th request fails with HTTP 500, and the server's timing headers split each
latency into queue, inference and 3-8 ms of rest. ``requests.csv.gz`` is written as the contract
says (multi-member gzip, the header in the first member); Locust's own CSVs are derived from the
same requests with Locust's rounding, so a report can be built with or without the records.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from embed_bench.core.contract import CELLS_CSV_COLUMNS, REQUEST_RECORD_COLUMNS, RUN_FILES
from tests.reports.fixtures import (
    FAILURES_HEADER_NEW,
    STATS_HEADER,
    _csv_text,
    _stats_row,
)

RUN_START_S = 1_760_000_000.0
GAP_S = 0.5
MEMBER_ROWS = 97  # rows per gzip member, as the master flushes every few seconds


def bert_special_tokens(batch_size: int, passage_tokens: int) -> int:
    """What a WordPiece server reports: [CLS] and [SEP] around every input."""
    return batch_size * (passage_tokens + 2)


@dataclass(frozen=True)
class RecordCell:
    batch_size: int
    passage_tokens: int
    concurrency: int
    requests_per_user: int
    median_ms: float
    sigma: float = 0.4
    fail_every: int = 0
    server_tokens: Callable[[int, int], int | None] | None = bert_special_tokens
    timing_headers: bool = True
    planned: int | None = None  # cells.csv planned; completed = the requests written

    @property
    def name(self) -> str:
        return f"b={self.batch_size} t={self.passage_tokens} c={self.concurrency}"


def _cell_rows(
    spec: RecordCell, repeat: int, start: float, rng: np.random.Generator
) -> tuple[list[dict], float]:
    rows = []
    end = start
    counter = 0
    for user in range(spec.concurrency):
        clock = start + 0.001 * user
        for index in range(-1, spec.requests_per_user):  # index -1: the warm-up request
            latency = float(spec.median_ms * np.exp(spec.sigma * rng.standard_normal()))
            warmup = index < 0
            counter += 0 if warmup else 1
            failed = bool(spec.fail_every) and not warmup and counter % spec.fail_every == 0
            rest = float(rng.uniform(3, 8))
            queue = float((latency - rest) * rng.uniform(0.1, 0.4))
            server = spec.server_tokens(spec.batch_size, spec.passage_tokens) if spec.server_tokens else None
            headers = spec.timing_headers and not failed
            rows.append(
                {
                    "cell": spec.name,
                    "repeat": repeat,
                    "warmup": int(warmup),
                    "backend": "SelfHostedUser",
                    "worker": "local",
                    "user": user,
                    "index": max(index, 0),
                    "batch_size": spec.batch_size,
                    "passage_tokens": spec.passage_tokens,
                    "tokens_client": spec.batch_size * spec.passage_tokens,
                    "tokens_server": "" if failed or server is None else server,
                    "status": 500 if failed else 200,
                    "ok": int(not failed),
                    "failure": "HTTP 500 internal" if failed else "",
                    "planned_at": f"{clock:.6f}",
                    "sent_at": f"{clock:.6f}",
                    "completed_at": f"{clock + latency / 1000:.6f}",
                    "latency_ms": f"{latency:.3f}",
                    "lag_ms": "0.000",
                    "dropped": 0,
                    "bytes_sent": 100 * spec.batch_size,
                    "bytes_received": 0 if failed else 1500 * spec.batch_size,
                    "queue_ms": f"{queue:.3f}" if headers else "",
                    "inference_ms": f"{latency - rest - queue:.3f}" if headers else "",
                    "server_total_ms": f"{latency - rest:.3f}" if headers else "",
                    "tokenization_ms": "",
                }
            )
            clock += latency / 1000
        end = max(end, clock)
    return rows, end


def write_gzip_members(path: Path, frame: pd.DataFrame) -> None:
    """As the master appends: one complete gzip member per flush, the header in the first."""
    with path.open("wb") as stream:
        for first in range(0, max(len(frame), 1), MEMBER_ROWS):
            chunk = frame.iloc[first : first + MEMBER_ROWS]
            stream.write(gzip.compress(chunk.to_csv(index=False, header=first == 0).encode()))


def write_record_run(
    directory: Path,
    cells: Sequence[RecordCell],
    *,
    label: str | None = None,
    repeats: int = 1,
    seed: int = 7,
    status: str = "completed",
    with_records: bool = True,
) -> pd.DataFrame:
    """Write the run directory; returns the records as written (strings as in the file)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    clock = RUN_START_S
    rows: list[dict] = []
    windows = []
    for repeat in range(repeats):
        for spec in cells:
            cell_rows, end = _cell_rows(spec, repeat, clock, rng)
            rows += cell_rows
            measured = sum(1 for row in cell_rows if not row["warmup"])
            succeeded = sum(1 for row in cell_rows if not row["warmup"] and row["ok"])
            windows.append(
                [
                    spec.name,
                    repeat,
                    f"{clock:.3f}",
                    f"{end:.3f}",
                    spec.concurrency,
                    spec.planned or measured,
                    measured,
                    succeeded,
                    "",
                    "",  # request_rate, dropped: empty for a closed-loop cell
                    "",
                ]
            )
            clock = end + GAP_S
    frame = pd.DataFrame(rows, columns=list(REQUEST_RECORD_COLUMNS))
    if with_records:
        write_gzip_members(directory / RUN_FILES.requests, frame)
    (directory / RUN_FILES.cells_csv).write_text(_csv_text(CELLS_CSV_COLUMNS, windows), newline="")
    _write_locust_csvs(directory, frame, clock - RUN_START_S)
    info = {
        "name": directory.name,
        "label": label or directory.name,
        "backend": "self-hosted",
        "host": "http://127.0.0.1:8000",
        "model": "all-MiniLM-L6-v2",
        "grid": "fixture",
        "cells": [spec.name for spec in cells],
        "started_at": "2025-10-09T08:53:20+00:00",
        "ended_at": None if status != "completed" else "2025-10-09T09:00:00+00:00",
        "status": status,
        "pricing": None,
    }
    (directory / RUN_FILES.run_json).write_text(json.dumps(info), encoding="utf-8")
    return frame


def _write_locust_csvs(directory: Path, frame: pd.DataFrame, elapsed_s: float) -> None:
    """Locust's view of the same requests: rounded percentiles, server usage as content size."""
    stats, failures = [], []
    for name, rows in frame.groupby("cell", sort=False):
        for prefix, part in (("", rows[rows["warmup"] == 0]), ("warmup ", rows[rows["warmup"] == 1])):
            times = part["latency_ms"].astype(float).tolist()
            failed = int((part["ok"] == 0).sum())
            server = pd.to_numeric(part["tokens_server"], errors="coerce")
            tokens = float(server.fillna(part["tokens_client"].astype(float)).where(part["ok"] == 1, 0).sum())
            stats.append(_stats_row(prefix + name, times, failed, tokens, elapsed_s))
            if failed and not prefix:
                failures.append(["POST", name, "HTTP 500 internal", failed, "", ""])
    (directory / RUN_FILES.stats_csv).write_text(_csv_text(STATS_HEADER, stats), newline="")
    (directory / RUN_FILES.failures_csv).write_text(_csv_text(FAILURES_HEADER_NEW, failures), newline="")


def read_records(path: Path) -> pd.DataFrame:
    """The record file as pandas reads it, for the tests' own arithmetic."""
    return pd.read_csv(io.BytesIO(gzip.decompress(path.read_bytes())))


@dataclass(frozen=True)
class RateShape:
    batch_size: int
    passage_tokens: int
    median_ms: float
    weight: float = 1.0


@dataclass(frozen=True)
class RateRecordCell:
    """An open-loop cell: ``request_rate * duration_s`` constant arrivals at start + k/rate (k = 1..N,
    so the offered rate is exactly the rate), each sent ``lag_ms`` late; every ``drop_every``-th is
    dropped (never sent), every ``fail_every``-th sent one fails with HTTP 503. A mix draws each
    request's shape by weight (seeded)."""

    request_rate: float
    duration_s: float
    shapes: tuple[RateShape, ...]
    mix: str | None = None
    sigma: float = 0.2
    drop_every: int = 0
    fail_every: int = 0
    lag_ms: float = 1.0

    @property
    def name(self) -> str:
        if self.mix is not None:
            return f"r={self.request_rate:g} mix={self.mix}"
        shape = self.shapes[0]
        return f"r={self.request_rate:g} b={shape.batch_size} t={shape.passage_tokens}"


def _rate_row(spec: RateRecordCell, shape: RateShape, planned: float, **values: object) -> dict:
    row = dict.fromkeys(REQUEST_RECORD_COLUMNS, "")
    row.update(
        cell=spec.name,
        repeat=0,
        warmup=0,
        backend="SelfHostedUser",
        worker="local",
        user=0,
        index=0,
        batch_size=shape.batch_size,
        passage_tokens=shape.passage_tokens,
        tokens_client=shape.batch_size * shape.passage_tokens,
        planned_at=f"{planned:.6f}",
        dropped=0,
    )
    row.update(values)
    return row


def _rate_cell_rows(spec: RateRecordCell, start: float, rng: np.random.Generator) -> list[dict]:
    weights = np.array([shape.weight for shape in spec.shapes], dtype=float)
    count = round(spec.request_rate * spec.duration_s)
    picks = rng.choice(len(spec.shapes), size=count + 1, p=weights / weights.sum())
    rows, sent = [], 0
    for k in range(count + 1):  # k = 0: the warm-up, sent just before the cell's start
        shape = spec.shapes[picks[k]]
        planned = start + k / spec.request_rate - (0.5 if k == 0 else 0.0)
        if k and spec.drop_every and k % spec.drop_every == 0:
            rows.append(
                _rate_row(spec, shape, planned, index=k, status=0, ok=0, failure="dropped", dropped=1)
            )
            continue
        sent += 1 if k else 0
        failed = bool(k and spec.fail_every and sent % spec.fail_every == 0)
        latency = float(shape.median_ms * np.exp(spec.sigma * rng.standard_normal()))
        rows.append(
            _rate_row(
                spec,
                shape,
                planned,
                warmup=int(k == 0),
                index=k,
                status=503 if failed else 200,
                ok=int(not failed),
                failure="HTTP 503 overloaded" if failed else "",
                tokens_server="" if failed else bert_special_tokens(shape.batch_size, shape.passage_tokens),
                sent_at=f"{planned + spec.lag_ms / 1000:.6f}",
                completed_at=f"{planned + latency / 1000:.6f}",
                latency_ms=f"{latency:.3f}",
                lag_ms=f"{spec.lag_ms:.3f}",
                bytes_sent=100 * shape.batch_size,
                bytes_received=0 if failed else 1500 * shape.batch_size,
            )
        )
    return rows


def write_rate_run(
    directory: Path,
    cells: Sequence[RateRecordCell],
    *,
    label: str | None = None,
    slo: dict | None = None,
    capacity: dict | None = None,
    pricing: str | None = None,
    seed: int = 11,
) -> pd.DataFrame:
    """A run of rate cells (e.g. a capacity search's steps), as the Locust side writes one; returns
    the records as written."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    clock = RUN_START_S
    rows: list[dict] = []
    windows = []
    for spec in cells:
        cell_rows = _rate_cell_rows(spec, clock, rng)
        rows += cell_rows
        measured = [row for row in cell_rows if not row["warmup"]]
        end = clock + spec.duration_s + 1.0
        dropped = sum(row["dropped"] for row in measured)
        succeeded = sum(row["ok"] for row in measured)
        windows.append(
            [
                spec.name,
                0,
                f"{clock:.3f}",
                f"{end:.3f}",
                64,
                len(measured),
                len(measured),  # completed: a dropped arrival is a failure in Locust's statistics
                succeeded,
                "",
                f"{spec.request_rate:g}",
                dropped,
            ]
        )
        clock = end + GAP_S
    frame = pd.DataFrame(rows, columns=list(REQUEST_RECORD_COLUMNS))
    write_gzip_members(directory / RUN_FILES.requests, frame)
    (directory / RUN_FILES.cells_csv).write_text(_csv_text(CELLS_CSV_COLUMNS, windows), newline="")
    _write_locust_csvs(directory, frame[frame["dropped"] == 0], clock - RUN_START_S)
    info = {
        "name": directory.name,
        "label": label or directory.name,
        "backend": "self-hosted",
        "host": "http://127.0.0.1:8000",
        "model": "all-MiniLM-L6-v2",
        "grid": "capacity" if slo else "fixture",
        "cells": [spec.name for spec in cells],
        "started_at": "2025-10-09T08:53:20+00:00",
        "ended_at": "2025-10-09T09:00:00+00:00",
        "status": "completed",
        "pricing": pricing,
    }
    if slo is not None:
        info["slo"] = slo
    if capacity is not None:
        info["capacity"] = capacity
    (directory / RUN_FILES.run_json).write_text(json.dumps(info), encoding="utf-8")
    return frame
