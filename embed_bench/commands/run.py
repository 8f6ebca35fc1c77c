"""``embed-bench run``: one Locust run over a grid, into a reportable run directory.

Everything that can be wrong is checked before anything is written or started (backend, grid file,
the whole Locust command line with Locust's own parser, tokenizer, keys, credentials, output
directory, the target's name and reachability), so a failed start leaves nothing half-written. Then
``locust --headless`` runs (one process, or a master with N local workers), each cell's outcome is
shown as it ends (``b=1 t=128 c=1: 0/5 ok, HTTP 404 (5)``, from ``cells.csv``) with an ETA where
one can be made, a long preparation or cell shows its progress (``progress.json``, written by the
master; a live line on a terminal, a plain line every 10 s elsewhere), and
``run.json`` records what ran -- never a secret. The run ends with a summary and an exit code that
says whether it measured anything. Ctrl-C stops Locust gracefully, so the directory stays reportable.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from embed_bench.commands.preflight import PreflightError, parse_locust_args, wait_reachable
from embed_bench.commands.progress_view import PLAIN_INTERVAL_S, ProgressView
from embed_bench.commands.telemetry import Telemetry, TelemetryError, TelemetryPlan, plan_telemetry
from embed_bench.commands.telemetry import add_arguments as add_telemetry_arguments
from embed_bench.core.backends import BACKENDS, BackendError, Hardware, Settings
from embed_bench.core.cells import (
    CapacitySpec,
    CellRecord,
    Grid,
    GridError,
    format_failures,
    grid_of,
    workload_record,
)
from embed_bench.core.contract import RUN_FILES, Cell
from embed_bench.core.options import BenchOptions, OptionError, concurrency_option
from embed_bench.core.payloads import PassageError, load_tokenizer
from embed_bench.core.progress import clock, grid_left_s, read_progress
from embed_bench.core.records import RecordFileError, count_measured_records
from target_server.launcher import free_port, stop

# Options whose values are secrets: moved from the command line into the environment of the Locust
# processes (so they never show in `ps`, run.json or logs).
SECRET_OPTIONS = {"--api-key": "LOCUST_API_KEY"}
STOP_GRACE_S = 60
# Signals that stop a run gracefully: Ctrl-C, `kill`/`docker stop`, a closed terminal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class RunError(Exception):
    """A reason not to start (or to abandon) a run, phrased as what to fix."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunPlan:
    backend: str
    host: str
    grid_spec: str | None  # None: the single cell of --batch-size, --passage-tokens and --users
    grid: Grid
    out: Path
    workers: int
    label: str
    pricing: str | None
    locust_args: list[str]
    env: dict[str, str] = field(repr=False)
    ready_timeout_s: float = 300.0
    repeats: int = 1
    requests_per_user: int = 5
    max_failure_pct: float | None = None
    hardware: Hardware = None  # what served the run (the target's /info), recorded in run.json
    workload: dict[str, Any] = field(default_factory=dict)  # a trace, length distributions (run.json)
    server_counters: dict[str, float] | None = None  # the bundled server's token counters at the start
    telemetry: TelemetryPlan | None = None  # the target's Prometheus endpoint to sample (None: none)
    progress_interval_s: float = PLAIN_INTERVAL_S  # plain progress lines, when not on a terminal

    @property
    def steps(self) -> int:
        """Cells to walk, over all repeats."""
        return len(self.grid.cells) * self.repeats


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "embed-bench run",
        description="Run Locust headless over a grid against one backend and write a run directory "
        "(locust_stats.csv, locust_stats_history.csv, locust_failures.csv, cells.csv, run.json). "
        "Unknown options go to Locust and the embed-bench user classes "
        "(e.g. --requests-per-user 5, --repeats 3, --model, --api-key, --sagemaker-endpoint) and are "
        "checked by Locust's parser before anything starts. Exit codes: 0 run completed (cells cut "
        "short are listed), 1 nothing succeeded / a cell completed nothing / over --max-failure-pct / "
        "Locust failed, 2 bad options, 3 target unreachable, 130 interrupted.",
    )
    parser.add_argument(
        "--backend",
        required=True,
        choices=sorted(BACKENDS),
        help="; ".join(f"{name}: {b.description}" for name, b in BACKENDS.items()),
    )
    parser.add_argument("--host", help="base URL of the target (default: the backend's, if it has one)")
    parser.add_argument(
        "--grid",
        help="quick | article | throughput | capacity | a grid TOML file; without it, the single cell of "
        "Locust's --batch-size, --passage-tokens and -u/--users (defaults 1, 128, 1), as plain Locust runs, "
        "or a rate cell with --request-rate; capacity: a capacity search of that shape (--slo-p95-ms)",
    )
    parser.add_argument("--out", type=Path, help="run directory (default: runs/<backend>-<time>)")
    parser.add_argument("--label", help="column title in reports (default: the run directory's name)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="Locust processes: 1 = one process; N > 1 = a master and N local workers",
    )
    parser.add_argument("--pricing", help="pricing entry recorded in run.json for `embed-bench report`")
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="how long to wait for a self-hosted server whose /health says it is loading (a target "
        "where nothing listens is retried for 5 s only)",
    )
    parser.add_argument(
        "--max-failure-pct",
        type=float,
        metavar="P",
        help="exit 1 when more than P %% of the planned measured requests failed or did not finish "
        "(for CI); without it, "
        "failures alone never change the exit code, but a run with no successful request exits 1",
    )
    parser.add_argument("--force", action="store_true", help="reuse a run directory that holds a run")
    parser.add_argument(
        "--progress-interval",
        type=float,
        default=PLAIN_INTERVAL_S,
        metavar="S",
        help="when the output is not a terminal (CI, a pipe, a log): a plain progress line every S "
        "seconds while a cell is prepared or run longer than that (payloads built, requests done, time, "
        "an estimate where one can be made); a terminal gets a live line instead",
    )
    add_telemetry_arguments(parser)
    return parser


