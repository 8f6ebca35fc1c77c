"""`embed-bench run` refuses bad starts with a clear message, a non-zero exit, and nothing written."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from target_server.launcher import free_port

AWS_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "JINA_API_KEY",
    "LOCUST_API_KEY",
)
AWS_KEYS = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"}


def embed_bench(
    command_line: str, tmp: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``embed-bench`` with a command line of space-separated words, and no credentials from this machine."""
    clean = {k: v for k, v in os.environ.items() if k not in AWS_VARS}
    clean |= {
        "AWS_CONFIG_FILE": str(tmp / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-creds"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return subprocess.run(
        [sys.executable, "-m", "embed_bench", *command_line.split()],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean | (env or {}),
    )


def assert_refused(result: subprocess.CompletedProcess, code: int, message: str, out: Path) -> None:
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert not out.exists(), "a refused run must not write its directory"


def test_target_not_reachable(tmp_path: Path) -> None:
    out, url = tmp_path / "run", f"http://127.0.0.1:{free_port()}"
    result = embed_bench(f"run --backend self-hosted --host {url} --out {out} --ready-timeout 1", tmp_path)
    assert_refused(result, 3, f"cannot reach {url} (connection refused)", out)


def test_unknown_backend(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = embed_bench(f"run --backend tei --host http://127.0.0.1:1 --out {out}", tmp_path)
    assert_refused(result, 2, "argument --backend: invalid choice: 'tei'", out)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[[cells]]\nconcurrency = 1\nbatch_size = 1\n", "missing ['passage_tokens']"),
        ("[[cells]\n", "not valid TOML"),
        (
            "[[cells]]\nconcurrency = 0\nbatch_size = 1\npassage_tokens = 8\n",
            "concurrency must be a positive integer",
        ),
    ],
)
def test_bad_grid_file(tmp_path: Path, content: str, message: str) -> None:
    grid, out = tmp_path / "grid.toml", tmp_path / "run"
    grid.write_text(content)
    result = embed_bench(
        f"run --backend self-hosted --host http://127.0.0.1:1 --grid {grid} --out {out}", tmp_path
    )
    assert_refused(result, 2, "error: bad grid: ", out)
    assert message in result.stderr


def test_unknown_grid_name(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = embed_bench(
        f"run --backend self-hosted --host http://127.0.0.1:1 --grid huge --out {out}", tmp_path
    )
    assert_refused(result, 2, "unknown grid 'huge'", out)


def test_missing_jina_key(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = embed_bench(f"run --backend jina --out {out}", tmp_path)
    assert_refused(result, 2, "the Jina API needs a key: set JINA_API_KEY", out)


def test_missing_sagemaker_endpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = embed_bench(
        f"run --backend sagemaker --out {out}", tmp_path, {**AWS_KEYS, "AWS_DEFAULT_REGION": "us-east-1"}
    )
    assert_refused(result, 2, "SageMaker needs an endpoint name: pass --sagemaker-endpoint", out)


def test_missing_aws_credentials(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = embed_bench(
        f"run --backend sagemaker --sagemaker-endpoint jina-v3 --aws-region us-east-1 --out {out}", tmp_path
    )
    assert_refused(result, 2, "no AWS credentials found", out)


def test_missing_aws_region(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = embed_bench(
        f"run --backend sagemaker --sagemaker-endpoint jina-v3 --out {out}", tmp_path, AWS_KEYS
    )
    assert_refused(result, 2, "no AWS region: pass --aws-region REGION or set AWS_DEFAULT_REGION", out)


def test_run_directory_that_holds_a_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text("{}")
    result = embed_bench(f"run --backend self-hosted --host http://127.0.0.1:1 --out {out}", tmp_path)
    assert result.returncode == 2 and "already holds a run" in result.stderr
    assert (out / "run.json").read_text() == "{}"


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = embed_bench(f"serve --host 127.0.0.1 --port {port}", tmp_path)
    assert result.returncode != 0
    assert f"port {port} on 127.0.0.1 is already in use; pick another with --port" in result.stderr


def test_unknown_command(tmp_path: Path) -> None:
    result = embed_bench("bench", tmp_path)
    assert result.returncode == 2 and "unknown command 'bench'" in result.stderr


def test_demo_rejects_unknown_modes(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = embed_bench(f"demo --modes continuous,dynamic --out {out}", tmp_path)
    assert_refused(result, 2, "--modes takes a comma-separated subset of", out)
