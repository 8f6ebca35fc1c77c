"""Request records that cannot be written, through real `embed-bench run` walks against the Jina API
contract double: the master's recorder keeps the rows and retries until the file can be written
(nothing lost), and rows that finally cannot be written mark the run partial with the count lost on
the console, in run.json and in the report.

The fault: ``requests.csv.gz`` is a symlink to a path in a folder that does not exist, made as soon
as run.json appears (before Locust starts): every append fails with ENOENT until the folder is made."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from embed_bench.core.contract import RUN_FILES
from embed_bench.core.records import count_measured_records
from tests.doubles.process import running_double
from tests.load.runs import locust_env, wait_for, write_grid

pytestmark = pytest.mark.usefixtures("spawn")

KEY = "jina_double_key"
CELLS = [(2, 1, 16), (2, 2, 16), (2, 4, 16)]
REQUESTS_PER_USER = 4
MEASURED = sum(c * REQUESTS_PER_USER for c, _, _ in CELLS)  # 24
WARMUPS = sum(c for c, _, _ in CELLS)  # one per user: 6


def start_run(url: str, out: Path, grid: Path) -> subprocess.Popen[str]:
    command = [
        *(sys.executable, "-m", "embed_bench", "run", "--backend", "openai", "--host", url),
        *("--model", "jina-embeddings-v3", "--api-key", KEY, "--out", str(out), "--grid", str(grid)),
        *("--requests-per-user", str(REQUESTS_PER_USER), "--warmup-requests", "1"),
    ]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=locust_env()
    )


def break_record_file(out: Path, folder: str) -> Path:
    """Point requests.csv.gz into ``out/folder``, which does not exist yet; returns the folder."""
    assert wait_for(lambda: (out / RUN_FILES.run_json).exists(), timeout_s=60), "the run did not start"
    (out / RUN_FILES.requests).symlink_to(out / folder / RUN_FILES.requests)
    return out / folder


def log(out: Path) -> str:
    path = out / RUN_FILES.log
    return path.read_text(errors="replace") if path.exists() else ""


def test_rows_are_kept_while_the_file_cannot_be_written_and_written_once_it_can(tmp_path: Path) -> None:
    grid = write_grid(tmp_path / "grid.toml", CELLS)
    out = tmp_path / "run"
    with running_double("jina_api", "--api-key", KEY, "--latency-ms", "150") as double:
        process = start_run(double.url, out, grid)
        folder = break_record_file(out, "later")
        failed = wait_for(lambda: "could not append" in log(out), timeout_s=90)
        folder.mkdir()  # the path can be written again
        stdout, stderr = process.communicate(timeout=120)
    print(stdout)
    attempts = log(out).count("could not append")
    print(
        f"failed appends before the fix: {attempts}; records written: {count_measured_records(out / RUN_FILES.requests)}"
    )
    assert failed and attempts >= 1, log(out)[-2000:]
    assert process.returncode == 0, stderr
    assert "they are kept and tried again" in log(out)
    assert "nothing lost" in log(out) and "LOST" not in log(out)
    counts = count_measured_records(out / RUN_FILES.requests)
    assert sum(counts.values()) == MEASURED  # every row survived the failed appends
    run = json.loads((out / RUN_FILES.run_json).read_text())
    assert run["status"] == "completed" and "records_lost" not in run


def test_rows_that_finally_cannot_be_written_mark_the_run_partial_with_the_count(tmp_path: Path) -> None:
    grid = write_grid(tmp_path / "grid.toml", CELLS)
    out = tmp_path / "run"
    with running_double("jina_api", "--api-key", KEY, "--latency-ms", "50") as double:
        process = start_run(double.url, out, grid)
        break_record_file(out, "never")
        stdout, stderr = process.communicate(timeout=120)
    print(stdout)
    assert process.returncode == 0, stderr
    lost_line = (
        f"request records LOST: {MEASURED} completed measured request(s) have no row in requests.csv.gz"
    )
    assert lost_line in stdout
    run = json.loads((out / RUN_FILES.run_json).read_text())
    print("run.json:", {key: run[key] for key in ("status", "records_lost", "records_lost_by_cell")})
    assert run["status"] == f"partial ({MEASURED} request record(s) lost)"
    assert run["records_lost"] == MEASURED
    assert run["records_lost_by_cell"] == {f"b={b} t={t} c={c}": c * REQUESTS_PER_USER for c, b, t in CELLS}
    # The recorder's own account: every row (warm-ups too), after its last attempts at quit.
    assert f"request records LOST: {MEASURED + WARMUPS} row(s) ({MEASURED} measured" in log(out)
    report = subprocess.run(
        [sys.executable, "-m", "embed_bench", "report", str(out), "--out", str(out / "report")],
        capture_output=True,
        text=True,
        timeout=120,
        env=locust_env(),
    )
    print(report.stdout)
    assert report.returncode == 0, report.stderr
    flag = f"is a PARTIAL run: run.json status 'partial ({MEASURED} request record(s) lost)'"
    assert flag in report.stdout
    markdown = (out / "report" / "report.md").read_text()
    assert flag in markdown and f"run.json records_lost {MEASURED}" in markdown
