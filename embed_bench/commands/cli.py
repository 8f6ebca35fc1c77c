"""The ``embed-bench`` console script.

Thin on purpose: every subcommand lives in the package that owns the work and exposes
``main(argv, prog) -> int``. Modules are imported only when their subcommand runs, so
``embed-bench report`` never pays for importing torch and ``embed-bench serve`` never imports pandas.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# Registry of subcommands: name -> (module with main(argv, prog), one-line help).
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": (
        "target_server.cli",
        "start the bundled target server (Flask + sentence-transformers, gunicorn)",
    ),
    "run": (
        "embed_bench.commands.run",
        "run Locust headless over a grid against one backend into a run directory",
    ),
    "demo": (
        "embed_bench.commands.demo",
        "the bundled server in each batching mode, the quick grid, one report",
    ),
    "report": ("reports.cli", "turn Locust run directories into tables, plots and cost figures"),
}


def usage() -> str:
    lines = ["usage: embed-bench COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `embed-bench COMMAND --help` for the options of one command."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"embed-bench: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest, prog=f"embed-bench {name}") or 0)


if __name__ == "__main__":
    sys.exit(main())
