"""``embed-bench demo``: the bundled server in each batching mode, the quick grid, one report.

What a newcomer runs first (``make demo``): it shows the whole pipeline -- target server, Locust run
directories, post-processor -- on the bundled model, on the CPU when there is no GPU, in minutes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from embed_bench.run import RunError, RunPlan, execute, plan_run
from embed_bench.run import build_parser as run_parser
from target_server.config import BATCHING_MODES
from target_server.launcher import ServerFailed, free_port, running_target_server

DEFAULT_MODES = ("continuous", "timeout", "none")
# Marks a directory as a demo's own, so the next demo may replace it (`make demo` twice in a row).
DEMO_MARKER = ".embed-bench-demo"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "embed-bench demo",
        description="Start the bundled server in each batching mode in turn, run a grid against it with "
        "Locust, and build one report comparing the modes.",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="default: runs/demo")
    parser.add_argument("--grid", default="quick", help="quick | article | throughput | a grid TOML file")
    parser.add_argument(
        "--modes",
        default=",".join(DEFAULT_MODES),
        help=f"comma-separated batching modes (default: {','.join(DEFAULT_MODES)})",
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--model", default="bundled", help="server model (default: the bundled MiniLM)")
    parser.add_argument(
        "--requests-per-user", type=int, default=5, help="measured requests per user per cell"
    )
    parser.add_argument(
        "--pricing",
        default="self_hosted_us_east_1",
        help="pricing entry for the cost figures (default: the study's self-hosted g5.xlarge)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="use --out even if it holds something other than an earlier demo (an earlier demo is "
        "always replaced)",
    )
    return parser


def check_demo_dir(out: Path, force: bool) -> None:
    """``out`` may become the new demo's: it is absent, empty, an earlier demo, or --force says so.
    A directory that holds something else is refused, so a demo never deletes a user's runs."""
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file; give a directory")
    if out.is_dir() and any(out.iterdir()) and not (force or (out / DEMO_MARKER).exists()):
        raise RunError(
            f"{out} holds files that are not an earlier demo; choose another --out or pass --force"
        )


def replace_demo_dir(out: Path) -> None:
    """Remove an earlier demo and mark the directory as this one's."""
    if out.is_dir():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / DEMO_MARKER).write_text("written by embed-bench demo; the next demo replaces this directory\n")


def parse_modes(text: str) -> list[str]:
    modes = [mode.strip() for mode in text.split(",") if mode.strip()]
    unknown = [mode for mode in modes if mode not in BATCHING_MODES]
    if not modes or unknown:
        raise RunError(f"--modes takes a comma-separated subset of {', '.join(BATCHING_MODES)}; got {text!r}")
    return modes


def plan_runs(args: argparse.Namespace, modes: list[str]) -> list[tuple[str, int, RunPlan]]:
    """Validate every run before starting anything, so a bad option leaves nothing half-written."""
    plans = []
    for mode in modes:
        port = free_port()
        run_args = [
            "--backend",
            "self-hosted",
            "--host",
            f"http://127.0.0.1:{port}",
            "--grid",
            args.grid,
            "--out",
            str(args.out / mode),
            "--label",
            mode,
            "--pricing",
            args.pricing,
            "--force",  # check_demo_dir vetted --out, and replace_demo_dir empties it
        ]
        namespace, passthrough = run_parser().parse_known_args(run_args)
        plans.append(
            (
                mode,
                port,
                plan_run(namespace, [*passthrough, "--requests-per-user", str(args.requests_per_user)]),
            )
        )
    return plans


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        check_demo_dir(args.out, args.force)
        plans = plan_runs(args, parse_modes(args.modes))
        replace_demo_dir(args.out)
        for mode, port, plan in plans:
            print(
                f"\n== {mode}: starting the bundled server ({args.model}, device {args.device}) ...",
                flush=True,
            )
            server_args = ["--batching", mode, "--device", args.device, "--model", args.model]
            with running_target_server(
                *server_args, port=port, timeout_s=600, log_path=args.out / f"server-{mode}.log"
            ):
                code = execute(plan)
            if code != 0:
                return code
    except (RunError, ServerFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 1)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the run directories so far are in {args.out}", file=sys.stderr)
        return 130

    from reports.cli import main as report_main

    report_dir = args.out / "report"
    run_dirs = [str(plan.out) for _, _, plan in plans]
    code = report_main(
        [*run_dirs, "--out", str(report_dir), "--pricing", args.pricing], prog="embed-bench report"
    )
    if code != 0:
        return code
    print(f"\nreport: {report_dir / 'report.md'} and {report_dir / 'report.html'}")
    return 0
