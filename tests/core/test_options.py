"""The custom options: the table, the typed view, and Locust's own parser and web UI flags."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from embed_bench.core.options import OPTION_SPECS, BenchOptions, OptionError
from tests.load.runs import REPO, locust_env

DESIGN_OPTIONS = {
    "--batch-size", "--passage-tokens", "--grid", "--requests-per-user", "--cell-max-seconds",
    "--warmup-requests", "--tokenizer", "--model", "--task", "--api-key", "--embeddings-path",
    "--sagemaker-endpoint", "--aws-region", "--request-timeout",
}  # fmt: skip


def test_every_design_option_is_declared_with_a_locust_env_var():
    flags = {spec.flag: spec for spec in OPTION_SPECS}
    assert set(flags) >= DESIGN_OPTIONS
    assert {"--run-dir", "--seed"} <= set(flags)
    assert flags["--batch-size"].env_var == "LOCUST_BATCH_SIZE"
    assert flags["--run-dir"].env_var == "LOCUST_RUN_DIR"
    assert [spec.flag for spec in OPTION_SPECS if spec.secret] == ["--api-key"]


def test_defaults_match_the_design():
    options = BenchOptions.from_mapping({})
    assert options.requests_per_user == 5
    assert options.embeddings_path == "/v1/embeddings"
    assert options.seed is None and options.api_key == ""
    assert options.repeats == 1


def test_web_ui_strings_are_coerced_and_checked():
    options = BenchOptions.from_mapping(
        {
            "batch_size": "32",
            "passage_tokens": "512",
            "seed": "42",
            "cell_max_seconds": "9.5",
            "grid": " quick ",
        }
    )
    assert (options.batch_size, options.passage_tokens, options.seed, options.grid) == (32, 512, 42, "quick")
    assert options.cell_max_seconds == 9.5
    with pytest.raises(OptionError, match="--batch-size"):
        BenchOptions.from_mapping({"batch_size": "many"})
    with pytest.raises(OptionError, match="at least 1"):
        BenchOptions.from_mapping({"requests_per_user": 0})
    assert BenchOptions.from_mapping({"repeats": "3"}).repeats == 3
    with pytest.raises(OptionError, match="--repeats must be at least 1"):
        BenchOptions.from_mapping({"repeats": 0})


def test_the_api_key_stays_out_of_repr_and_public_values(monkeypatch):
    options = BenchOptions.from_mapping({"api_key": "jina_topsecret"})
    assert "jina_topsecret" not in repr(options)
    assert "api_key" not in options.public()
    assert options.effective_api_key() == "jina_topsecret"
    monkeypatch.setenv("JINA_API_KEY", "jina_fromenv")
    assert BenchOptions.from_mapping({}).effective_api_key() == "jina_fromenv"
    assert options.effective_api_key() == "jina_topsecret"


PROBE = """
import json, sys
import embed_bench.load.shape  # what every locustfile imports: it subscribes the options
from locust.argument_parser import get_parser, ui_extra_args_dict
args = ["-f", "locustfiles/self_hosted.py", "--api-key", "jina_cli", "--grid", "article"]
parsed = vars(get_parser().parse_args(args))
ui = ui_extra_args_dict(args)
print(json.dumps({"parsed": {k: parsed[k] for k in ("batch_size", "grid", "run_dir", "api_key")}, "ui": ui}))
"""


def test_locust_parser_takes_env_vars_and_shows_options_in_the_web_ui_with_the_key_masked(spawn: None):
    env = locust_env({"LOCUST_BATCH_SIZE": "7", "LOCUST_RUN_DIR": "/tmp/somewhere"})
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["parsed"] == {
        "batch_size": 7,
        "grid": "article",
        "run_dir": "/tmp/somewhere",
        "api_key": "jina_cli",
    }
    ui = probe["ui"]
    assert {spec.dest for spec in OPTION_SPECS} <= set(ui)
    assert ui["api_key"]["is_secret"] is True
    assert not any(ui[spec.dest]["is_secret"] for spec in OPTION_SPECS if spec.dest != "api_key")
    assert ui["batch_size"]["default_value"] == 7
