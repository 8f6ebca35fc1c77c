"""Run real Locust processes (headless, distributed, web UI) and read back the run directory."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from embed_bench.core.contract import REQUEST_RECORD_COLUMNS, RUN_FILES, WARMUP_PREFIX

REPO = Path(__file__).resolve().parents[2]
LOCUST = str(Path(sys.executable).with_name("locust"))
LOCUSTFILES = REPO / "locustfiles"
RUN_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_grid(path: Path, cells: Iterable[tuple[int, int, int]]) -> Path:
    """A grid TOML file with explicit cells given as (concurrency, batch size, passage tokens)."""
    tables = [f"[[cells]]\nconcurrency = {c}\nbatch_size = {b}\npassage_tokens = {t}\n" for c, b, t in cells]
    path.write_text("\n".join(tables))
    return path


def locust_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment: no real AWS or Jina credentials leak in from the machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JINA_", "LOCUST_"))}
    env.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONPATH=str(REPO),
    )
    env.update(extra or {})
    return env


@dataclass
class LocustRun:
    run_dir: Path
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def stats(self) -> dict[str, dict[str, str]]:
        return {row["Name"]: row for row in _rows(self.run_dir / "locust_stats.csv")}

    def failures(self) -> list[dict[str, str]]:
        return _rows(self.run_dir / "locust_failures.csv")

    def cells(self) -> list[dict[str, str]]:
        return _rows(self.run_dir / "cells.csv")

    def records(self):
        """``requests.csv.gz`` as pandas reads it (imported here: only record tests need pandas)."""
        import pandas

        return pandas.read_csv(self.run_dir / RUN_FILES.requests, keep_default_na=False, na_values=[""])

    def failure_classes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.failures():
            counts[row["Error"]] = counts.get(row["Error"], 0) + int(row["Occurrences"])
        return counts

    def describe(self) -> str:
        return (
            f"exit {self.returncode} after {self.seconds:.1f} s\n--- stderr tail ---\n{self.stderr[-3000:]}"
        )


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


def locust_command(locustfile: str, *args: str) -> list[str]:
    return [LOCUST, "-f", str(LOCUSTFILES / locustfile), *args]


def run_headless(
    locustfile: str,
    run_dir: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout_s: float = RUN_TIMEOUT_S,
) -> LocustRun:
    """``locust --headless --csv RUN_DIR/locust ...`` to completion (bounded by ``timeout_s``)."""
    command = locust_command(
        locustfile, "--headless", "--only-summary", "--csv", str(run_dir / "locust"), *args
    )
    started = time.monotonic()
    result = subprocess.run(
        command, cwd=REPO, env=locust_env(env), capture_output=True, text=True, timeout=timeout_s
    )
    return LocustRun(run_dir, result.returncode, result.stdout, result.stderr, time.monotonic() - started)


def run_master_and_workers(
    locustfile: str, run_dir: Path, workers: int, *args: str, env: Mapping[str, str] | None = None
) -> LocustRun:
    """A headless master and ``workers`` separate worker processes on a free local port."""
    port = str(free_port())
    master_args = ("--master", "--expect-workers", str(workers), "--master-bind-host", "127.0.0.1")
    master = subprocess.Popen(
        locust_command(
            locustfile,
            "--headless",
            "--only-summary",
            "--csv",
            str(run_dir / "locust"),
            *master_args,
            "--master-bind-port",
            port,
            *args,
        ),
        cwd=REPO,
        env=locust_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    worker_processes = [
        subprocess.Popen(
            locust_command(locustfile, "--worker", "--master-host", "127.0.0.1", "--master-port", port),
            cwd=REPO,
            env=locust_env(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    started = time.monotonic()
    try:
        stdout, stderr = master.communicate(timeout=RUN_TIMEOUT_S)
        for worker in worker_processes:
            worker.wait(timeout=30)
    finally:
        for process in [master, *worker_processes]:
            if process.poll() is None:
                process.kill()
                process.wait()
    return LocustRun(run_dir, master.returncode, stdout, stderr, time.monotonic() - started)


def start_headless(
    locustfile: str, run_dir: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """Like ``run_headless`` but returns at once, for tests that act while the run goes on."""
    command = locust_command(
        locustfile, "--headless", "--only-summary", "--csv", str(run_dir / "locust"), *args
    )
    return subprocess.Popen(
        command, cwd=REPO, env=locust_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen[str], run_dir: Path, started: float) -> LocustRun:
    try:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return LocustRun(run_dir, process.returncode, stdout, stderr, time.monotonic() - started)


def wait_for(predicate, timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return False


def expected_counts(
    cells: Iterable[tuple[int, int, int]], requests_per_user: int, warmup_requests: int
) -> dict[str, int]:
    """Request count per request name when every user sends all of its requests."""
    counts: dict[str, int] = {}
    for c, b, t in cells:
        counts[f"b={b} t={t} c={c}"] = c * requests_per_user
        if warmup_requests:
            counts[f"warmup b={b} t={t} c={c}"] = c * warmup_requests
    return counts


def assert_complete_run(
    run: LocustRun,
    cells: Iterable[tuple[int, int, int]],
    requests_per_user: int,
    warmup_requests: int,
    tokens_per_request,
) -> None:
    """Every cell under its name with its expected count, 100% success, tokens/request as content
    size, and a finished row per cell in cells.csv."""
    cells = list(cells)
    stats = run.stats()
    counts = expected_counts(cells, requests_per_user, warmup_requests)
    assert {name: int(stats[name]["Request Count"]) for name in counts if name in stats} == counts, (
        run.describe()
    )
    assert set(stats) == {*counts, "Aggregated"}, run.describe()
    assert all(stats[name]["Failure Count"] == "0" for name in stats), run.failures()
    for c, b, t in cells:
        assert float(stats[f"b={b} t={t} c={c}"]["Average Content Size"]) == tokens_per_request(b, t)
    rows = run.cells()
    assert [row["cell"] for row in rows] == [f"b={b} t={t} c={c}" for c, b, t in cells]
    for row, (c, _, _) in zip(rows, cells, strict=True):
        assert row["users"] == str(c)
        assert row["end"] and float(row["start"]) < float(row["end"])
        planned = str(c * requests_per_user)  # a master counts them once its workers' reports are in
        assert (row["planned"], row["completed"], row["succeeded"], row["failures"]) == (
            planned,
            planned,
            planned,
            "",
        )
    assert run.returncode == 0, run.describe()


def assert_records_match_stats(run: LocustRun) -> None:
    """``requests.csv.gz`` holds exactly the requests Locust counted: per request name the same count,
    failures by class and mean latency (Locust sums unrounded times), one row per request (no
    duplicates), the client's token count, and closed-loop timing (planned = sent, never late)."""
    records = run.records()
    assert tuple(records.columns) == REQUEST_RECORD_COLUMNS
    names = records["cell"].where(records["warmup"] == 0, WARMUP_PREFIX + records["cell"])
    stats = {name: row for name, row in run.stats().items() if name != "Aggregated"}
    assert names.value_counts().to_dict() == {name: int(row["Request Count"]) for name, row in stats.items()}
    for name, group in records.groupby(names):
        assert (group["ok"] == 0).sum() == int(stats[name]["Failure Count"]), name
        assert group["latency_ms"].mean() == pytest.approx(float(stats[name]["Average Response Time"]))
    failures = {(row["Name"], row["Error"]): int(row["Occurrences"]) for row in run.failures()}
    failed = records[records["ok"] == 0]
    assert failed.groupby([names[failed.index], failed["failure"]]).size().to_dict() == failures
    assert not records.duplicated(["repeat", "worker", "user", "cell", "index"]).any()
    assert (records["tokens_client"] == records["batch_size"] * records["passage_tokens"]).all()
    assert (records["planned_at"] == records["sent_at"]).all()
    assert (records["lag_ms"] == 0).all() and (records["dropped"] == 0).all()
    latency_from_clock = (records["completed_at"] - records["sent_at"]) * 1000
    assert ((latency_from_clock - records["latency_ms"]).abs() < 0.01).all()
    assert (records.loc[records["ok"] == 1, "status"] == 200).all()
    assert records.loc[records["ok"] == 1, "failure"].isna().all()


