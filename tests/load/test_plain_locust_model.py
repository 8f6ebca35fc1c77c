"""Plain ``locust -f locustfiles/jina_api.py`` without ``--model`` against an OpenAI-compatible server:
the model the server lists, as ``embed-bench run --backend openai`` finds it, or a clear error at
start that names ``--model``. It used to send ``jina-embeddings-v3`` to any server."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.doubles.process import running_double
from tests.load.runs import REPO, locust_env, run_headless

pytestmark = pytest.mark.usefixtures("spawn")

DOUBLE_KEY = "jina_double_key"  # the Jina API double's default key
SINGLE_CELL = ("-u", "2", "--batch-size", "2", "--passage-tokens", "16", "--requests-per-user", "3")


def test_without_model_the_run_sends_the_model_the_server_lists(tmp_path):
    with running_double("openai_root", "--model", "minilm") as double:  # Infinity's paths
        run = run_headless(
            "jina_api.py",
            tmp_path / "run",
            "-H",
            double.url,
            "--embeddings-path",
            "/embeddings",
            *SINGLE_CELL,
        )
        ledger = double.ledger()
    assert run.returncode == 0, run.describe()
    assert f"--model not set: {double.url} serves 'minilm' (GET /models)" in run.stderr
    # The double refuses any model it does not serve (400): every request named minilm.
    assert ledger["succeeded"] == 2 * (1 + 3) and ledger["violations"] == ["404 GET /v1/models"]
    assert run.stats()["b=2 t=16 c=2"]["Failure Count"] == "0"


def test_a_server_that_lists_no_model_stops_the_run_at_start_naming_model(tmp_path):
    # The Jina API double answers embeddings but lists no model (404 on /v1/models, /models, /info).
    with running_double("jina_api") as double:
        run = run_headless(
            "jina_api.py", tmp_path / "run", "-H", double.url, "--api-key", DOUBLE_KEY, *SINGLE_CELL
        )
        ledger = double.ledger()
    assert run.returncode == 2, run.describe()
    assert f"cannot run the grid: cannot tell which model {double.url} serves" in run.stderr
    for tried in ("GET /v1/models: HTTP 404", "GET /models: HTTP 404", "GET /info: HTTP 404"):
        assert tried in run.stderr
    assert "pass --model NAME" in run.stderr
    assert ledger["received"] == 0  # no embeddings request was sent
    assert run.seconds < 30, run.seconds


def test_a_given_model_is_sent_as_given(tmp_path):
    # The Jina API double serves jina-embeddings-v3 only: any other model would get a 4xx.
    with running_double("jina_api") as double:
        run = run_headless(
            "jina_api.py", tmp_path / "run", "-H", double.url, "--model", "jina-embeddings-v3",
            "--api-key", DOUBLE_KEY, *SINGLE_CELL,
        )  # fmt: skip
        ledger = double.ledger()
    assert run.returncode == 0, run.describe()
    assert ledger["succeeded"] == 2 * (1 + 3) and ledger["violations"] == []
    assert "--model not set" not in run.stderr


def test_on_the_jina_api_the_default_model_is_the_studys():
    """``JinaApiUser.resolve_options`` on the Jina API's own host (or none given: its default) asks
    nothing: the study's model. In a child process: importing a locustfile patches it with gevent."""
    code = (
        "from locustfiles.jina_api import JinaApiUser\n"
        "from embed_bench.core.options import BenchOptions\n"
        "for host in ('https://api.jina.ai', 'https://api.jina.ai/', None):\n"
        "    print(JinaApiUser.resolve_options(BenchOptions(), host, '').model)\n"
        "print(JinaApiUser.resolve_options(BenchOptions(model='m'), 'http://127.0.0.1:9', '').model)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=locust_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["jina-embeddings-v3"] * 3 + ["m"]
