"""`embed-bench run` refuses bad starts with a clear message, a non-zero exit, and nothing written."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from embed_bench.commands import cli
from target_server.launcher import free_port
from tests.support.json_server import json_server

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


def clean_env(tmp: Path) -> dict[str, str]:
    """This machine's environment without its credentials."""
    clean = {k: v for k, v in os.environ.items() if k not in AWS_VARS}
    return clean | {
        "AWS_CONFIG_FILE": str(tmp / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-creds"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


Cli = Callable[..., CliResult]


@pytest.fixture
def embed_bench(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """``embed-bench`` called in this process (its ``main``, as the console script calls it), with a
    command line of space-separated words and no credentials from this machine. In process: these
    tests check messages, and a Python start per message made them the slowest of the fast tier."""

    def run(command_line: str, tmp: Path, env: dict[str, str] | None = None) -> CliResult:
        for name in AWS_VARS:
            monkeypatch.delenv(name, raising=False)
        for name, value in (clean_env(tmp) | (env or {})).items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        try:
            code = cli.main(command_line.split())
        except SystemExit as exit_:  # argparse's usage errors, or a message the interpreter would print
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            if isinstance(exit_.code, str):
                print(exit_.code, file=sys.stderr)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def assert_refused(result: CliResult, code: int, message: str, out: Path) -> None:
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert not out.exists(), "a refused run must not write its directory"


def health_server(status: int, body: dict) -> contextlib.AbstractContextManager[str]:
    """A server whose every GET answers ``status`` with ``body``: a bundled server as /health sees it."""
    return json_server(lambda path: (status, body))


def test_nothing_listening_is_reported_in_seconds_not_after_the_ready_timeout(
    tmp_path: Path, embed_bench: Cli, spawn: None
) -> None:
    out, url = tmp_path / "run", f"http://127.0.0.1:{free_port()}"
    # The default --ready-timeout is 300 s; embed_bench() gives up after 120 s, so this cannot pass
    # by waiting it out.
    result = embed_bench(f"run --backend self-hosted --host {url} --out {out}", tmp_path)
    assert_refused(result, 3, f"cannot reach {url} (Connection refused) after ", out)
    assert "waiting up to" not in result.stderr


def test_a_host_that_does_not_resolve_says_so(tmp_path: Path, embed_bench: Cli, spawn: None) -> None:
    out = tmp_path / "run"
    result = embed_bench(
        f"run --backend openai --host http://no-such-host.invalid:8000 --model m --out {out}", tmp_path
    )
    assert_refused(result, 3, "cannot resolve 'no-such-host.invalid'", out)


def test_a_failed_model_load_is_reported_at_once_with_the_servers_reason(
    tmp_path: Path, embed_bench: Cli, spawn: None
) -> None:
    out = tmp_path / "run"
    reason = "failed: OSError: no model at /models/missing"
    with health_server(503, {"status": reason}) as url:
        result = embed_bench(f"run --backend self-hosted --host {url} --out {out}", tmp_path)
    assert_refused(result, 3, f"{url}/health reports {reason}", out)
    assert "waiting up to" not in result.stderr


def test_ctrl_c_while_waiting_for_a_loading_server_prints_no_traceback(tmp_path: Path, spawn: None) -> None:
    out = tmp_path / "run"
    with health_server(503, {"status": "loading"}) as url:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "embed_bench",
                "run",
                "--backend",
                "self-hosted",
                "--host",
                url,
                "--out",
                str(out),
            ],
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(tmp_path),
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        assert process.stderr is not None
        assert "waiting up to 300 s" in process.stderr.readline()  # it waits for a loading server
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "interrupted before the run started; nothing was written" in stderr
    assert "Traceback" not in stderr and not out.exists()


def test_a_typo_in_a_passed_through_option_fails_at_once_with_locusts_suggestion(
    tmp_path: Path, embed_bench: Cli, spawn: None
) -> None:
    out = tmp_path / "run"
    result = embed_bench(
        f"run --backend self-hosted --host http://127.0.0.1:1 --out {out} --reqests-per-user 2", tmp_path
    )
    assert_refused(result, 2, "unrecognized arguments: --reqests-per-user 2", out)
    assert "Did you mean '--requests-per-user'?" in result.stderr


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--requests-per-user 0", "--requests-per-user must be at least 1"),
        ("--repeats 0", "--repeats must be at least 1"),
        ("--max-failure-pct 150", "--max-failure-pct takes a percentage from 0 to 100"),
        ("--tokenizer ./missing/tokenizer.json", "tokenizer file not found: ./missing/tokenizer.json"),
        ("--tokenizer example-org/uncached", "is not in the local cache and HF_HUB_OFFLINE is set"),
        ("--request-rate 0", "--request-rate must be a positive number"),
        ("--request-rate 5 --arrival bursty", "--arrival must be poisson or constant"),
        ("--request-rate 5 --max-in-flight 0", "--max-in-flight must be at least 1"),
        ("--request-rate 5 --cell-duration -1", "--cell-duration must be a positive number"),
        ("--grid capacity", "--grid capacity needs a target: --slo-p95-ms"),
        ("--grid capacity --slo-p95-ms 200 --slo-success-pct 101", "--slo-success-pct is a percentage"),
        ("--grid quick --request-rate 5", "give rates in the grid file's request_rate"),
    ],
)
def test_bad_option_values_fail_before_anything_starts(
    tmp_path: Path, option: str, message: str, embed_bench: Cli, spawn: None
) -> None:
    out = tmp_path / "run"
    result = embed_bench(
        f"run --backend self-hosted --host http://127.0.0.1:1 --out {out} {option}",
        tmp_path,
        {"HF_HUB_OFFLINE": "1"},
    )
    assert_refused(result, 2, message, out)
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_aws_profile_is_one_line(tmp_path: Path, embed_bench: Cli) -> None:
    out = tmp_path / "run"
    result = embed_bench(
        f"run --backend sagemaker --sagemaker-endpoint jina-v3 --aws-region us-east-1 --out {out}",
        tmp_path,
        {"AWS_PROFILE": "no-such-profile"},
    )
    assert_refused(result, 2, "no-such-profile", out)
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_demo_refuses_a_directory_that_is_not_an_earlier_demo(tmp_path: Path, embed_bench: Cli) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = embed_bench(f"demo --out {out}", tmp_path)
    assert result.returncode == 2 and "holds files that are not an earlier demo" in result.stderr
    assert [path.name for path in out.iterdir()] == ["notes.txt"]


