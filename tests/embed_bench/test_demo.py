"""`embed-bench demo` (and `make demo`) can run again: it replaces its own earlier demo, and only that."""

from __future__ import annotations

from pathlib import Path

import pytest

from embed_bench.demo import DEMO_MARKER, check_demo_dir, replace_demo_dir
from embed_bench.run import RunError


def test_a_demo_replaces_the_previous_demo(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    replace_demo_dir(out)  # the first demo
    (out / "continuous").mkdir()
    (out / "continuous" / "run.json").write_text("{}")  # what the first demo left
    check_demo_dir(out, force=False)  # the second demo may go ahead
    replace_demo_dir(out)
    assert sorted(path.name for path in out.iterdir()) == [DEMO_MARKER]


def test_an_absent_or_empty_directory_is_fine(tmp_path: Path) -> None:
    check_demo_dir(tmp_path / "absent", force=False)
    (tmp_path / "empty").mkdir()
    check_demo_dir(tmp_path / "empty", force=False)


def test_a_directory_of_other_files_is_refused_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "runs.csv").write_text("mine")
    with pytest.raises(RunError, match="holds files that are not an earlier demo"):
        check_demo_dir(tmp_path, force=False)
    check_demo_dir(tmp_path, force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="is a file"):
        check_demo_dir(tmp_path / "file", force=True)