@dataclass
class WebUi:
    url: str
    process: subprocess.Popen[str]
    output: str = ""


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # it answers (401 behind a login)
    except OSError:
        return False


@contextlib.contextmanager
def web_ui_locust(
    locustfile: str,
    host: str,
    run_dir: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    workers: int = 0,
    worker_env: Mapping[str, str] | None = None,
) -> Iterator[WebUi]:
    """Locust with its web UI on a free loopback port (``--csv`` into ``run_dir``; ``args`` and
    ``env`` added), up and ready for a start form; with ``workers``, a master and that many worker
    processes (``worker_env``, no ``-H``) connected. Stopped on exit, with the web UI's output kept in
    ``.output`` for the assertions' messages."""
    port = free_port()
    role: tuple[str, ...] = ()
    if workers:
        master_port = str(free_port())
        role = ("--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", master_port)
    web = WebUi(
        f"http://127.0.0.1:{port}",
        subprocess.Popen(
            locust_command(locustfile, "--web-host", "127.0.0.1", "--web-port", str(port),
                           "-H", host, "--csv", str(run_dir / "locust"), *role, *args),
            cwd=REPO, env=locust_env(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ),
    )  # fmt: skip
    worker_processes = [
        subprocess.Popen(
            locust_command(locustfile, "--worker", "--master-host", "127.0.0.1", "--master-port", master_port),
            cwd=REPO, env=locust_env(worker_env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]  # fmt: skip
    try:
        assert wait_for(lambda: _answers(web.url) or web.process.poll() is not None, timeout_s=30)
        assert web.process.poll() is None, "Locust's web UI did not come up"
        if workers:
            assert wait_for(lambda: _worker_count(web.url) == workers, timeout_s=60), (
                "workers did not connect"
            )
        yield web
    finally:
        for worker in worker_processes:
            worker.terminate()
        web.process.terminate()
        web.output, _ = web.process.communicate(timeout=30)
        for worker in worker_processes:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def _worker_count(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/worker-count", timeout=2) as response:
            return int(json.loads(response.read())["worker_count"])
    except (OSError, ValueError, KeyError):
        return -1
