"""Per-request records: the token-count audit, the multi-member file, and what a SIGINT leaves."""

from __future__ import annotations

import gzip
import signal
import time

import pandas
import pytest
from geventhttpclient.header import Headers

from embed_bench.core.contract import REQUEST_RECORD_COLUMNS
from embed_bench.core.records import RecordFile, RequestRecord, server_timings, token_mismatch
from tests.doubles.process import running_double
from tests.load.runs import finish, start_headless, wait_for, write_grid

KEY = "jina_double_key"


def record(batch: int = 4, tokens: int = 32, server: int | None = None, **fields) -> RequestRecord:
    values = dict.fromkeys(REQUEST_RECORD_COLUMNS, 0)
    values.update(cell=f"b={batch} t={tokens} c=1", backend="JinaApiUser", worker="local", failure="")
    values.update(batch_size=batch, passage_tokens=tokens, tokens_client=batch * tokens, ok=1)
    values.update(tokens_server=server, queue_ms=None, inference_ms=None, server_total_ms=None)
    values.update(tokenization_ms=None, **fields)
    return RequestRecord(**values)


@pytest.mark.parametrize(
    ("server", "chars", "cause"),
    [
        (None, 990, None),  # no usage reported: nothing to compare
        (128, 990, None),  # the same tokenizer, no special tokens
        (136, 990, None),  # [CLS] and [SEP] on each of the 4 inputs
        (989, 990, "counts characters"),
        (4 * 20, 990, "truncation at the model's limit (20 tokens per input"),
        (150, 990, "different tokenizer"),
        (101, 990, "different tokenizer"),  # fewer, but not the same number per input
    ],
)
def test_a_stray_server_count_is_named_by_its_likely_cause(server, chars, cause):
    reason = token_mismatch(record(server=server), chars)
    assert (reason is None) if cause is None else (cause in reason), reason


def test_records_are_readable_after_every_flush_and_empty_fields_mean_unknown(tmp_path):
    path = tmp_path / "requests.csv.gz"
    file = RecordFile(path)
    file.append([record(server=136, latency_ms=1234.5678901234, queue_ms=1.25)])
    first = pandas.read_csv(path)
    file.append([record(index=1), record(index=2)])
    both = pandas.read_csv(path)
    assert tuple(first.columns) == tuple(both.columns) == REQUEST_RECORD_COLUMNS
    assert len(first) == 1 and both["index"].tolist() == [0, 1, 2]
    assert both["latency_ms"][0] == 1234.5678901234  # exact, not Locust's two significant digits
    assert both["tokens_server"].isna().tolist() == [False, True, True]
    assert both["inference_ms"].isna().all() and both["queue_ms"][0] == 1.25
    with gzip.open(path, "rt") as members:  # one header, in the first gzip member only
        assert sum(line.startswith("cell,") for line in members) == 1


@pytest.mark.serial  # the signal must land mid-cell: under -n 2 the cell finished first (make test, 2026-12-05)
@pytest.mark.usefixtures("spawn")
def test_a_sigint_mid_cell_leaves_every_record_up_to_the_last_flush(tmp_path):
    run_dir = tmp_path / "run"
    path = run_dir / "requests.csv.gz"
    grid = write_grid(tmp_path / "grid.toml", [(2, 2, 16)])
    seen: list[pandas.DataFrame] = []

    def flushed_mid_cell() -> bool:
        try:
            seen[:] = [pandas.read_csv(path)]
        except (OSError, EOFError, ValueError):  # not there yet, or read while a member is written
            return False
        return len(seen[0]) >= 6

    with running_double("jina_api", "--api-key", KEY, "--latency-ms", "100") as double:
        started = time.monotonic()
        process = start_headless(
            "jina_api.py", run_dir, "-H", double.url, "--api-key", KEY, "--grid", str(grid), "--model", "jina-embeddings-v3",
            "--requests-per-user", "100",
        )  # fmt: skip
        assert wait_for(flushed_mid_cell, timeout_s=60, interval_s=0.2), "no records flushed mid-cell"
        # Let more requests finish after the flush we read (2 users x 100 ms: ~10 in 0.5 s), so the
        # final flush on the signal has rows to add; signalled at once, it could have none (CI saw it).
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        run = finish(process, run_dir, started)
        received = double.ledger()["received"]
    records = run.records()
    # Everything flushed before the signal is still there, in order, and the final flush added the rest.
    pandas.testing.assert_frame_equal(records.head(len(seen[0])), seen[0])
    assert len(seen[0]) < len(records) <= received < 2 * 101, (len(records), received)
    assert (records["ok"] == 1).all() and not records.duplicated(["worker", "user", "cell", "index"]).any()
    assert int(run.stats()["b=2 t=16 c=2"]["Request Count"]) <= (records["warmup"] == 0).sum()


def test_server_timing_headers_are_read_in_any_case_and_garbage_is_unknown():
    headers = Headers({"X-Queue-Time": "1.25", "x-inference-time": "7.50", "x-total-time": "soon"})
    headers.add("x-tokenization-time", "1")
    headers.add("x-tokenization-time", "2")  # repeated: no single number
    assert server_timings(headers) == (1.25, 7.5, None, None)
    assert server_timings(Headers({"x-tokenization-time": "0.5"})) == (None, None, None, 0.5)
    assert server_timings(None) == (None, None, None, None)
