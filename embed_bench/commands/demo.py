"""``embed-bench demo``: the bundled server in each batching mode, the quick grid, a replay of the
sample day of traffic, a short capacity search, one report that opens with the decision table.

What a newcomer runs first (``make demo``): it shows the whole pipeline -- target server, Locust run
directories, post-processor -- on the bundled model, on the CPU when there is no GPU, in minutes.
After the study-style grid, each mode in ``--capacity-modes`` gets a capacity search of one shape
(``b=1 t=16``: one query of the sample day's typical length, open-loop steps of up to 10 s) against ``--slo-p95-ms``, on the same server; each mode in
``--trace-modes`` first replays the shipped sample trace (a synthetic day: queries and indexing
bursts of varied lengths, ``embed_bench.core.sample_trace``) at ``--trace-speed``, which gives SLO
attainment over the day and figures per length band; the report then costs each capacity for that
day of traffic (the trace's hourly profile) at the price of the hardware it ran on (the cheapest
entry of the pricing file that pays for this machine: a 2-vCPU instance on a 2-core machine, one
H200's share on an H200), and lists the Jina API as not measured, with the command that would
measure it: the demo sends it nothing, so it cannot be the answer.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from embed_bench.commands.run import RunError, RunPlan, execute, plan_run
from embed_bench.commands.run import build_parser as run_parser
from embed_bench.core.sample_trace import SAMPLE_TRACE
from reports.cost.decision import load_workload
from reports.cost.pricing import hardware_mismatch, load_price_book
from reports.errors import ReportError
from target_server.config import BATCHING_MODES
from target_server.embedder import resolve_device
from target_server.hardware import describe_hardware
from target_server.launcher import ServerFailed, free_port, running_target_server

DEFAULT_MODES = ("continuous", "timeout", "none")
# Every mode, the study's batcher too: it waits up to 2 s for a batch, so a lone b=1 request never
# meets a p95 of a few hundred ms; its search ramps down to the floor (10 requests per step) in a few
# short steps and the decision table shows it holds no traffic at that target -- the study's point.
DEFAULT_CAPACITY_MODES = ("continuous", "timeout", "none")
# The sample day's typical request: one query of about 16 tokens (embed_bench.core.sample_trace). A search
# of b=1 t=128 met no rate at p95 <= 300 ms on a 2-core machine whose lone 128-token request takes 150 ms.
CAPACITY_SHAPE = ("--batch-size", "1", "--passage-tokens", "16")
HOSTED_PRICES = ("jina_api",)  # listed as not measured: the demo sends them nothing
FALLBACK_PRICING = "self_hosted_us_east_1"  # the study's A10G, flagged, when no entry fits this machine
SAMPLE_WORKLOAD = str(SAMPLE_TRACE)  # the decision prices the day the demo replays
DEFAULT_TRACE_MODES = ("continuous",)
DEFAULT_TRACE_SPEED = 720.0  # the sample day in two minutes
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
        default=None,
        help="pricing entry for the cost figures (default: the cheapest entry of the pricing file for "
        "this machine's hardware, e.g. c7i_large on 2 CPU cores)",
    )
    parser.add_argument(
        "--capacity-modes",
        default=",".join(DEFAULT_CAPACITY_MODES),
        help="modes that get a capacity search of b=1 t=16 after their grid (default: "
        f"{','.join(DEFAULT_CAPACITY_MODES)}; empty: none)",
    )
    parser.add_argument(
        "--slo-p95-ms", type=float, default=300.0, help="the capacity search's p95 target (default: 300)"
    )
    parser.add_argument(
        "--capacity-start-rate",
        type=float,
        default=8.0,
        help="the search's first rate, requests/s (default: 8)",
    )
    parser.add_argument(
        "--capacity-max-rate",
        type=float,
        default=None,
        help="the search's highest rate, requests/s (default: none); a mode that meets the target there "
        "gets a capacity of at least it",
    )
    parser.add_argument(
        "--capacity-step-s",
        type=float,
        default=10.0,
        help="longest capacity step in seconds (default 10; a step lasts long enough for 200 requests up to "
        "this: shorter steps overstated the capacity on 2 cores, docs/benchmarks/cpu.md)",
    )
    parser.add_argument(
        "--capacity-confirm-repeats",
        type=int,
        default=2,
        help="rounds of confirmation steps (1x, 0.85x, 1.15x of the answer, 200 requests each) that give "
        "each capacity its interval (default 2, as embed-bench run: with one round each rate near the knee "
        "is measured once or twice, too few to show the step-to-step noise; 0: none)",
    )
    parser.add_argument(
        "--cpu-threads",
        type=int,
        default=1,
        help="OMP_NUM_THREADS of each server when it runs on the CPU (default 1; 0: torch's default). "
        "On the 2-core machine torch's default threads made continuous batching miss 300 ms at 1.25/s; "
        "one thread met it at 19.5/s",
    )
    parser.add_argument(
        "--workload",
        default=SAMPLE_WORKLOAD,
        help="the decision table's workload: a trace, a profile or KEY=VALUE pairs (default: the sample trace)",
    )
    parser.add_argument(
        "--trace", default=str(SAMPLE_TRACE), help="the trace to replay (default: the sample day)"
    )
    parser.add_argument(
        "--trace-modes",
        default=",".join(DEFAULT_TRACE_MODES),
        help=f"modes that replay --trace after their grid (default: {','.join(DEFAULT_TRACE_MODES)}; empty: none)",
    )
    parser.add_argument(
        "--trace-speed",
        type=float,
        default=DEFAULT_TRACE_SPEED,
        help=f"replay speed-up (default {DEFAULT_TRACE_SPEED:g}: a day in two minutes)",
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


def parse_modes(text: str, option: str = "--modes", allow_empty: bool = False) -> list[str]:
    modes = [mode.strip() for mode in text.split(",") if mode.strip()]
    unknown = [mode for mode in modes if mode not in BATCHING_MODES]
    if (not modes and not allow_empty) or unknown:
        raise RunError(
            f"{option} takes a comma-separated subset of {', '.join(BATCHING_MODES)}; got {text!r}"
        )
    return modes


@dataclass(frozen=True)
class ModePlan:
    """What the demo runs against one server: the grid, then (maybe) a trace replay and a capacity search."""

    mode: str
    port: int
    grid: RunPlan
    capacity: RunPlan | None
    trace: RunPlan | None = None

    @property
    def plans(self) -> tuple[RunPlan, ...]:
        return tuple(plan for plan in (self.grid, self.trace, self.capacity) if plan is not None)


def _plan(port: int, out: Path, label: str, pricing: str, *options: str) -> RunPlan:
    run_args = [
        "--backend",
        "self-hosted",
        "--host",
        f"http://127.0.0.1:{port}",
        "--out",
        str(out),
        "--label",
        label,
        "--pricing",
        pricing,
        "--force",  # check_demo_dir vetted --out, and replace_demo_dir empties it
    ]
    namespace, passthrough = run_parser().parse_known_args([*run_args, *options])
    return plan_run(namespace, passthrough)


def server_env(device: str, cpu_threads: int) -> dict[str, str]:
    """One torch thread per server process on the CPU (``--cpu-threads``): with two cores shared by the
    server's threads and Locust, torch's intra-op threads contend and stall whole batches."""
    if cpu_threads < 0:
        raise RunError(f"--cpu-threads must be 0 (torch's default) or more, got {cpu_threads}")
    if cpu_threads == 0 or resolve_device(device) != "cpu":
        return {}
    return {"OMP_NUM_THREADS": str(cpu_threads), "MKL_NUM_THREADS": str(cpu_threads)}


def capacity_options(args: argparse.Namespace) -> list[str]:
    """``embed-bench run`` options of the demo's capacity search: b=1 t=16, steps of up to 10 s."""
    return [
        "--grid",
        "capacity",
        "--slo-p95-ms",
        f"{args.slo_p95_ms:g}",
        *CAPACITY_SHAPE,
        "--request-rate",
        f"{args.capacity_start_rate:g}",
        "--cell-duration",
        f"{args.capacity_step_s:g}",
        "--confirm-repeats",
        str(args.capacity_confirm_repeats),
        *(["--max-rate", f"{args.capacity_max_rate:g}"] if args.capacity_max_rate is not None else []),
    ]