def test_unknown_backend(tmp_path: Path, embed_bench: Cli) -> None:
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
def test_bad_grid_file(tmp_path: Path, content: str, message: str, embed_bench: Cli, spawn: None) -> None:
    grid, out = tmp_path / "grid.toml", tmp_path / "run"
    grid.write_text(content)
    result = embed_bench(
        f"run --backend self-hosted --host http://127.0.0.1:1 --grid {grid} --out {out}", tmp_path
    )
    assert_refused(result, 2, "error: bad grid: ", out)
    assert message in result.stderr


def test_unknown_grid_name(tmp_path: Path, embed_bench: Cli, spawn: None) -> None:
    out = tmp_path / "run"
    result = embed_bench(
        f"run --backend self-hosted --host http://127.0.0.1:1 --grid huge --out {out}", tmp_path
    )
    assert_refused(result, 2, "unknown grid 'huge'", out)


def test_missing_jina_key(tmp_path: Path, embed_bench: Cli) -> None:
    out = tmp_path / "run"
    result = embed_bench(f"run --backend jina --out {out}", tmp_path)
    assert_refused(result, 2, "the Jina API needs a key: set JINA_API_KEY", out)


def test_missing_sagemaker_endpoint(tmp_path: Path, embed_bench: Cli) -> None:
    out = tmp_path / "run"
    result = embed_bench(
        f"run --backend sagemaker --out {out}", tmp_path, {**AWS_KEYS, "AWS_DEFAULT_REGION": "us-east-1"}
    )
    assert_refused(result, 2, "SageMaker needs an endpoint name: pass --sagemaker-endpoint", out)


def test_missing_aws_credentials(tmp_path: Path, embed_bench: Cli) -> None:
    out = tmp_path / "run"
    result = embed_bench(
        f"run --backend sagemaker --sagemaker-endpoint jina-v3 --aws-region us-east-1 --out {out}", tmp_path
    )
    assert_refused(result, 2, "no AWS credentials found", out)


def test_missing_aws_region(tmp_path: Path, embed_bench: Cli) -> None:
    out = tmp_path / "run"
    result = embed_bench(
        f"run --backend sagemaker --sagemaker-endpoint jina-v3 --out {out}", tmp_path, AWS_KEYS
    )
    assert_refused(result, 2, "no AWS region: pass --aws-region REGION or set AWS_DEFAULT_REGION", out)


def test_run_directory_that_holds_a_run(tmp_path: Path, embed_bench: Cli, spawn: None) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text("{}")
    result = embed_bench(f"run --backend self-hosted --host http://127.0.0.1:1 --out {out}", tmp_path)
    assert result.returncode == 2 and "already holds a run" in result.stderr
    assert (out / "run.json").read_text() == "{}"


def test_port_in_use(tmp_path: Path, embed_bench: Cli, spawn: None) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = embed_bench(f"serve --host 127.0.0.1 --port {port}", tmp_path)
    assert result.returncode != 0
    assert f"port {port} on 127.0.0.1 is already in use; pick another with --port" in result.stderr


def test_unknown_command(tmp_path: Path, embed_bench: Cli) -> None:
    result = embed_bench("bench", tmp_path)
    assert result.returncode == 2 and "unknown command 'bench'" in result.stderr


def test_demo_rejects_unknown_modes(tmp_path: Path, embed_bench: Cli) -> None:
    out = tmp_path / "demo"
    result = embed_bench(f"demo --modes continuous,dynamic --out {out}", tmp_path)
    assert_refused(result, 2, "--modes takes a comma-separated subset of", out)
