"""`embed-bench serve` / `python -m target_server`: settings precedence and clear start-up errors."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from target_server.config import ConfigError, resolve_config
from tests.support.target import REPO, running_target_server


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "target_server", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_env_vars_fill_what_overrides_do_not(monkeypatch) -> None:
    monkeypatch.setenv("EMBED_BENCH_BATCHING", "timeout")
    monkeypatch.setenv("EMBED_BENCH_MAX_BATCH_TOKENS", "4096")
    monkeypatch.setenv("EMBED_BENCH_API_KEY", "12345")
    monkeypatch.setenv("EMBED_BENCH_FRONTENDS", "4")  # a container's way to split the server
    _, config = resolve_config({"max_batch_tokens": 1024})
    assert (config.batching, config.max_batch_tokens, config.api_key) == ("timeout", 1024, "12345")
    assert config.frontends == 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batching": "dynamic"}, "batching must be one of"),
        ({"max_batch_tokens": 4}, "max_batch_tokens must be an integer >= 16"),
        ({"device": "tpu"}, "device must be one of"),
        ({"max_queue_tokens": 0}, "max_queue_tokens must be a positive integer"),
        ({"batch_timeout_s": -1}, "batch_timeout_s must be between 0 and 3600"),
        ({"batch_timeout_s": float("inf")}, "batch_timeout_s must be between 0 and 3600"),
        ({"request_timeout_s": float("inf")}, "request_timeout_s must be between 0 and 86400"),
        ({"engine": "tensorrt"}, "engine must be one of"),
        ({"quantize": "int4"}, "quantize must be one of"),
        ({"engine": "onnx", "device": "cuda"}, "--engine onnx runs on the CPU; use --device cpu"),
        ({"quantize": "int8"}, "--quantize int8 needs --engine onnx or openvino"),
        (
            {"engine": "onnx", "quantize": "int8", "device": "cuda"},
            "--engine onnx --quantize int8 runs on the CPU",
        ),
        ({"engine": "openvino", "dtype": "bfloat16"}, "runs in float32 .*drop --dtype bfloat16"),
        ({"engine": "onnx", "model": "null:384"}, "the null model has no forward pass"),
        ({"frontends": 0}, r"frontends must be at least 1 \(one process\) and at most 256, got 0"),
        ({"frontends": True}, "frontends must be at least 1"),
    ],
)
def test_bad_settings_name_what_to_fix(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_config(overrides)


def test_cli_rejects_bad_values_before_loading_anything(spawn: None) -> None:
    result = run_cli("--max-batch-tokens", "4")
    assert result.returncode == 2
    assert "max_batch_tokens must be an integer >= 16" in result.stderr
    result = run_cli("--batching", "dynamic")
    assert result.returncode == 2 and "invalid choice: 'dynamic'" in result.stderr


def test_cli_reports_a_port_in_use(spawn: None) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("--host", "127.0.0.1", "--port", str(port))
    assert result.returncode != 0
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr


def test_embed_bench_serve_help_lists_the_options(spawn: None) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "embed_bench", "serve", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    for flag in (
        "--model",
        "--trust-remote-code",
        "--device",
        "--batching",
        "--max-batch-tokens",
        "--batch-timeout",
        "--host",
        "--port",
        "--threads",
        "--api-key",
    ):
        assert flag in result.stdout


@pytest.mark.usefixtures("spawn")
def test_server_runs_under_gunicorn() -> None:
    with running_target_server("--batching", "none", "--threads", "4", "--no-warmup") as url:
        import requests

        response = requests.post(url + "/embed", json={"texts": ["hello"]}, timeout=30)
        assert response.headers["Server"].startswith("gunicorn")
        assert requests.get(url + "/info", timeout=10).json()["batching"]["mode"] == "none"
