"""Pure parts of `embed-bench run`: secrets out of the command line, --force clearing a directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from embed_bench.commands.run import clear_run_files, split_secrets


@pytest.mark.parametrize(
    "args",
    [
        ["--api-key", "K3Y", "--model", "m"],
        ["--api-key=K3Y", "--model", "m"],
        ["--api-ke", "K3Y", "--model", "m"],  # Locust's parser takes abbreviations: so must we
        ["--api=K3Y", "--model", "m"],
    ],
)
def test_the_api_key_leaves_the_command_line_for_the_environment(args: list[str]) -> None:
    kept, env = split_secrets(args)
    assert kept == ["--model", "m"] and env == {"LOCUST_API_KEY": "K3Y"}


def test_options_that_only_look_alike_stay() -> None:
    kept, env = split_secrets(["--a", "1", "--aws-region", "us-east-1"])
    assert kept == ["--a", "1", "--aws-region", "us-east-1"] and env == {}


def test_force_clears_an_earlier_runs_files_only(tmp_path: Path) -> None:
    names = [
        "run.json",
        "cells.csv",
        "locust_stats.csv",
        "locust_failures.csv",
        "locust.log",
        "locust-console.log",
        "notes.txt",
    ]
    for name in names:
        (tmp_path / name).write_text("old")
    clear_run_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


PLAN_PROBE = """
import sys
from embed_bench.commands import run
args = run.build_parser().parse_args(["--backend", "self-hosted", "--host", "http://127.0.0.1:1", "--out", sys.argv[1]])
plan = run.plan_run(args, ["-u", "3", "--batch-size", "4", "--repeats", "2"])
print(plan.grid.name, [cell.name for cell in plan.grid.cells], plan.repeats, plan.steps)
print("locust" in sys.modules, "gevent" in sys.modules)
"""


def test_without_grid_the_plan_is_the_single_cell_of_the_options_and_nothing_is_patched(
    tmp_path: Path,
    spawn: None,
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PLAN_PROBE, str(tmp_path / "run")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    plan_line, imports_line = result.stdout.splitlines()
    assert plan_line == "single ['b=4 t=128 c=3'] 2 2"
    # Locust's parser checked the options in a child process: this one is not monkey-patched.
    assert imports_line == "False False"
    assert not (tmp_path / "run").exists()