def trace_options(args: argparse.Namespace) -> list[str]:
    """``embed-bench run`` options of the demo's replay: the trace, its speed-up, the demo's target."""
    return [
        "--trace",
        args.trace,
        "--trace-speed",
        f"{args.trace_speed:g}",
        "--slo-p95-ms",
        f"{args.slo_p95_ms:g}",
    ]


def plan_runs(
    args: argparse.Namespace, modes: list[str], capacity_modes: list[str], trace_modes: Sequence[str] = ()
) -> list[ModePlan]:
    """Validate every run before starting anything, so a bad option leaves nothing half-written."""
    plans = []
    for mode in modes:
        port = free_port()
        grid = _plan(
            port,
            args.out / mode,
            mode,
            args.pricing,
            "--grid",
            args.grid,
            "--requests-per-user",
            str(args.requests_per_user),
        )
        capacity = None
        if mode in capacity_modes:
            capacity = _plan(
                port, args.out / f"capacity-{mode}", f"{mode} capacity", args.pricing, *capacity_options(args)
            )
        trace = None
        if mode in trace_modes:
            trace = _plan(
                port, args.out / f"trace-{mode}", f"{mode} trace", args.pricing, *trace_options(args)
            )
        plans.append(ModePlan(mode, port, grid, capacity, trace))
    return plans


