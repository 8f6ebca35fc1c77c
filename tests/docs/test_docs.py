"""The docs site: generated reference pages are current, the site builds strictly, benchmark figures have raw files."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GENERATOR = DOCS / "gen_reference.py"
BENCHMARKS = DOCS / "benchmarks"
RAW_FILE_LINE = re.compile(r"^Raw files?: (.+)$")
RAW_PATH = re.compile(r"`(benchmarks/results/[a-z0-9]+(?:-[a-z0-9]+)*-\d{4}-\d{2}-\d{2}/[^`\s]+)`")


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_reference_pages_match_the_code(tmp_path: Path) -> None:
    generator = _generator()
    written = generator.write(tmp_path)
    assert {path.name for path in written} == set(generator.PAGES)
    stale = []
    for path in written:
        committed = generator.REFERENCE_DIR / path.name
        if not committed.exists() or committed.read_text(encoding="utf-8") != path.read_text(
            encoding="utf-8"
        ):
            stale.append(str(committed.relative_to(ROOT)))
    assert not stale, (
        f"{', '.join(stale)} differ from what the code's tables generate "
        f"(edited by hand, or a table changed): run `{generator.COMMAND}` and commit the pages"
    )


def test_generated_pages_say_they_are_generated() -> None:
    generator = _generator()
    for name in generator.PAGES:
        first = (generator.REFERENCE_DIR / name).read_text(encoding="utf-8").splitlines()[0]
        assert first == generator.HEADER, f"docs/reference/{name}: first line must be the generator's comment"


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path: Path, spawn: None) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert (tmp_path / "site" / "index.html").exists()


def tables_and_raw_files(text: str) -> list[tuple[int, list[str]]]:
    """Each Markdown table (outside code fences) by its first line number, with the raw-file paths
    named on ``Raw file:`` lines between its end and the next table or heading."""
    tables: list[tuple[int, list[str]]] = []
    in_fence = in_table = False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        if stripped.startswith("|"):
            if not in_table:
                tables.append((number, []))
            in_table = True
            continue
        in_table = False
        if stripped.startswith("#"):
            tables.append((-1, []))  # a heading closes the last table's search
        elif (match := RAW_FILE_LINE.match(stripped)) and tables and tables[-1][0] > 0:
            tables[-1][1].extend(RAW_PATH.findall(match.group(1)))
    return [(number, paths) for number, paths in tables if number > 0]


def benchmark_pages() -> list[Path]:
    """Pages of figures: every page under docs/benchmarks/ but index.md (how to run them)."""
    return sorted(path for path in BENCHMARKS.rglob("*.md") if path.name != "index.md")


def test_every_benchmark_table_names_an_existing_raw_file() -> None:
    assert (BENCHMARKS / "h200.md") in benchmark_pages()
    problems = []
    for page in benchmark_pages():
        where = page.relative_to(ROOT)
        for line, paths in tables_and_raw_files(page.read_text(encoding="utf-8")):
            if not paths:
                problems.append(
                    f"{where}:{line}: the table has no 'Raw file: `benchmarks/results/<machine>-<date>/...`' line"
                )
            problems += [
                f"{where}:{line}: {path} does not exist" for path in paths if not (ROOT / path).is_file()
            ]
    assert not problems, "\n".join(problems)


def test_the_raw_file_check_catches_a_table_without_one() -> None:
    text = "| a |\n|---|\n| 1 |\n\nRaw file: `benchmarks/results/h200-2026-11-29/oom.json`\n\n| b |\n|---|\n\n## next\n"
    assert tables_and_raw_files(text) == [(1, ["benchmarks/results/h200-2026-11-29/oom.json"]), (7, [])]
