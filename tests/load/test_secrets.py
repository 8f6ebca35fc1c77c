"""API keys and AWS secrets never reach the run directory or the logs, even with failures logged."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.doubles.process import running_double
from tests.load.runs import LocustRun, run_headless, write_grid

pytestmark = pytest.mark.usefixtures("spawn")

JINA_KEY = "jina_SECRETfake7f3a9c41d2e8b6057"
AWS_SECRET = "SECRETawsFAKEwJalrXUtnFEMIK7MDENGbPxRfiCY"
AWS_TOKEN = "SECRETsessionTOKENfakeIQoJb3JpZ2luX2VjE"
CELLS = [(2, 2, 16)]
KEEPSAKES = ("--csv-full-history", "--loglevel", "DEBUG")  # the most the run can write


def leaks(run: LocustRun, secrets: tuple[str, ...]) -> list[str]:
    found = [f"{name} in stdout/stderr" for name in secrets if name in run.stdout + run.stderr]
    for path in sorted(Path(run.run_dir).rglob("*")):
        if path.is_file():
            content = path.read_bytes()
            found += [f"{secret} in {path.name}" for secret in secrets if secret.encode() in content]
    return found


def test_the_api_key_is_never_written(tmp_path):
    run_dir = tmp_path / "run"
    grid = write_grid(tmp_path / "grid.toml", CELLS)
    with running_double("jina_api", "--api-key", JINA_KEY, "--fault", "rate_tokens:3") as double:
        run = run_headless(
            "jina_api.py", run_dir, "-H", double.url, "--api-key", JINA_KEY, "--grid", str(grid), "--model", "jina-embeddings-v3",
            "--logfile", str(run_dir / "locust.log"), "--html", str(run_dir / "report.html"), *KEEPSAKES,
        )  # fmt: skip
        ledger = double.ledger()
    assert ledger["succeeded"] > 0 and ledger["violations"] == []  # the key was really used
    assert run.failure_classes() == {"HTTP 429 RATE_TOKEN_LIMIT_EXCEEDED": ledger["faults"]["rate_tokens"]}
    assert {path.name for path in run_dir.iterdir()} >= {"locust.log", "report.html", "cells.csv"}
    assert leaks(run, ("b=2 t=16 c=2",))  # the scan does see what the run wrote
    assert leaks(run, (JINA_KEY,)) == []


def test_aws_secrets_are_never_written(tmp_path):
    run_dir = tmp_path / "run"
    grid = write_grid(tmp_path / "grid.toml", CELLS)
    env = {
        "AWS_ACCESS_KEY_ID": "AKIDLEAKTEST",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "AWS_SESSION_TOKEN": AWS_TOKEN,
    }
    double_args = ("--access-key", "AKIDLEAKTEST", "--secret-key", AWS_SECRET, "--session-token", AWS_TOKEN)
    with running_double("sagemaker", *double_args, "--fault", "model_error:3") as double:
        run = run_headless(
            "sagemaker.py", run_dir, "-H", double.url, "--sagemaker-endpoint", "jina-v3", "--aws-region",
            "us-east-1", "--grid", str(grid), "--logfile", str(run_dir / "locust.log"), *KEEPSAKES, env=env,
        )  # fmt: skip
        ledger = double.ledger()
    assert ledger["succeeded"] > 0 and ledger["violations"] == []  # signed with exactly these secrets
    assert run.failure_classes() == {
        "HTTP 424 ModelError: container returned 500": ledger["faults"]["model_error"]
    }
    assert leaks(run, ("b=2 t=16 c=2",))  # the scan does see what the run wrote
    assert leaks(run, (AWS_SECRET, AWS_TOKEN)) == []
