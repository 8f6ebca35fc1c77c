"""The layers of DESIGN.md hold: import-linter's contracts (pyproject.toml) are kept, and they bite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from importlinter import cli

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("embed_bench", "reports", "target_server", "locustfiles")


def test_every_layer_contract_is_kept(monkeypatch, capsys) -> None:
    monkeypatch.chdir(REPO)
    code = cli.lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True)
    output = capsys.readouterr().out
    assert code == 0, output
    assert "Contracts: 9 kept, 0 broken." in output


def lint_copy(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over a copy of the packages in which ``module`` gained ``line``."""
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text() + f"\n{line}\n")
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=tmp_path,
        env=os.environ | {"PYTHONPATH": str(tmp_path)},  # the copy, not the editable install
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_core_module_that_imports_locust_breaks_the_core_contract(tmp_path: Path, spawn: None) -> None:
    result = lint_copy(tmp_path, "embed_bench.core.cells", "import locust  # noqa")
    assert result.returncode != 0
    assert "The core is Locust-, gevent-, pandas-, torch- and Flask-free BROKEN" in result.stdout
    assert "embed_bench.core.cells -> locust" in result.stdout


def test_the_glue_importing_a_command_breaks_the_layers(tmp_path: Path, spawn: None) -> None:
    result = lint_copy(tmp_path, "embed_bench.load.recorder", "import embed_bench.commands.run  # noqa")
    assert result.returncode != 0
    assert "commands over the Locust glue over the core BROKEN" in result.stdout


def test_a_front_end_that_imports_the_embedder_breaks_its_contract(tmp_path: Path, spawn: None) -> None:
    result = lint_copy(tmp_path, "target_server.frontend", "import target_server.embedder  # noqa")
    assert result.returncode != 0
    assert "loads no model: neither torch nor the" in result.stdout and "BROKEN" in result.stdout
    assert "target_server.frontend -> target_server.embedder" in result.stdout
