"""``embed-bench run``: one Locust run over a grid, into a reportable run directory.

Everything that can be wrong is checked before anything is written or started (backend, grid file,
keys, credentials, output directory, reachability of the target), so a failed start leaves nothing
half-written. Then ``locust --headless`` runs (one process, or a master with N local workers), its
progress is shown per cell from ``cells.csv`` with an ETA, and ``run.json`` records what ran --
never a secret. Ctrl-C stops Locust gracefully, so the directory stays reportable.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from embed_bench.contract import RUN_FILES
from locustfiles.backends import BACKENDS, BackendError, Settings
from locustfiles.cells import Grid, GridError, load_grid
from target_server.launcher import free_port, http_status, stop

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
    grid_spec: str
    grid: Grid
    out: Path
    workers: int
    label: str
    pricing: str | None
    locust_args: list[str]
    env: dict[str, str] = field(repr=False)
    ready_timeout_s: float = 300.0


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "embed-bench run",
        description="Run Locust headless over a grid against one backend and write a run directory "
        "(locust_stats.csv, locust_stats_history.csv, locust_failures.csv, cells.csv, run.json). "
        "Unknown options go to Locust and the embed-bench user classes "
        "(e.g. --requests-per-user 5, --model, --api-key, --sagemaker-endpoint).",
    )
    parser.add_argument(
        "--backend",
        required=True,
        choices=sorted(BACKENDS),
        help="; ".join(f"{name}: {b.description}" for name, b in BACKENDS.items()),
    )
    parser.add_argument("--host", help="base URL of the target (default: the backend's, if it has one)")
    parser.add_argument("--grid", default="quick", help="quick | article | throughput | a grid TOML file")
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
        help="how long to wait for the target to be reachable (self-hosted: /health 200)",
    )
    parser.add_argument("--force", action="store_true", help="reuse a run directory that holds a run")
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


def wait_reachable(backend: str, host: str, timeout_s: float) -> None:
    """Self-hosted: wait for /health 200 (the model may still be loading). Others: a TCP connect."""
    parts = urlsplit(host)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    health_path = BACKENDS[backend].health_path
    deadline = time.monotonic() + timeout_s
    announced = False
    while True:
        if health_path:
            status = http_status(f"{host}{health_path}")
            if status == 200:
                return
            problem = "connection refused" if status is None else f"/health answers {status}"
        else:
            try:
                with socket.create_connection((parts.hostname, port), timeout=5):
                    return
            except OSError as error:
                problem = error.strerror or str(error)
        if time.monotonic() >= deadline:
            raise RunError(
                f"cannot reach {host} ({problem}) after {timeout_s:g} s; is the target running "
                "and --host right?",
                exit_code=3,
            )
        if not announced:
            print(f"waiting up to {timeout_s:g} s for {host} ({problem}) ...", file=sys.stderr, flush=True)
            announced = True
        time.sleep(0.5)


def check_out_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file; give a directory")
    if out.is_dir() and any((out / name).exists() for name in RUN_FILES.marks_a_run) and not force:
        raise RunError(f"{out} already holds a run; choose another --out or pass --force")


def clear_run_files(out: Path) -> None:
    """``--force``: remove an earlier run's files, so nothing of it mixes into the new run or report."""
    for pattern in RUN_FILES.written_by_a_run:
        for path in out.glob(pattern):
            path.unlink()


def plan_run(args: argparse.Namespace, passthrough: Sequence[str]) -> RunPlan:
    """Validate everything that does not need the network; raises RunError with what to fix."""
    if args.workers < 1:
        raise RunError("--workers must be at least 1")
    try:
        grid = load_grid(args.grid)
    except GridError as error:
        raise RunError(f"bad grid: {error}") from None
    locust_args, env = split_secrets(passthrough)
    settings = settings_of(locust_args, env)
    try:
        BACKENDS[args.backend].check_credentials(settings)
    except BackendError as error:
        raise RunError(str(error)) from None
    host = resolve_host(args.backend, args.host, settings)
    out = args.out or Path("runs") / f"{args.backend}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    check_out_dir(out, args.force)
    return RunPlan(
        backend=args.backend,
        host=host,
        grid_spec=args.grid,
        grid=grid,
        out=out,
        workers=args.workers,
        label=args.label or out.name,
        pricing=args.pricing,
        locust_args=locust_args,
        env=env,
        ready_timeout_s=args.ready_timeout,
    )