def pricing_for(device: str) -> str:
    """The cheapest hourly entry of the default pricing file that pays for the hardware the demo's
    server runs on (as its /info will describe it), else the study's A10G entry, which the report then
    flags as a price for other hardware."""
    hardware = describe_hardware(resolve_device(device)).as_dict()
    book = load_price_book()
    fitting = [
        price
        for price in book.values()
        if price.total_usd_per_hour is not None and hardware_mismatch(price, hardware) is None
    ]
    return (
        min(fitting, key=lambda price: price.total_usd_per_hour or 0.0).name if fitting else FALLBACK_PRICING
    )


def report_arguments(args: argparse.Namespace, plans: Sequence[ModePlan], report_dir: Path) -> list[str]:
    """``embed-bench report`` over every run, opening with the decision table at the run's price
    and the hosted APIs' list prices (not measured)."""
    run_dirs = [str(plan.out) for mode in plans for plan in mode.plans]
    return [
        *run_dirs,
        "--out",
        str(report_dir),
        "--pricing",
        args.pricing,
        "--workload",
        args.workload,
        "--decision-prices",
        ",".join((args.pricing, *HOSTED_PRICES)),
    ]


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        check_demo_dir(args.out, args.force)
        load_workload(args.workload)  # a bad workload fails now, not after the runs
        args.pricing = args.pricing or pricing_for(args.device)
        capacity_modes = parse_modes(args.capacity_modes, "--capacity-modes", allow_empty=True)
        trace_modes = parse_modes(args.trace_modes, "--trace-modes", allow_empty=True)
        plans = plan_runs(args, parse_modes(args.modes), capacity_modes, trace_modes)
        env = server_env(args.device, args.cpu_threads)
        replace_demo_dir(args.out)
        for mode in plans:
            print(
                f"\n== {mode.mode}: starting the bundled server ({args.model}, device {args.device}"
                + "".join(f", {key}={value}" for key, value in env.items() if key == "OMP_NUM_THREADS")
                + ") ...",
                flush=True,
            )
            server_args = ["--batching", mode.mode, "--device", args.device, "--model", args.model]
            with running_target_server(
                *server_args,
                port=mode.port,
                timeout_s=600,
                env=env,
                log_path=args.out / f"server-{mode.mode}.log",
            ):
                for plan in mode.plans:
                    code = execute(plan)
                    if code != 0:
                        return code
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (RunError, ServerFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 1)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the run directories so far are in {args.out}", file=sys.stderr)
        return 130

    from reports.cli import main as report_main

    report_dir = args.out / "report"
    code = report_main(report_arguments(args, plans, report_dir), prog="embed-bench report")
    if code != 0:
        return code
    print(f"\nreport: {report_dir / 'report.md'} and {report_dir / 'report.html'}")
    return 0
