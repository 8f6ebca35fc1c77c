"""A long preparation seen through a real ``embed-bench run`` against the real server (its forward
pass instant, ``--model null:8``): off a terminal, plain progress lines (payloads built of planned,
time, no ANSI codes, no carriage returns); on a terminal (a pseudo-terminal), the live line; and
the master's ``progress.json`` says how the walk ended."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from target_server.launcher import running_target_server
from tests.load.runs import REPO, locust_env, write_grid

pytestmark = pytest.mark.usefixtures("spawn")

SERVER = ("--model", "null:8", "--no-warmup")
# The second cell: 2 users x (1 warm-up + 2 measured) = 6 bodies of 128 passages x 2048 tokens, 0.6 s
# of tokenizing each on this machine (4 s in all, over the 1 s progress interval); the first is quick.
CELLS = [(1, 1, 16), (2, 128, 2048)]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PLAIN = re.compile(
    r"^cell 2/2 b=128 t=2048 c=2: preparing, payloads built (\d+)/6 \(\d+%\), \d+:\d\d elapsed"
    r"(, about \d+:\d\d left)?$"
)


def command(url: str, out: Path, grid: Path) -> list[str]:
    return [
        sys.executable, "-m", "embed_bench", "run", "--backend", "self-hosted", "--host", url,
        "--out", str(out), "--grid", str(grid), "--requests-per-user", "2", "--progress-interval", "1",
    ]  # fmt: skip


def test_off_a_terminal_a_long_preparation_prints_plain_progress_lines(tmp_path: Path) -> None:
    grid, out = write_grid(tmp_path / "grid.toml", CELLS), tmp_path / "run"
    with running_target_server(*SERVER) as url:
        result = subprocess.run(
            command(url, out, grid), capture_output=True, text=True, timeout=240, env=locust_env(), cwd=REPO
        )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\x1b" not in result.stdout and "\r" not in result.stdout
    built = [int(match[1]) for line in result.stdout.splitlines() if (match := PLAIN.match(line))]
    assert built, result.stdout  # at least one line while the bodies were built
    assert built == sorted(built) and built[-1] <= 6
    progress = json.loads((out / "progress.json").read_text())
    assert (progress["phase"], progress["step"], progress["steps"]) == ("finished", 2, 2)


def test_on_a_terminal_the_preparation_shows_a_live_line(tmp_path: Path) -> None:
    grid, out = write_grid(tmp_path / "grid.toml", CELLS), tmp_path / "run"
    with running_target_server(*SERVER) as url:
        controller, terminal = pty.openpty()
        process = subprocess.Popen(
            command(url, out, grid), stdin=terminal, stdout=terminal, stderr=terminal,
            env=locust_env({"COLUMNS": "160", "TERM": "xterm-256color"}), cwd=REPO, close_fds=True,
        )  # fmt: skip
        os.close(terminal)
        shown = bytearray()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the process closed its end
                break
            if not chunk:
                break
            shown += chunk
        returncode = process.wait(timeout=30)
        os.close(controller)
    text = shown.decode(errors="replace")
    assert returncode == 0, text[-3000:]
    assert "\x1b[" in text  # the live line is drawn and redrawn in place
    plain = ANSI.sub("", text)
    assert re.search(r"cell 2/2 b=128 t=2048 c=2 preparing \S+ payloads built \d+/6 \(\d+%\)", plain), plain[
        -3000:
    ]
    assert "run directory:" in plain