def _secret_option(name: str) -> str | None:
    """The secret option ``name`` stands for, abbreviations included (Locust's parser takes
    ``--api-ke`` for ``--api-key``, so an abbreviation must not slip through to argv)."""
    if len(name) < 4 or not name.startswith("--"):
        return None
    return next((option for option in SECRET_OPTIONS if option.startswith(name)), None)


def split_secrets(args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Remove secret options from a Locust command line; return them as env vars instead."""
    kept: list[str] = []
    env: dict[str, str] = {}
    skip = False
    for index, arg in enumerate(args):
        if skip:
            skip = False
            continue
        secret = _secret_option(arg.split("=", 1)[0])
        if secret is not None:
            if "=" in arg:
                env[SECRET_OPTIONS[secret]] = arg.split("=", 1)[1]
            elif index + 1 < len(args):
                env[SECRET_OPTIONS[secret]] = args[index + 1]
                skip = True
            continue
        kept.append(arg)
    return kept, env


def settings_of(locust_args: Sequence[str], secret_env: dict[str, str]) -> Settings:
    """The run's settings as the Locust processes will see them: options, else ``LOCUST_*`` vars."""
    return Settings(tuple(locust_args), {**os.environ, **secret_env})


def resolve_host(backend: str, host: str | None, settings: Settings) -> str:
    if host:
        parts = urlsplit(host)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RunError(f"--host must be a URL like http://127.0.0.1:8000, got {host!r}")
        return host.rstrip("/")
    derived = BACKENDS[backend].host(settings)
    if derived:
        return derived
    raise RunError(f"--backend {backend} needs --host URL (e.g. http://127.0.0.1:8000)")


def check_out_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file; give a directory")
    if out.is_dir() and any((out / name).exists() for name in RUN_FILES.marks_a_run) and not force:
        raise RunError(f"{out} already holds a run; choose another --out or pass --force")


def check_writable(out: Path) -> None:
    """Write (and remove) a probe file where the run directory is or will be created, so a directory
    that cannot be written stops the run before a single request is sent; nothing is created."""
    existing = next(candidate for candidate in (out, *out.parents) if candidate.exists())
    if not existing.is_dir():
        raise RunError(f"--out {out}: the run directory cannot be created, {existing} is a file")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".embed-bench-probe-"):
            pass
    except OSError as error:
        raise RunError(
            f"--out {out}: the run directory cannot be written ({existing}: {error.strerror or error})"
        ) from None


def clear_run_files(out: Path) -> None:
    """``--force``: remove an earlier run's files, so nothing of it mixes into the new run or report."""
    for pattern in RUN_FILES.written_by_a_run:
        for path in out.glob(pattern):
            path.unlink()


def plan_run(args: argparse.Namespace, passthrough: Sequence[str]) -> RunPlan:
    """Validate everything that does not need the network; raises RunError with what to fix."""
    if args.workers < 1:
        raise RunError("--workers must be at least 1")
    if not args.progress_interval > 0:
        raise RunError("--progress-interval takes a number of seconds above 0")
    if args.max_failure_pct is not None and not 0 <= args.max_failure_pct <= 100:
        raise RunError("--max-failure-pct takes a percentage from 0 to 100")
    locust_args, env = split_secrets(passthrough)
    settings = settings_of(locust_args, env)
    try:
        BACKENDS[args.backend].check_credentials(settings)
    except BackendError as error:
        raise RunError(str(error)) from None
    host = resolve_host(args.backend, args.host, settings)
    out = args.out or Path("runs") / f"{args.backend}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    plan = RunPlan(
        backend=args.backend,
        host=host,
        grid_spec=args.grid,
        grid=Grid("pending", (Cell(concurrency=1, batch_size=1, passage_tokens=1),)),  # set below
        out=out,
        workers=args.workers,
        label=args.label or out.name,
        pricing=args.pricing,
        locust_args=locust_args,
        env=env,
        ready_timeout_s=args.ready_timeout,
        max_failure_pct=args.max_failure_pct,
        progress_interval_s=args.progress_interval,
    )
    options, concurrency = check_locust_options(plan)
    try:
        plan.grid = grid_of(options, concurrency)
        plan.workload = workload_record(plan.grid, options)
    except GridError as error:
        raise RunError(f"bad grid: {error}") from None
    plan.repeats, plan.requests_per_user = options.repeats, options.requests_per_user
    try:
        plan.telemetry = plan_telemetry(args, plan.backend, host)
    except TelemetryError as error:
        raise RunError(str(error)) from None
    plan.workload["server_metrics"] = plan.telemetry.record()
    check_out_dir(out, args.force)
    check_writable(out)
    return plan


