"""Pure parts of `embed-bench run`: secrets out of the command line, --force clearing a directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from embed_bench.run import clear_run_files, split_secrets


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