def locust_commands(plan: RunPlan) -> list[list[str]]:
    """The Locust processes: one headless process, or a headless master plus N workers."""
    backend = BACKENDS[plan.backend]
    base = [sys.executable, "-m", "locust", "-f", str(backend.locustfile)]
    master = [
        *base,
        backend.user_class,
        "--headless",
        "-H",
        plan.host,
        "--grid",
        plan.grid_spec,
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
        *base,
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


def write_run_json(
    plan: RunPlan, started: dt.datetime, ended: dt.datetime | None, model: str | None, status: str
) -> None:
    record = {
        "name": plan.out.name,
        "label": plan.label,
        "backend": plan.backend,
        "host": plan.host,
        "model": model,
        "grid": plan.grid_spec if plan.grid.name == plan.grid_spec else plan.grid.name,
        "cells": [cell.name for cell in plan.grid.cells],
        "workers": plan.workers,
        "started_at": started.isoformat(timespec="seconds"),
        "ended_at": ended.isoformat(timespec="seconds") if ended else None,
        "status": status,
        "pricing": plan.pricing,
        "locust_args": plan.locust_args,  # secrets were moved out (split_secrets)
        "versions": versions(),
    }
    temporary = plan.out / f".{RUN_FILES.run_json}.tmp"
    temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    temporary.replace(plan.out / RUN_FILES.run_json)


class Progress:
    """Prints a line when a cell starts or ends, from cells.csv, with an ETA from the cells so far."""

    def __init__(self, plan: RunPlan, write: Callable[[str], None]) -> None:
        self.path = plan.out / RUN_FILES.cells_csv
        self.total = len(plan.grid.cells)
        self.write = write
        self.seen: dict[str, tuple[bool, bool]] = {}

    def poll(self) -> None:
        try:
            with open(self.path, newline="", encoding="utf-8") as stream:
                rows = list(csv.DictReader(stream))
        except OSError:
            return
        durations = [float(r["end"]) - float(r["start"]) for r in rows if r.get("end")]
        for number, row in enumerate(rows, start=1):
            state = (True, bool(row.get("end")))
            if self.seen.get(row["cell"]) == state:
                continue
            self.seen[row["cell"]] = state
            if state[1]:
                remaining = self.total - len(durations)
                eta = sum(durations) / len(durations) * remaining if durations else 0
                self.write(
                    f"[{number}/{self.total}] {row['cell']}: done in "
                    f"{float(row['end']) - float(row['start']):.1f} s; ETA {_clock(eta)}"
                )
            else:
                self.write(f"[{number}/{self.total}] {row['cell']}: running")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}"


def execute(plan: RunPlan, write: Callable[[str], None] = print) -> int:
    """Run Locust for the plan; returns 0 when the run completed, 130 when stopped by a signal.

    Whatever happens after the run directory is created -- a signal, a dead worker, an error --
    the Locust processes are stopped and ``run.json`` gets its final status.
    """
    wait_reachable(plan.backend, plan.host, plan.ready_timeout_s)
    model = target_model(plan)
    if model and not settings_of(plan.locust_args, plan.env).get("--model"):
        plan.locust_args = [*plan.locust_args, "--model", model]  # send what is recorded
    plan.out.mkdir(parents=True, exist_ok=True)
    clear_run_files(plan.out)
    started = dt.datetime.now(dt.UTC)
    write_run_json(plan, started, None, model, "running")
    env = {**os.environ, **plan.env}
    previous = {signum: signal.signal(signum, _interrupt) for signum in STOP_SIGNALS}
    processes: list[subprocess.Popen] = []
    status = "failed (embed-bench error)"
    try:
        with open(plan.out / RUN_FILES.console_log, "wb") as console:
            for command in locust_commands(plan):
                processes.append(
                    subprocess.Popen(
                        command, stdout=console, stderr=subprocess.STDOUT, env=env, start_new_session=True
                    )
                )
            write(
                f"{plan.backend} at {plan.host}: grid {plan.grid.name} ({len(plan.grid.cells)} cells), "
                f"{plan.workers} Locust process(es) -> {plan.out}"
            )
            status = _watch(processes, Progress(plan, write))
    except KeyboardInterrupt:
        status = "interrupted"
        write("interrupted: stopping Locust (it writes its CSV files) ...")
    finally:
        for signum in STOP_SIGNALS:  # a second signal must not cut the graceful stop short
            signal.signal(signum, signal.SIG_IGN)
        for process in processes:  # the master first: it tells the workers to stop and writes the CSVs
            stop(process, grace_s=STOP_GRACE_S)
        write_run_json(plan, started, dt.datetime.now(dt.UTC), model, status)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if status.startswith("failed"):
        log_tail = (plan.out / RUN_FILES.console_log).read_text(errors="replace")[-2000:]
        raise RunError(f"{status}; see {plan.out / RUN_FILES.console_log}:\n{log_tail}", exit_code=1)
    write(f"run directory: {plan.out}  ({status})")
    return 130 if status == "interrupted" else 0


def _watch(processes: list[subprocess.Popen], progress: Progress) -> str:
    """Follow the run until the master exits; a worker that crashes first fails the run.

    Workers exit with 0 when the master tells them to quit, shortly before the master itself exits;
    any other code (an exception, a signal) means the run lost part of its load."""
    master, workers = processes[0], processes[1:]
    while master.poll() is None:
        progress.poll()
        crashed = [worker for worker in workers if worker.poll() not in (None, 0)]
        if crashed:
            return f"failed (a Locust worker exited with code {crashed[0].returncode} before the run ended)"
        time.sleep(0.5)
    progress.poll()
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