def check_locust_options(plan: RunPlan) -> tuple[BenchOptions, int]:
    """The master's command line through Locust's parser, the embed-bench options' values and the
    tokenizer: every mistake in them is reported here, before anything starts."""
    try:
        values = parse_locust_args(master_arguments(plan))
        options = BenchOptions.from_mapping(values)
        concurrency = concurrency_option(argparse.Namespace(**values))
        load_tokenizer(options.tokenizer)
    except PreflightError as error:
        raise RunError(str(error), error.exit_code) from None
    except (OptionError, PassageError) as error:
        raise RunError(str(error)) from None
    return options, concurrency


def master_arguments(plan: RunPlan) -> list[str]:
    """The arguments of the (only or master) Locust process, after ``python -m locust``."""
    backend = BACKENDS[plan.backend]
    return [
        "-f",
        str(backend.locustfile),
        backend.user_class,
        "--headless",
        "-H",
        plan.host,
        *(["--grid", plan.grid_spec] if plan.grid_spec else []),
        "--run-dir",
        str(plan.out),
        "--csv",
        str(plan.out / RUN_FILES.csv_prefix),
        "--csv-full-history",
        "--exit-code-on-error",
        "0",
        "--logfile",
        str(plan.out / RUN_FILES.log),
        "--only-summary",
        *plan.locust_args,
    ]


