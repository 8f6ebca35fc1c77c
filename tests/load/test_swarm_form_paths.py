"""The start form's path values are confined: run directory, grid file and tokenizer (no sockets, no
processes: the checks are plain functions of the form, the start values and the file system)."""

from __future__ import annotations

from pathlib import Path

import pytest

from embed_bench.core.options import OPTION_SPECS
from embed_bench.load.swarm_form import FormLimits, swarm_form_error

CURRENT = {spec.dest: spec.default for spec in OPTION_SPECS} | {"num_users": 1, "spawn_rate": 1.0, "host": ""}


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    (root / "swarm").mkdir(parents=True)
    (root / "grid.toml").write_text("[[cells]]\nconcurrency = 1\nbatch_size = 1\npassage_tokens = 8\n")
    return root


def limits_for(runs: Path, **start: str) -> FormLimits:
    return FormLimits.at_start(start, str(runs / "swarm" / "locust"), environ={})


def test_the_runs_root_is_the_folder_above_the_start_run_directory(runs, tmp_path):
    limits = limits_for(runs)
    assert limits.runs_root == limits.grids_dir == runs.resolve()
    assert FormLimits.at_start({"run_dir": str(runs / "a")}, None, environ={}).runs_root == runs.resolve()
    other = tmp_path / "elsewhere"
    env = {"EMBED_BENCH_RUNS_ROOT": str(other), "EMBED_BENCH_GRIDS_DIR": str(other / "grids")}
    chosen = FormLimits.at_start({}, None, environ=env)
    assert (chosen.runs_root, chosen.grids_dir) == (other.resolve(), (other / "grids").resolve())


@pytest.mark.parametrize("inside", ["swarm", "new-run", "team/run-2"])
def test_a_run_directory_under_the_runs_root_passes(runs, inside):
    assert swarm_form_error({"run_dir": str(runs / inside)}, CURRENT, limits_for(runs)) is None


@pytest.mark.parametrize("outside", ["/etc", "/tmp", "{runs}", "{runs}/../escape", "{runs}/swarm/../.."])
def test_a_run_directory_outside_the_runs_root_is_refused(runs, outside):
    value = outside.format(runs=runs)
    message = swarm_form_error({"run_dir": value}, CURRENT, limits_for(runs))
    assert message is not None and message.startswith(
        f"Run directory (--run-dir): {value!r} is not a folder under"
    )
    assert str(runs.resolve()) in message


def test_a_symlink_out_of_the_runs_root_is_refused(runs, tmp_path):
    (runs / "link").symlink_to(tmp_path / "outside", target_is_directory=True)
    assert swarm_form_error({"run_dir": str(runs / "link" / "run")}, CURRENT, limits_for(runs)) is not None


def test_the_start_run_directory_always_passes(runs):
    limits = limits_for(runs, run_dir="/var/somewhere/else")
    assert swarm_form_error({"run_dir": "/var/somewhere/else"}, CURRENT, limits) is None


@pytest.mark.parametrize("grid", ["", "quick", "article", "throughput", "{runs}/grid.toml"])
def test_built_in_grids_and_files_under_the_grids_folder_pass(runs, grid):
    assert swarm_form_error({"grid": grid.format(runs=runs)}, CURRENT, limits_for(runs)) is None


def test_a_capacity_search_can_be_started_from_the_form(runs):
    # It was refused as "neither a built-in grid (quick, article, throughput) nor a file".
    form = {"grid": "capacity", "slo_p95_ms": "250"}
    assert swarm_form_error(form, CURRENT, limits_for(runs)) is None
    message = swarm_form_error({"grid": "capacity"}, CURRENT, limits_for(runs))
    assert message == "Grid: --grid capacity needs a target: --slo-p95-ms (and --slo-success-pct)."
    message = swarm_form_error({"grid": "/etc/passwd"}, CURRENT, limits_for(runs))
    assert message is not None and "built-in grid (quick, article, throughput, capacity)" in message


@pytest.mark.parametrize("grid", ["/etc/passwd", "{runs}/../secret.toml", "~/.aws/credentials"])
def test_other_grid_files_are_refused_before_they_are_read(runs, grid, tmp_path):
    (tmp_path / "secret.toml").write_text("not = 'a grid'\n")
    value = grid.format(runs=runs)
    message = swarm_form_error({"grid": value}, CURRENT, limits_for(runs))
    assert message is not None and message.startswith(f"Grid (--grid): {value!r} is neither a built-in grid")


def test_the_start_grid_file_passes_wherever_it_is(runs, tmp_path):
    grid = tmp_path / "mine.toml"
    grid.write_text((runs / "grid.toml").read_text())
    assert swarm_form_error({"grid": str(grid)}, CURRENT, limits_for(runs, grid=str(grid))) is None


def test_the_tokenizer_is_bundled_or_local(runs, tmp_path):
    limits = limits_for(runs)
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "tokenizer.json").write_text("{}")
    for value in ("", "bundled", str(folder), str(folder / "tokenizer.json")):
        assert limits.tokenizer_error(value) is None, value
    for value in ("jinaai/jina-embeddings-v3", "bert-base-uncased", str(tmp_path / "missing.json")):
        message = swarm_form_error({"tokenizer": value}, CURRENT, limits)
        assert message is not None and "is not a local tokenizer" in message and "hub id" in message
    # A hub id given at start stays accepted: the form shows it.
    assert (
        limits_for(runs, tokenizer="jinaai/jina-embeddings-v3").tokenizer_error("jinaai/jina-embeddings-v3")
        is None
    )


def test_the_key_binding_is_not_a_form_field(runs):
    message = swarm_form_error({"embed_bench_key_host": "http://evil.example"}, CURRENT, limits_for(runs))
    assert message is not None and message.startswith("embed_bench_key_host: not a field of the form")


def test_without_limits_paths_are_not_confined():
    assert swarm_form_error({"run_dir": "/tmp/anywhere"}, CURRENT) is None


def test_a_trace_to_replay_is_read_only_from_the_grids_folder(runs, tmp_path):
    inside = runs / "log.csv"
    inside.write_text("offset_s,tokens\n0,5\n")
    outside = tmp_path / "secret.csv"
    outside.write_text("offset_s,tokens\n0,5\n")
    limits = limits_for(runs, trace=str(tmp_path / "start.csv"))
    assert swarm_form_error({"trace": str(inside)}, CURRENT, limits) is None
    assert (
        swarm_form_error({"trace": str(tmp_path / "start.csv")}, CURRENT, limits) is None
    )  # as given at start
    message = swarm_form_error({"trace": str(outside)}, CURRENT, limits)
    assert (
        message is not None and "is not a file under the grids folder" in message and "(--trace)" in message
    )
