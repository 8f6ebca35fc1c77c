"""``embed-bench run --backend openai`` against a server that serves only ``/embeddings`` and
``/models`` (as Infinity does): the pre-run check finds both paths and the model, or names every path
it tried and leaves no run directory behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.doubles.process import running_double
from tests.load.runs import locust_env

pytestmark = pytest.mark.usefixtures("spawn")

SINGLE_CELL = ("--batch-size", "2", "--passage-tokens", "16", "-u", "2", "--requests-per-user", "3")


def run(url: str, out: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "embed_bench", "run", "--backend", "openai", "--host", url]
    return subprocess.run(
        [*command, "--out", str(out), *SINGLE_CELL, *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=locust_env(),
    )


def test_the_documented_command_finds_the_embeddings_path_and_the_model(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with running_double("openai_root", "--model", "minilm") as double:
        result = run(double.url, out)
        ledger = double.ledger()
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads((out / "run.json").read_text())
    assert record["model"] == "minilm" and record["status"] == "completed"
    args = record["locust_args"]
    assert args[args.index("--embeddings-path") + 1] == "/embeddings"
    assert "[1/1] b=2 t=16 c=2: 6/6 ok" in result.stdout
    # What the check tried on the way (/v1/models and /v1/embeddings before the root's, /info for
    # the hardware), each a 404; nothing else failed.
    assert ledger["violations"] == ["404 GET /v1/models", "404 POST /v1/embeddings", "404 GET /info"]
    assert ledger["succeeded"] == 1 + 2 * (1 + 3)  # the check's request, warm-ups and measured ones


def test_a_path_that_is_not_there_is_named_and_the_run_directory_is_not_claimed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with running_double("openai_root", "--model", "minilm") as double:
        given = run(double.url, out, "--embeddings-path", "/v1/embeddings", "--model", "minilm")
        wrong_model = run(double.url, out, "--model", "jina-embeddings-v3")
        fixed = run(double.url, out, "--embeddings-path", "/embeddings")  # the rerun needs no --force
    assert given.returncode == 3, given.stderr
    assert "POST /v1/embeddings: HTTP 404" in given.stderr
    assert "pass --embeddings-path" not in given.stderr  # the user chose that path
    assert wrong_model.returncode == 3
    # The model is wrong, not the path: both paths are listed with what they answered.
    assert "POST /v1/embeddings: HTTP 404" in wrong_model.stderr
    assert "POST /embeddings: HTTP 400" in wrong_model.stderr and "Invalid model" in wrong_model.stderr
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads((out / "run.json").read_text())["status"] == "completed"


def test_a_server_that_names_no_model_gets_the_paths_tried(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with running_double("openai_root", "--model", "minilm") as double:
        result = run(double.url + "/nothing", out)
    assert result.returncode == 2
    for tried in ("GET /v1/models: HTTP 404", "GET /models: HTTP 404", "GET /info: HTTP 404"):
        assert tried in result.stderr
    assert "pass --model NAME" in result.stderr
    assert not out.exists()