def locust_commands(plan: RunPlan) -> list[list[str]]:
    """The Locust processes: one headless process, or a headless master plus N workers."""
    backend = BACKENDS[plan.backend]
    master = [sys.executable, "-m", "locust", *master_arguments(plan)]
    if plan.workers == 1:
        return [master]
    port = free_port()
    master += [
        "--master",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        str(port),
        "--expect-workers",
        str(plan.workers),
        "--expect-workers-max-wait",
        "120",
    ]
    worker = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(backend.locustfile),
        backend.user_class,
        "--worker",
        "--master-host",
        "127.0.0.1",
        "--master-port",
        str(port),
        "--logfile",
        str(plan.out / RUN_FILES.worker_log),
        *plan.locust_args,
    ]
    return [master] + [worker] * plan.workers


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("embed-bench", "locust"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "unknown"
    return found


def target_model(plan: RunPlan) -> str | None:
    """What model the run measures, as its backend knows it (``--model``, the server's own, ...)."""
    try:
        return BACKENDS[plan.backend].model(settings_of(plan.locust_args, plan.env), plan.host)
    except BackendError as error:
        raise RunError(str(error)) from None


def capacity_of(out: Path) -> dict[str, object]:
    """run.json's ``slo`` and ``capacity`` keys, from the capacity search's ``capacity.json``
    (written by the grid walk when a search ran; nothing when it is absent). A capacity.json that
    cannot be read is a RunError naming it: an answer must never quietly vanish from run.json."""
    path = out / RUN_FILES.capacity_json
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise RunError(f"{path}: cannot be read ({error})", exit_code=1) from None
    except ValueError as error:
        raise RunError(f"{path}: not valid JSON ({error})", exit_code=1) from None
    if not isinstance(found, dict):
        raise RunError(f"{path}: expected a JSON object, found {type(found).__name__}", exit_code=1)
    return {key: found[key] for key in ("slo", "capacity") if key in found}


def write_run_json(
    plan: RunPlan,
    started: dt.datetime,
    ended: dt.datetime | None,
    model: str | None,
    status: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """run.json; ``extra``: what the end of the run adds (the capacity answer, what was lost)."""
    record = {
        "name": plan.out.name,
        "label": plan.label,
        "backend": plan.backend,
        "host": plan.host,
        "model": model,
        "hardware": plan.hardware,
        "grid": plan.grid_spec if plan.grid.name == plan.grid_spec else plan.grid.name,
        "cells": [cell.name for cell in plan.grid.cells],
        **plan.workload,
        "repeats": plan.repeats,
        "workers": plan.workers,
        "started_at": started.isoformat(timespec="seconds"),
        "ended_at": ended.isoformat(timespec="seconds") if ended else None,
        "status": status,
        "pricing": plan.pricing,
        "locust_args": plan.locust_args,  # secrets were moved out (split_secrets)
        "versions": versions(),
        **(extra or {}),
    }
    temporary = plan.out / f".{RUN_FILES.run_json}.tmp"
    temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    temporary.replace(plan.out / RUN_FILES.run_json)


def read_cells(path: Path) -> list[CellRecord]:
    """The rows of ``cells.csv`` so far (none before the first cell starts). The grid walk rewrites
    it atomically, so a file that cannot be read is broken: a RunError naming it and the row."""
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            rows = list(csv.DictReader(stream))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise RunError(f"{path}: cannot be read ({error})", exit_code=1) from None
    records = []
    for line, row in enumerate(rows, start=2):
        try:
            record = CellRecord.from_row(row)
        except (KeyError, TypeError, ValueError) as error:
            raise RunError(f"{path}, line {line}: not a cells.csv row ({error!r})", exit_code=1) from None
        if record is not None:
            records.append(record)
    return records


class Progress:
    """Prints a line when a cell starts and one with its outcome when it ends (from cells.csv), with
    an ETA where one can be made: from each cell's wall time (its preparation and the gap before it
    included) in an earlier repeat. A first walk has none -- cells differ in cost by orders of
    magnitude, and spreading the first cells' time over the rest once said "ETA 0:13" with 45 s
    left -- so it says how many cells are left. The live progress of the current cell (payloads
    built, requests done, from the master's ``progress.json``) goes to ``view``.

    A capacity search's steps (past the grid's cells) show their p95 and whether they met the target,
    from ``capacity.json``'s ``progress``, which the search rewrites after each step before the
    step's counts reach cells.csv; confirmation steps are labelled as such."""

    def __init__(
        self,
        plan: RunPlan,
        write: Callable[[str], None],
        clock: Callable[[], float] = time.time,
        view: ProgressView | None = None,
    ) -> None:
        self.out = plan.out
        self.view = view
        self.step_names = [(cell.name, repeat) for repeat in range(plan.repeats) for cell in plan.grid.cells]
        self.path = plan.out / RUN_FILES.cells_csv
        self.capacity_path = plan.out / RUN_FILES.capacity_json
        self.searching = plan.grid.capacity is not None
        self.total = plan.steps
        self.repeats = plan.repeats
        self.write = write
        self.clock = clock
        self.started = clock()
        self.shown: dict[int, bool] = {}  # row number -> whether its outcome was shown
        self.warned: set[str] = set()  # run files found unreadable, said once each

    def poll(self, final: bool = False) -> list[CellRecord]:
        """Show what changed in cells.csv; ``final``: the run is over, show every outcome there is.
        A run file that cannot be read is said once while the run goes on, and raises at the end."""
        if self.view is not None and not final:
            self.view.update(read_progress(self.out))
        try:
            records = read_cells(self.path)
            steps = self._capacity_steps() if self.searching else {}
        except RunError as error:
            if final:
                raise
            if str(error) not in self.warned:
                self.warned.add(str(error))
                self.write(f"warning: {error}")
            return []
        done = sum(
            1
            for number, record in enumerate(records, start=1)
            if number <= self.total and record.completed is not None
        )
        for number, record in enumerate(records, start=1):
            counted = record.completed is not None
            if self.shown.get(number) == counted:
                continue
            # A capacity search adds steps as it goes: past the grid's cells, no total and no ETA.
            searching = number > self.total
            step = steps.get((record.cell.name, record.repeat)) if searching else None
            waiting = counted and searching and self.searching and step is None and not record.drew_nothing
            if waiting and not final:
                continue  # its p95 is being computed: show the line once it is in capacity.json
            self.shown[number] = counted
            label = "confirmation " if step is not None and step.get("confirmation") else ""
            name = f"[{number}{'' if searching else f'/{self.total}'}] {label}{record.cell.name}"
            if self.repeats > 1 or (searching and record.repeat and label):
                name += f" (repeat {record.repeat + 1})"
            if not counted:
                self.write(f"{name}: running")
                continue
            if record.drew_nothing:
                again = "; the step runs again, twice as long" if searching and self.searching else ""
                self.write(f"{name}: {record.outcome()}{again}")
                continue
            took = f" in {record.end - record.start:.1f} s" if record.end is not None else " (interrupted)"
            verdict = f", {step_verdict(step, steps.get('slo'))}" if step is not None else ""
            if searching:
                eta = ""
            elif record.end is None:  # cut short: the walk ends here, nothing is left to wait for
                eta = self.not_run(done)
            else:
                eta = self.eta(records, done)
            self.write(f"{name}: {record.outcome()}{took}{verdict}{eta}")
        return records

    def not_run(self, done: int) -> str:
        """``; the run stopped, 2 cells not run`` after a cell cut short (an interrupted run)."""
        left = max(0, self.total - done)
        return f"; the run stopped, {left} cell{'s' if left > 1 else ''} not run" if left else ""

    def eta(self, records: Sequence[CellRecord], done: int) -> str:
        """``; ETA 1:10`` from the cells left's twins in an earlier repeat, else ``; 7 cells left``."""
        left = max(0, self.total - done)
        if not left:
            return ""
        measured: dict[tuple[str, int], float] = {}
        since = self.started
        for record in records[: self.total]:
            if record.end is None:
                break
            measured[(record.cell.name, record.repeat)] = record.end - since
            since = record.end
        seconds = grid_left_s(self.step_names[: self.total], done, measured)
        if seconds is None:
            return f"; {left} cell{'s' if left > 1 else ''} left"
        return f"; ETA {clock(max(0.0, seconds - (self.clock() - since)))}"

    def _capacity_steps(self) -> dict:
        """capacity.json's steps by (cell, repeat), and its target under ``"slo"``: the progress while
        the search runs, the answer's steps and confirmation steps once it is over."""
        path = self.capacity_path
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}  # the search writes it after its first step
        except (OSError, ValueError) as error:
            raise RunError(f"{path}: cannot be read as JSON ({error})", exit_code=1) from None
        if not isinstance(found, dict):
            raise RunError(f"{path}: expected a JSON object, found {type(found).__name__}", exit_code=1)
        if "progress" in found:
            steps, slo = found["progress"].get("steps", []), found["progress"].get("slo")
        else:
            capacity = found.get("capacity", {})
            confirming = [{**step, "confirmation": True} for step in capacity.get("confirmation", [])]
            steps, slo = [*capacity.get("steps", []), *confirming], found.get("slo")
        table: dict = {(step["cell"], int(step.get("repeat", 0))): step for step in steps if "cell" in step}
        table["slo"] = slo
        return table


def step_verdict(step: dict, slo: dict | None) -> str:
    """``p95 412 ms: met (<= 500 ms)``: a capacity step's p95 and its verdict against the target."""
    p95 = step.get("p95_latency_ms")
    figure = "p95 -" if p95 is None else f"p95 {p95:,.0f} ms"
    if slo is None:
        return figure
    target = f"<= {slo['p95_ms']:g} ms"
    if step.get("meets"):
        return f"{figure}: met ({target})"
    success = step.get("success_pct")
    if success is not None and success < slo["success_pct"]:
        return f"{figure}: missed ({success:.1f}% ok < {slo['success_pct']:g}%)"
    return f"{figure}: missed ({target})"


def capacity_answer(found: dict[str, Any]) -> str | None:
    """The console's last word on a capacity search, from run.json's ``capacity`` and ``slo``:
    ``capacity 26 requests/s (95% interval 24-28), 3,354 tokens/s at p95 <= 500 ms``."""
    capacity, slo = found.get("capacity"), found.get("slo")
    if not isinstance(capacity, dict) or not isinstance(slo, dict):
        return None
    target = f"p95 <= {slo['p95_ms']:g} ms and >= {slo['success_pct']:g}% ok"
    rate = capacity.get("requests_per_s") or 0
    if not rate:
        # The confirmation steps count: they may go below every search step.
        steps = (capacity.get("steps") or []) + (capacity.get("confirmation") or [])
        lowest = min((step["rate_per_s"] for step in steps), default=None)
        tried = f" (lowest rate tried: {lowest:.4g} requests/s)" if lowest is not None else ""
        return f"capacity: no rate tried meets {target}{tried}"
    bound = "at least " if capacity.get("at_rate_limit") else ""
    interval = capacity.get("interval")
    if isinstance(interval, dict):
        upper = interval.get("upper_requests_per_s")
        lower = interval["lower_requests_per_s"]
        span = f"{lower:g}-{upper:g}" if upper is not None else f"at least {lower:g}"
        spread = f" (95% interval {span})"
    else:
        spread = ""
    note = (
        ""
        if capacity.get("converged", True)
        else f"; not converged in {len(capacity.get('steps', []))} steps"
    )
    return (
        f"capacity {bound}{rate:g} requests/s{spread}, {capacity.get('tokens_per_s', 0):,.0f} tokens/s "
        f"at {target}{note}"
    )


@dataclass(frozen=True)
class Outcome:
    """What a run measured, from its cells.csv: the console summary, run.json's status, the exit code."""

    records: tuple[CellRecord, ...]
    steps: int  # cells planned over all repeats
    # Completed measured requests without a row in requests.csv.gz, by cell (see missing_records),
    # and the error of a record file that cannot be read at all.
    missing_records: dict[str, int] = field(default_factory=dict)
    records_error: str | None = None

    @property
    def planned(self) -> int:
        return sum(record.planned for record in self.records)

    @property
    def succeeded(self) -> int:
        return sum(record.succeeded for record in self.records)

    @property
    def completed(self) -> int:
        return sum(record.completed or 0 for record in self.records)

    @property
    def failure_pct(self) -> float:
        """Measured requests that failed or never finished, of those planned for the cells walked."""
        return 100.0 * (self.planned - self.succeeded) / self.planned if self.planned else 100.0

    @property
    def failures(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for record in self.records:
            for error, count in record.failures.items():
                total[error] = total.get(error, 0) + count
        return total

    @property
    def empty(self) -> list[CellRecord]:
        """Cells that completed no measured request at all (a rate cell that drew no arrival had
        nothing due: it is not among them)."""
        return [record for record in self.records if not record.completed and not record.drew_nothing]

    @property
    def drew_nothing(self) -> list[CellRecord]:
        return [record for record in self.records if record.drew_nothing]

    @property
    def cut_short(self) -> list[CellRecord]:
        return [record for record in self.records if record.completed and record.unfinished]

    @property
    def records_lost(self) -> int:
        return sum(self.missing_records.values())

    @property
    def workers_lost(self) -> dict[str, int]:
        """Cells in which Locust workers vanished, and how many."""
        return {record.cell.name: record.workers_lost for record in self.records if record.workers_lost}

    def losses(self) -> dict[str, Any]:
        """run.json's account of what the run lost (nothing when it lost nothing)."""
        found: dict[str, Any] = {}
        if self.missing_records:
            found["records_lost"] = self.records_lost
            found["records_lost_by_cell"] = dict(self.missing_records)
        if self.records_error:
            found["records_error"] = self.records_error
        if self.workers_lost:
            found["workers_lost"] = sum(self.workers_lost.values())
            found["workers_lost_by_cell"] = self.workers_lost
        return found

    @property
    def not_walked(self) -> int:
        """Cells of the grid never started (a capacity search's steps come on top of the grid's)."""
        return max(0, self.steps - len(self.records))

    def summary(self) -> list[str]:
        lines = [
            f"measured requests: {self.succeeded:,} of {self.planned:,} planned succeeded "
            f"({100 - self.failure_pct:.1f}%), {self.completed:,} completed, in {len(self.records)} "
            + (
                f"of {self.steps} cell(s)"
                if len(self.records) <= self.steps
                else "cell(s) and capacity steps"
            )
        ]
        if self.failures:
            lines.append(f"failures: {format_failures(self.failures)}")
        for label, records in (("cut short", self.cut_short), ("completed nothing", self.empty)):
            if records:
                listed = "; ".join(f"{r.cell.name}: {r.outcome()}" for r in records)
                lines.append(f"{len(records)} cell(s) {label}: {listed}")
        if self.drew_nothing:
            listed = "; ".join(record.cell.name for record in self.drew_nothing)
            lines.append(
                f"{len(self.drew_nothing)} rate cell(s) drew no arrival, so nothing was due: {listed}"
            )
        if self.not_walked:
            lines.append(f"{self.not_walked} cell(s) not walked")
        if self.workers_lost:
            listed = "; ".join(f"{cell} ({count})" for cell, count in self.workers_lost.items())
            lines.append(f"Locust worker(s) lost mid-cell, their users' requests with them: {listed}")
        if self.missing_records:
            listed = "; ".join(f"{cell}: {count}" for cell, count in self.missing_records.items())
            lines.append(
                f"request records LOST: {self.records_lost:,} completed measured request(s) have no row in "
                f"{RUN_FILES.requests} ({listed}); {RUN_FILES.log} says why"
            )
        if self.records_error:
            lines.append(f"request records unreadable: {self.records_error}")
        return lines

    def status(self) -> tuple[str, str | None]:
        """run.json's status, and the error that makes the exit code 1 (None when there is none)."""
        if not self.succeeded:
            first = self.records[0] if self.records else None
            if first is not None and self.not_walked and first.failures and not first.succeeded:
                return "failed (stopped after the first cell)", (
                    f"every request of the first cell failed ({format_failures(first.failures)}), so the "
                    "grid was not walked further; check --host, the endpoint path, the model and the key "
                    "or credentials"
                )
            return "failed (no measured request succeeded)", "no measured request succeeded"
        if self.empty or self.not_walked:
            count = len(self.empty) + self.not_walked
            return f"incomplete ({count} cell(s) measured nothing)", f"{count} cell(s) measured nothing"
        reasons = []
        if self.cut_short:
            reasons.append(f"{len(self.cut_short)} cell(s) cut short")
        if self.workers_lost:
            reasons.append(f"{sum(self.workers_lost.values())} Locust worker(s) lost")
        if self.missing_records:
            reasons.append(f"{self.records_lost} request record(s) lost")
        if self.records_error:
            reasons.append(f"{RUN_FILES.requests} unreadable")
        if reasons:
            return f"partial ({'; '.join(reasons)})", None
        return "completed", None


def execute(plan: RunPlan, write: Callable[[str], None] = print) -> int:
    """Run Locust for the plan; returns 0 when the run measured what it planned (cells cut short are
    listed), 1 when it measured nothing in some cell or failed beyond --max-failure-pct, 130 when
    stopped by a signal.

    Whatever happens after the run directory is created -- a signal, a dead worker, an error --
    the Locust processes are stopped and ``run.json`` gets its final status.
    """
    model = _reach_target(plan)
    started = _open_run_directory(plan, model)
    status, error, outcome, capacity = _run_locust(plan, model, started, write)
    return _conclude(plan, status, error, outcome, capacity, write)


def _reach_target(plan: RunPlan) -> str | None:
    """Wait until the target answers and learn the model it serves, before anything is written: a
    target that never comes up leaves no run directory behind. The model goes onto the Locust
    command line when none is given there, so what the users send is what run.json records."""
    try:
        wait_reachable(plan.host, BACKENDS[plan.backend].health_path, plan.ready_timeout_s)
    except PreflightError as error:
        raise RunError(str(error), error.exit_code) from None
    model = target_model(plan)
    backend = BACKENDS[plan.backend]
    settings = settings_of(plan.locust_args, plan.env)
    try:
        found = backend.discovered_args(settings, plan.host, model)
    except BackendError as error:
        raise RunError(str(error), exit_code=3) from None
    plan.hardware = backend.hardware(settings, plan.host)
    plan.server_counters = server_counters(plan)
    if model and not settings.get("--model"):
        plan.locust_args = [*plan.locust_args, "--model", model]  # send what is recorded
    plan.locust_args = [*plan.locust_args, *found]
    return model


SERVER_COUNTERS = {"tokens": "embed_tokens_total", "padded_tokens": "embed_batch_padded_tokens_sum"}


def server_counters(plan: RunPlan) -> dict[str, float] | None:
    """The bundled server's token counters from its ``/metrics`` (Prometheus text), or None for other
    backends or a server that gives none: the real and the padded tokens its forward passes computed."""
    if plan.backend != "self-hosted":
        return None
    try:
        with urllib.request.urlopen(f"{plan.host.rstrip('/')}/metrics", timeout=5) as response:
            text = response.read(4_000_000).decode("utf-8", "replace")
    except (OSError, ValueError):
        return None
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        for key, metric in SERVER_COUNTERS.items():
            if name == metric:
                values[key] = float(value)
    return values if len(values) == len(SERVER_COUNTERS) else None


def server_padding(plan: RunPlan) -> dict[str, Any] | None:
    """run.json's ``server_padding``: the tokens the server computed during the run (special tokens
    included) and how many of them were padding, from its counters before and after. None when
    either read failed or nothing ran; another client of the same server in the meantime counts too."""
    if plan.server_counters is None:
        return None
    end = server_counters(plan)
    if end is None:
        return None
    tokens = int(end["tokens"] - plan.server_counters["tokens"])
    padded = int(end["padded_tokens"] - plan.server_counters["padded_tokens"])
    if padded <= 0:
        return None
    return {"tokens": tokens, "padded_tokens": padded, "waste_pct": round(100.0 * (1 - tokens / padded), 2)}


def _open_run_directory(plan: RunPlan, model: str | None) -> dt.datetime:
    """Create the run directory, clear an earlier run's files out of it (``--force``) and mark it
    ``running`` in run.json, so a directory is reportable (or visibly unfinished) from the start.
    Returns the start time run.json records."""
    started = dt.datetime.now(dt.UTC)
    try:
        plan.out.mkdir(parents=True, exist_ok=True)
        clear_run_files(plan.out)
        write_run_json(plan, started, None, model, "running")
    except OSError as error:  # it was writable when the plan was checked
        raise RunError(f"--out {plan.out}: the run directory cannot be written ({error})") from None
    return started


def _run_locust(
    plan: RunPlan, model: str | None, started: dt.datetime, write: Callable[[str], None]
) -> tuple[str, str | None, Outcome, dict[str, Any]]:
    """Start Locust and follow it to its end with signals routed to a graceful stop; returns the
    final status, the error that makes the exit code 1 (or None), the outcome read from cells.csv
    and the request records, and run.json's capacity keys. A run file that cannot be read at the
    end (cells.csv, capacity.json) fails the run with an error that names it.

    The ``finally`` is the point of this function: whatever ends the run (the master exiting, a
    signal, a crashed worker, an error of our own), the processes are stopped, run.json gets its
    final status and the previous signal handlers come back. A Locust failure raises RunError with
    the tail of Locust's output once all of that is done."""
    previous = {signum: signal.signal(signum, _interrupt) for signum in STOP_SIGNALS}
    processes: list[subprocess.Popen] = []
    status = "failed (embed-bench error)"
    # The console's own output goes to a terminal through the view; a caller's write, as it is.
    interval = plan.progress_interval_s
    view = (
        ProgressView(interval_s=interval)
        if write is print
        else ProgressView(tty=False, interval_s=interval, plain_write=write)
    )
    write = view.write
    progress = Progress(plan, write, view=view)
    error: str | None = None
    telemetry = Telemetry(plan.telemetry or TelemetryPlan(None, 1.0, "not planned"), plan.out, write)
    try:
        telemetry.start()  # from before Locust starts to after it stops: the whole run is sampled
        status = _start_and_watch(plan, processes, progress, write)
    except KeyboardInterrupt:
        status = "interrupted"
        write("interrupted: stopping Locust (it writes its CSV files) ...")
    finally:
        view.close()
        _stop_processes(processes)
        plan.workload["server_metrics"] = telemetry.finish()
        outcome, capacity, broken = _final_outcome(plan, progress)
        locust_failed = status.startswith("failed")
        if broken is not None and not locust_failed:
            status, error = f"failed (unreadable run file: {broken})", broken
        elif status == "completed":
            status, error = outcome.status()
        padding = server_padding(plan)
        if padding:
            plan.workload["server_padding"] = padding
        extra = {**capacity, **outcome.losses()}
        write_run_json(plan, started, dt.datetime.now(dt.UTC), model, status, extra)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if locust_failed:
        raise _locust_failure(plan, status)
    return status, error, outcome, capacity


def _final_outcome(plan: RunPlan, progress: Progress) -> tuple[Outcome, dict[str, Any], str | None]:
    """Once Locust is stopped: the outcome (cells.csv, checked against the request records), the
    capacity answer, and what made a run file unreadable (None when nothing did)."""
    broken = None
    try:
        cells = tuple(progress.poll(final=True))
    except RunError as error:
        cells, broken = (), str(error)
    try:
        capacity = capacity_of(plan.out)
    except RunError as error:
        capacity, broken = {}, broken or str(error)
    missing, records_error = missing_records(plan.out, cells)
    return Outcome(cells, plan.steps, missing, records_error), capacity, broken


def missing_records(out: Path, cells: Sequence[CellRecord]) -> tuple[dict[str, int], str | None]:
    """Completed measured requests of each counted cell that have no row in ``requests.csv.gz``
    (rows the recorder could not write, a record file cut short), by cell; and the error of a
    record file that cannot be read at all (None when it can)."""
    try:
        counts = count_measured_records(out / RUN_FILES.requests)
    except RecordFileError as error:
        return {}, str(error)
    missing: dict[str, int] = {}
    for record in cells:
        if record.completed is None:
            continue
        short = record.completed - counts.get((record.cell.name, record.repeat), 0)
        if short > 0:
            label = record.cell.name + (f" (repeat {record.repeat + 1})" if record.repeat else "")
            missing[label] = missing.get(label, 0) + short
    return missing, None


def _start_and_watch(
    plan: RunPlan, processes: list[subprocess.Popen], progress: Progress, write: Callable[[str], None]
) -> str:
    """Start the Locust processes (each appended to ``processes`` at once, so the caller can stop
    the ones started even when a later one fails), their output into console.log; say what runs;
    follow the run until the master exits. Returns the status Locust's exit gives."""
    env = {**os.environ, **plan.env}
    with open(plan.out / RUN_FILES.console_log, "wb") as console:
        for command in locust_commands(plan):
            processes.append(
                subprocess.Popen(
                    command, stdout=console, stderr=subprocess.STDOUT, env=env, start_new_session=True
                )
            )
        write(_run_banner(plan))
        return _watch(processes, progress, write)


def _run_banner(plan: RunPlan) -> str:
    """The line that opens the console output: target, grid, repeats, processes, run directory."""
    repeats = f" x {plan.repeats} repeats" if plan.repeats > 1 else ""
    spec = plan.grid.capacity
    if spec is not None and not plan.grid.cells:
        what = f"a capacity search ({_search_banner(spec)})"
    else:
        search = f", then a capacity search ({_search_banner(spec)})" if spec is not None else ""
        what = f"grid {plan.grid.name} ({len(plan.grid.cells)} cells{repeats}{search})"
    return f"{plan.backend} at {plan.host}{_sent_to(plan)}: {what}, {plan.workers} Locust process(es) -> {plan.out}"


def _sent_to(plan: RunPlan) -> str:
    """`` (model 'minilm', POST /embeddings)``: what the requests name and where they go, given or
    found by the pre-run check on an OpenAI-compatible server, so a user sees what it found."""
    settings = settings_of(plan.locust_args, {})
    parts = [f"model {model!r}" for model in [settings.get("--model")] if model]
    parts += [f"POST {path}" for path in [settings.get("--embeddings-path")] if path]
    return f" ({', '.join(parts)})" if parts else ""


def _search_banner(spec: CapacitySpec) -> str:
    """``b=1 t=128 at p95 <= 500 ms and >= 99.9% ok, from 4 requests/s, steps <= 60 s``."""
    shapes = " + ".join(f"b={s.batch_size} t={s.passage_tokens}" for s in spec.shapes)
    return (
        f"{shapes} at p95 <= {spec.target.p95_latency_ms:g} ms and >= {spec.target.success_pct:g}% ok, "
        f"from {spec.start_rate:g} requests/s"
    )


def _stop_processes(processes: Sequence[subprocess.Popen]) -> None:
    """Stop every Locust process gracefully, the master first: it tells the workers to stop and
    writes the CSVs. Stop signals are ignored from here on, so a second Ctrl-C cannot cut that short.

    Locust is stopped with SIGINT, as a terminal's Ctrl-C would: a headless run with a load shape
    (every embed-bench run) waits on the shape before Locust installs its SIGTERM handler, so SIGTERM
    killed it outright -- no test_stop, so the running cell's counts never reached cells.csv and
    the console counted that cell's requests as 0 while its records held them."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    for process in processes:
        stop(process, grace_s=STOP_GRACE_S, signum=signal.SIGINT)


def _locust_failure(plan: RunPlan, status: str) -> RunError:
    """The error of a run Locust itself failed: where its output and log are, and their tail, since
    the reason is in there and not in anything embed-bench measured."""
    log_tail = (plan.out / RUN_FILES.console_log).read_text(errors="replace")[-2000:]
    return RunError(
        f"{status}; Locust's output is in {plan.out / RUN_FILES.console_log} "
        f"(its log in {plan.out / RUN_FILES.log}):\n{log_tail}",
        exit_code=1,
    )


def _conclude(
    plan: RunPlan,
    status: str,
    error: str | None,
    outcome: Outcome,
    capacity: dict[str, Any],
    write: Callable[[str], None],
) -> int:
    """Print the summary and turn the outcome into the exit code: 130 when interrupted, RunError
    (exit 1) when the run measured nothing somewhere or failed beyond --max-failure-pct, else 0."""
    for line in outcome.summary():
        write(line)
    answer = capacity_answer(capacity)
    if answer is not None:
        write(answer)
    write(f"run directory: {plan.out}  ({status})")
    if status == "interrupted":
        return 130
    if error is None:
        error = _over_failure_budget(plan, outcome)
    if error is not None:
        raise RunError(error, exit_code=1)
    return 0


def _over_failure_budget(plan: RunPlan, outcome: Outcome) -> str | None:
    """Why the run failed --max-failure-pct (for CI), or None when it is not set or was kept."""
    if plan.max_failure_pct is not None and outcome.failure_pct > plan.max_failure_pct:
        return (
            f"{outcome.failure_pct:.1f}% of the measured requests failed or did not finish, "
            f"over --max-failure-pct {plan.max_failure_pct:g}"
        )
    return None


def _watch(
    processes: list[subprocess.Popen], progress: Progress, write: Callable[[str], None] = print
) -> str:
    """Follow the run until the master exits. A worker that dies first (a crash, a kill) is said on
    the console and the run goes on with the others: the master marks it missing, the cell it was in
    records the loss (``workers_lost`` in cells.csv) and the following cells go to the workers left.
    Only when every worker is gone does the run fail.

    Workers exit with 0 when the master tells them to quit, shortly before the master itself exits;
    any other code (an exception, a signal) means the run lost part of its load."""
    master, workers = processes[0], processes[1:]
    reported: set[int] = set()
    while master.poll() is None:
        progress.poll()
        for number, worker in enumerate(workers, start=1):
            if number in reported or worker.poll() in (None, 0):
                continue
            reported.add(number)
            left = sum(1 for other in workers if other.poll() is None)
            write(
                f"Locust worker {number} exited with code {worker.returncode} during the run; "
                + (f"the run goes on with {left} worker(s)" if left else "no worker is left")
            )
        if workers and len(reported) == len(workers):
            return "failed (every Locust worker exited before the run ended)"
        time.sleep(0.5)
    return "completed" if master.returncode == 0 else f"failed (locust exit code {master.returncode})"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    args, passthrough = build_parser(prog).parse_known_args(argv)
    try:
        return execute(plan_run(args, passthrough))
    except RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:  # before the run started (the wait for the target): nothing was written
        print("interrupted before the run started; nothing was written", file=sys.stderr)
        return 130
