"""A server that answers badly -- truncated JSON, a body cut off, the wrong dimension, NaN, a 50 MB
body (announced or chunked), a byte a second -- through a real headless Locust run against
``tests/doubles/misbehaving_server.py``: every answer becomes a failure of its own class, the load
generator's memory stays bounded (the body is never read past its limit) and nothing crashes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from embed_bench.load.bodies import body_limit
from tests.doubles.process import running_double
from tests.load.runs import finish, start_headless, write_grid

pytestmark = pytest.mark.usefixtures("spawn")

SCHEDULE = ("truncated", "cut", "wrong-dims", "nan", "huge", "huge-chunked", "trickle")
ROUNDS = 2
TIMEOUT_S = 2.0


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak) of a live process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def test_bad_answers_are_classed_failures_with_bounded_memory_and_no_crash(tmp_path: Path) -> None:
    grid = write_grid(tmp_path / "grid.toml", [(1, 1, 16)])
    faults = ("--schedule", ",".join(SCHEDULE), "--good-first", "1", "--hold-first-s", "1.5")
    with running_double("misbehaving_server", *faults) as server:
        started = time.monotonic()
        process = start_headless(
            "self_hosted.py",
            tmp_path,
            *("-H", server.url, "--grid", str(grid), "--run-dir", str(tmp_path)),
            *("--warmup-requests", "1", "--requests-per-user", str(len(SCHEDULE) * ROUNDS)),
            *("--request-timeout", str(TIMEOUT_S), "--exit-code-on-error", "0"),
        )
        baseline, peak = None, 0
        while process.poll() is None and time.monotonic() - started < 120:
            try:
                if baseline is None and server.ledger()["received"]:
                    baseline = memory_kib(process.pid)["VmRSS"]  # its first, good answer is held
                peak = memory_kib(process.pid)["VmHWM"]
            except OSError:
                break
            time.sleep(0.05)
        run = finish(process, tmp_path, started)
        served = server.ledger()["faults"]
    classes = run.failure_classes()
    assert baseline is not None, run.describe()
    print(f"served: {served}")
    print(f"failure classes: {classes}")
    print(
        f"Locust process RSS {baseline / 1024:.0f} MiB before the first answer, peak {peak / 1024:.0f} MiB; "
        f"run took {run.seconds:.1f} s"
    )
    assert run.returncode == 0, run.describe()
    assert served == {"ok": 1, **{fault: ROUNDS for fault in SCHEDULE}}
    limit = body_limit(1)
    assert classes == {
        "bad body: not JSON": ROUNDS,
        "connection closed": ROUNDS,
        "bad body: dimension 7, expected 8": ROUNDS,
        "bad body: non-finite embedding values": ROUNDS,
        f"bad body: over {limit:,} bytes": 2 * ROUNDS,
        "timeout": ROUNDS,
    }, run.describe()
    (row,) = run.cells()
    assert (row["planned"], row["completed"], row["succeeded"]) == ("14", "14", "0")
    # Four 50 MB bodies came at the client: none was read past its limit (1.25 MiB).
    assert peak - baseline < 40 * 1024, (baseline, peak)
    records = run.records()
    measured = records[records["warmup"] == 0]
    assert len(measured) == 14 and measured["bytes_received"].max() <= limit
    trickled = measured[measured["failure"] == "timeout"]
    print(f"trickle latencies (ms): {trickled['latency_ms'].round(0).tolist()}")
    assert (
        (trickled["latency_ms"] >= TIMEOUT_S * 1000) & (trickled["latency_ms"] < TIMEOUT_S * 1000 + 1500)
    ).all()
