"""``embed-bench run --trace``: a request log replayed open loop against the real bundled server, then
reported (SLO attainment over the replay, figures per length band) and priced as a day of traffic."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embed_bench.core.trace import load_trace, replay_offsets
from target_server.launcher import running_target_server

pytestmark = pytest.mark.usefixtures("spawn")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with running_target_server("--batching", "continuous", "--threads", "16") as url:
        yield url


def embed_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "embed_bench", *args], capture_output=True, text=True, timeout=300
    )


def write_trace(path: Path) -> None:
    """80 rows over 40 s of log time: one-passage queries of 3 to 40 tokens, every 7th row a batch of
    four passages of different lengths; one idle gap of 1,000 s that the replay cuts."""
    rng = np.random.default_rng(11)
    lines = ["offset_s,batch_size,tokens"]
    at = 100.0
    for row in range(80):
        at += float(rng.exponential(0.5)) + (1000.0 if row == 40 else 0.0)
        if row % 7 == 3:
            lines.append(f"{at:.4f},4,{' '.join(str(int(n)) for n in rng.integers(5, 120, size=4))}")
        else:
            lines.append(f"{at:.4f},1,{int(rng.integers(3, 41))}")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.serial
def test_a_trace_replays_on_schedule_with_every_row_recorded_token_exact(server: str, tmp_path: Path) -> None:
    trace_file = tmp_path / "log.csv"
    write_trace(trace_file)
    run_dir = tmp_path / "run"
    result = embed_bench(
        "run",
        "--backend",
        "self-hosted",
        "--host",
        server,
        "--trace",
        str(trace_file),
        "--trace-speed",
        "2",
        "--trace-max-gap",
        "3",
        "--slo-p95-ms",
        "2000",
        "--out",
        str(run_dir),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = pd.read_csv(run_dir / "requests.csv.gz")
    trace = load_trace(trace_file)
    assert len(records) == len(trace) == 80 and records["warmup"].eq(0).all()
    assert sorted(records["index"]) == list(range(80))  # every row once
    records = records.sort_values("index")
    planned = records["planned_at"].to_numpy() - records["planned_at"].min()
    np.testing.assert_allclose(planned, replay_offsets(trace, 2.0, 3.0), atol=1e-3)  # the 1,000 s gap cut
    lag = records["lag_ms"].to_numpy()
    print(
        f"send lag over {len(lag)} requests: median {np.median(lag):.2f} ms, p99 {np.percentile(lag, 99):.2f} ms"
    )
    assert np.median(lag) < 5.0 and np.percentile(lag, 99) < 25.0
    assert records["ok"].eq(1).all()
    # token-exact per passage: the server counts each input's tokens plus [CLS] and [SEP]
    lengths = [sum(r.lengths) for r in trace.requests]
    assert records["tokens_client"].tolist() == lengths
    assert (records["tokens_server"] == records["tokens_client"] + 2 * records["batch_size"]).all()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["trace"]["rows"] == 80 and run["trace"]["speed"] == 2.0 and run["trace"]["max_gap_s"] == 3.0
    padding = run["server_padding"]
    assert padding["padded_tokens"] >= padding["tokens"] >= sum(lengths)

    report = embed_bench(
        "report", str(run_dir), "--out", str(tmp_path / "report"), "--workload", str(trace_file)
    )
    # a 40 s log covers 2 hours of the day at most: as a daily workload it is refused, naming the gap
    assert report.returncode == 1 and "does not cover hour(s)" in report.stderr
    report = embed_bench("report", str(run_dir), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "report" / "report.md").read_text()
    assert "### SLO attainment over the replay" in text and "### By passage length" in text
    assert "| 1-16 |" in text and "| 65-128 |" in text
    assert "of the requests succeeded within 2000 ms" in text
