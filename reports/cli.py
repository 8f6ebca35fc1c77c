"""``embed-bench report`` / ``python -m reports``: the post-processor's command line.

Bad input never produces a report: argparse rejects malformed options (exit 2) and ``ReportError``
(missing directory, unknown price, a run where nothing succeeded) becomes one line on stderr and
exit 1.
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
from pathlib import Path

from reports.cost.decision import WORKLOAD_EXAMPLE, load_workload
from reports.errors import ReportError
from reports.export.markdown import render_table
from reports.metrics.token_counts import CLIENT, COUNTS
from reports.pipeline import build_report, write_report
from reports.tables.answer import ANSWER_TITLE
from reports.tables.base import Section, summary_table
from reports.tables.decision import DECISION_TITLE
from reports.tables.rates import rate_alerts
from reports.tables.records import token_warnings
from reports.tables.sections import partial_alerts, unreachable_alerts


def _usd(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of USD") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a price must be a positive number of USD")
    return value


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Turn Locust run directories into the study's tables, plots and cost figures, "
        "one column per run.",
    )
    parser.add_argument(
        "run_dirs",
        nargs="+",
        type=Path,
        metavar="RUN_DIR",
        help="a run directory (locust_stats.csv, ..., run.json, cells.csv); several become columns",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="where report.md, report.html, cells.csv, summary.csv and the plots go (default: RUN_DIR/report "
        "for one run; required for several)",
    )
    _add_price_options(parser)
    parser.add_argument(
        "--compare-study",
        action="store_true",
        help="add the reference study's published figures, in a block of their own after the summary",
    )
    parser.add_argument(
        "--count-tokens",
        choices=COUNTS,
        default=CLIENT,
        help="which token count throughput, peak and comparisons use: client (default; batch x passage "
        "tokens under the run's tokenizer, the same for every backend) or server (each response's usage)",
    )
    _add_decision_options(parser)
    return parser


def _add_price_options(parser: argparse.ArgumentParser) -> None:
    """The three ways to price runs, of which one at most may be given: a price name or file, an
    hourly price, or a per-token price."""
    price = parser.add_mutually_exclusive_group()
    price.add_argument(
        "--pricing",
        metavar="NAME|FILE",
        help="a price name in the default pricing file, for every run; or a pricing file (TOML) "
        "in which each run's run.json 'pricing' name is looked up",
    )
    price.add_argument(
        "--price",
        "--price-per-hour",
        dest="price_per_hour",
        type=_usd,
        metavar="USD",
        help="your own hourly rate (infrastructure + license) for the hardware each run measured: "
        "it always matches that hardware",
    )
    price.add_argument(
        "--price-per-million-tokens",
        type=_usd,
        metavar="USD",
        help="per-token price for every run (a hosted API)",
    )


def _add_decision_options(parser: argparse.ArgumentParser) -> None:
    """The workload that opens the report with the decision table, and the prices to cost it at."""
    parser.add_argument(
        "--workload",
        metavar="KEY=VALUE,...|FILE.toml",
        help=f"your traffic, e.g. {WORKLOAD_EXAMPLE} (or a TOML file with tokens_per_day, "
        "peak_requests_per_s and an optional description): the report opens with the decision table "
        "(instances, monthly cost and effective USD per million tokens per priced run, at each run's "
        "capacity from its capacity search)",
    )
    parser.add_argument(
        "--decision-prices",
        metavar="NAME,...",
        default="",
        help="with --workload: cost each run's capacity at each of these hourly prices of the default "
        "pricing file instead of its own, and add each per-token price as an option of its own (e.g. the "
        "study's three: jina_api,sagemaker_us_east_1,self_hosted_us_east_1)",
    )


def print_opening(opening: Section | None) -> None:
    """The console opens as the report does: its answer (the decision for ``--workload``, or that
    none can be given without it, with what the capacity searches found), a cold start if one was
    seen, then the answer's first table; the ten-figure summary follows for the study's readers."""
    if opening is None or opening.title not in (DECISION_TITLE, ANSWER_TITLE):
        return
    print(f"## {opening.title}\n")
    if opening.text:
        print(textwrap.fill(opening.text, width=110) + "\n")
    for alert in opening.alerts:
        print(f"warning: {alert}")
    if opening.tables:
        print(render_table(opening.tables[0]))


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog or "embed-bench report")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help or a usage error already printed by argparse
        return int(exit_.code or 0)
    if args.out is None:
        if len(args.run_dirs) != 1:
            print(
                f"{parser.prog}: error: with several runs, say where the report goes: --out DIR",
                file=sys.stderr,
            )
            return 2
        args.out = Path(args.run_dirs[0]) / "report"
    decision_prices = [name.strip() for name in args.decision_prices.split(",") if name.strip()]
    if decision_prices and args.workload is None:
        print(f"{parser.prog}: error: --decision-prices needs --workload", file=sys.stderr)
        return 2
    try:
        workload = load_workload(args.workload) if args.workload is not None else None
        report = build_report(
            args.run_dirs,
            pricing=args.pricing,
            usd_per_hour=args.price_per_hour,
            usd_per_million_tokens=args.price_per_million_tokens,
            compare_study=args.compare_study,
            count_tokens=args.count_tokens,
            workload=workload,
            decision_prices=decision_prices,
        )
        written = write_report(report, args.out)
    except ReportError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{parser.prog}: error: cannot write the report to {args.out}: {exc}", file=sys.stderr)
        return 1
    print_opening(report.sections[0] if report.sections else None)
    if report.runs:
        print(render_table(summary_table(report.runs)))
    alerts = (
        *partial_alerts(report.runs),
        *unreachable_alerts(report.runs),
        *rate_alerts(report.rate_runs),
        *token_warnings(report.runs),
    )
    for alert in alerts:
        print(f"warning: {alert}")
    print("wrote " + ", ".join(str(path) for path in written))
    return 0
