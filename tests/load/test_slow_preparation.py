"""A cell whose preparation takes long (128 passages of thousands of tokens per request) neither
stalls the shape nor outlives a stop: the previous cell's users are stopped while it is prepared,
the cell starts with its own users and sends every planned request, and a stop during preparation
ends the run within seconds."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.doubles.process import running_double
from tests.load.runs import finish, start_headless, wait_for, write_grid

pytestmark = pytest.mark.usefixtures("spawn")

KEY = "jina_double_key"
STOP_WITHIN_S = 20  # a bound on the shutdown, not a speed claim: preparing the cell takes longer


def log_lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def first_index(lines: list[str], text: str, after: int = 0) -> int:
    return next(number for number, line in enumerate(lines) if number >= after and text in line)


def test_a_long_preparation_stops_the_last_cells_users_and_starts_its_own(tmp_path: Path) -> None:
    cells = [(2, 1, 16), (2, 128, 2048)]  # the second: 6 bodies of 128 x 2048 tokens
    run_dir, log = tmp_path / "run", tmp_path / "locust.log"
    with running_double("jina_api", "--api-key", KEY) as double:
        started = time.monotonic()
        process = start_headless(
            "jina_api.py", run_dir, "-H", double.url, "--api-key", KEY, "--logfile", str(log), "--model", "jina-embeddings-v3",
            "--grid", str(write_grid(tmp_path / "grid.toml", cells)), "--requests-per-user", "2",
        )  # fmt: skip
        run = finish(process, run_dir, started)
    assert run.returncode == 0, run.describe()
    rows = run.cells()
    assert [(row["cell"], row["planned"], row["completed"], row["succeeded"]) for row in rows] == [
        ("b=1 t=16 c=2", "4", "4", "4"),
        ("b=128 t=2048 c=2", "4", "4", "4"),
    ]
    lines = log_lines(log)
    announced = first_index(lines, "cell 2/2 b=128 t=2048 c=2: preparing payloads")
    stopped = first_index(lines, "Shape test updating to 0 users", announced)
    prepared = first_index(lines, "prepared cell b=128 t=2048 c=2", announced)
    spawned = first_index(lines, "Shape test updating to 2 users", prepared)
    # The shape kept ticking during the preparation: it stopped the first cell's users before the
    # second cell's payloads were ready, and started the second cell's own users after.
    assert announced < stopped < prepared < spawned, "\n".join(lines[announced : spawned + 1])


@pytest.mark.serial  # "within seconds": timed; under -n 2 a busy core made it miss (make test, 2026-12-05)
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stop_during_a_long_preparation_ends_the_run_within_seconds(
    tmp_path: Path, stop_signal: int
) -> None:
    cells = [(1, 1, 16), (2, 128, 8192)]  # the second: 12 bodies of 128 x 8192 tokens, 8 MB each
    run_dir, log = tmp_path / "run", tmp_path / "locust.log"
    with running_double("jina_api", "--api-key", KEY) as double:
        started = time.monotonic()
        process = start_headless(
            "jina_api.py", run_dir, "-H", double.url, "--api-key", KEY, "--logfile", str(log), "--model", "jina-embeddings-v3",
            "--grid", str(write_grid(tmp_path / "grid.toml", cells)),
        )  # fmt: skip
        assert wait_for(lambda: any("cell 2/2 b=128" in line for line in log_lines(log)), 120)
        time.sleep(1)  # well into the preparation
        signalled = time.monotonic()
        process.send_signal(stop_signal)
        run = finish(process, run_dir, started)
        stopping_s = time.monotonic() - signalled
    lines = log_lines(log)
    assert not any("prepared cell b=128" in line for line in lines), "the stop came too late to test"
    assert stopping_s < STOP_WITHIN_S, run.describe()
    rows = run.cells()
    assert [(row["cell"], row["completed"]) for row in rows] == [("b=1 t=16 c=1", "5")]
