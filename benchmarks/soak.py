"""Soak: the bundled server held at a rate it sustains for 10 minutes, then overloaded; does anything
leak, fail or break?

One real server (gunicorn, the bundled model, one torch thread, ``--threads 12``, an admission limit
of ``--max-queue-tokens 2048``: eight 8 x 32-token requests) goes through five phases:

1. capacity: 6 closed-loop clients for ``--calibration-s`` (30 s): six requests in flight stay within
   the admission limit, so no CPU goes to answering 429s; the rate of 200s is the capacity C. Then
   5 s of 16 clients, more than the request threads (a client pauses 50 ms after a 429), so that
   gunicorn's thread pool, which grows only when every thread is busy, reaches its size now; then
   ``--warm-up-s`` (30 s) of the overload below, so that the worker's memory has met the run's
   largest working set (the admission limit full, 64 connections) before the start is taken: the
   first run, without it, found RSS 6.3% up at the end, in one step during the overload, which
   compares an allocator that had never held that much with one that had, not a leak.
2. calibration: an open loop (Poisson arrivals, up to 64 senders) at 0.6 C for ``--calibration-s``;
   while fewer than 97% of its arrivals get 200, the rate is cut by a quarter and tried again (3
   tries at most). The rate that passes is the steady rate R.
3. steady: the open loop at R for ``--steady-minutes`` (10).
4. overload: the open loop at 3 C for ``--overload-minutes`` (2): admission control must answer 429.
5. recovery: the open loop at R for ``--recovery-minutes`` (1).

Every arrival's outcome is counted: its HTTP status, the class of the exception it raised (a refused
connection, a timeout, a broken response), or "dropped" when no sender was free within 5 s. Every
``--interval-s`` the script prints the server worker's RSS, threads and open files with that
interval's outcomes. Before the steady phase and after the recovery, with every client connection
closed and the server idle, it takes the worker's RSS, threads and open files: the start and the end.

The verdict (exit status 0 only when it passes) fails on any of:
- the steady or the recovery phase under 95% of arrivals answered 200 (exceptions, 5xx, 429s and
  drops all count against it);
- in any phase, a 5xx, an exception, a status other than 200 and 429, or a dropped arrival;
- an overload phase without a 429 (it did not reach the admission limit, so it tested nothing);
- RSS at the end more than 5% above the start, or threads or open files not equal to the start's
  (``--rss-tolerance-pct``, ``--threads-tolerance``, ``--fds-tolerance``);
- ``/health`` not 200 afterwards, or a restarted worker.

    .venv/bin/python benchmarks/soak.py                  # ~15 minutes
    .venv/bin/python benchmarks/soak.py --steady-minutes 0.5 --overload-minutes 0.25 \\
        --recovery-minutes 0.25 --calibration-s 10      # a quick check that it runs

With --out DIR it also writes DIR/soak.txt (what it prints), DIR/soak.json (every sample, phase and
snapshot, and the verdict), DIR/soak-server.log (the server's log) and DIR/soak-load.json (load
averages before and after).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gevent
import psutil
import requests
from geventhttpclient import HTTPClient
from raw_out import raw_results, write_json

from embed_bench.core.payloads import PassageFactory
from embed_bench.load.open_loop import DispatchSummary, Outcome, run_open_loop
from target_server.launcher import running_target_server

# A 429 is answered at once; a short pause keeps closed-loop clients from spinning on the CPU the
# server needs, while the backlog they rejoin is still full.
BACKOFF_AFTER_429_S = 0.05
CALIBRATION_MIN_SUCCESS = 0.97  # the calibration asks more than the steady phase's 95%: a margin
CALIBRATION_TRIES = 3
CALIBRATION_CUT = 0.75
WARM_THREADS_S = 5.0
SENDERS = 64  # the open loop's senders: far more than the server's threads, so they are not the limit
JSON_HEADERS = {"Content-Type": "application/json"}


# --- outcomes --------------------------------------------------------------------------------------
def outcome_class(kind: str) -> str:
    """``200``, ``429``, ``5xx``, ``other status``, ``dropped`` or ``exception`` for a recorded kind
    (an HTTP status as text, ``dropped``, or an exception's class name)."""
    if kind in ("200", "429", "dropped"):
        return kind
    if kind.isdigit():
        return "5xx" if int(kind) >= 500 else "other status"
    return "exception"


def classes(counts: Counter[str]) -> Counter[str]:
    totals: Counter[str] = Counter()
    for kind, count in counts.items():
        totals[outcome_class(kind)] += count
    return totals


@dataclass
class PhaseResult:
    """One phase's outcomes: every arrival (or closed-loop request) counted by what became of it."""

    name: str
    offered_per_s: float | None  # None: the closed loop
    seconds: float
    counts: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)  # of the 200s, from the planned send
    dispatch: DispatchSummary | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def success_share(self) -> float:
        return self.counts["200"] / self.total if self.total else 0.0

    @property
    def ok_per_s(self) -> float:
        return self.counts["200"] / self.seconds if self.seconds else 0.0

    def latency_ms(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)] if ordered else math.nan

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "offered_per_s": self.offered_per_s,
            "seconds": self.seconds,
            "counts": dict(self.counts),
            "classes": dict(classes(self.counts)),
            "success_share": self.success_share,
            "ok_per_s": self.ok_per_s,
            "latency_ms": {f"p{q}": self.latency_ms(q) for q in (50, 90, 99)},
            "dispatch": asdict(self.dispatch) if self.dispatch else None,
        }


# --- the server worker's footprint -----------------------------------------------------------------
@dataclass(frozen=True)
class Footprint:
    rss_mib: float
    threads: int
    fds: int


def footprint(worker: psutil.Process) -> Footprint | None:
    """The worker's RSS, threads and open files; None once it is gone."""
    try:
        with worker.oneshot():
            return Footprint(worker.memory_info().rss / 2**20, worker.num_threads(), worker.num_fds())
    except psutil.NoSuchProcess:
        return None


def idle_footprint(worker: psutil.Process, settle_s: float = 2.0, limit_s: float = 20.0) -> Footprint | None:
    """The footprint once the worker has closed the connections the clients closed: after
    ``settle_s``, the first of two readings 0.5 s apart that agree on threads and open files."""
    gevent.sleep(settle_s)
    deadline = time.monotonic() + limit_s
    last = footprint(worker)
    while last is not None and time.monotonic() < deadline:
        gevent.sleep(0.5)
        now = footprint(worker)
        if now is None or (now.threads, now.fds) == (last.threads, last.fds):
            return now
        last = now
    return last


@dataclass(frozen=True)
class Sample:
    elapsed_s: float
    phase: str
    footprint: Footprint | None
    counts: Counter[str]


class Monitor:
    """Counts outcomes per phase and per interval, and samples the worker every ``interval_s``."""

    def __init__(self, worker: psutil.Process, interval_s: float) -> None:
        self.worker, self.interval_s = worker, interval_s
        self.phase: PhaseResult | None = None
        self.samples: list[Sample] = []
        self._interval: Counter[str] = Counter()
        self._started = time.monotonic()
        self._sampler: gevent.Greenlet | None = None

    def record(self, kind: str, latency_ms: float | None = None) -> None:
        assert self.phase is not None
        self.phase.counts[kind] += 1
        self._interval[kind] += 1
        if kind == "200" and latency_ms is not None:
            self.phase.latencies_ms.append(latency_ms)

    def start(self) -> None:
        print(
            f"{'elapsed s':>9} {'phase':<11}{'RSS MiB':>8}{'threads':>8}{'files':>6}{'200':>7}{'429':>7}"
            f"{'5xx':>5}{'exc':>5}{'other':>6}{'drop':>5}",
            flush=True,
        )
        self._sampler = gevent.spawn(self._sample_forever)

    def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.kill()
        self.take_sample()

    def _sample_forever(self) -> None:
        while True:
            gevent.sleep(self.interval_s)
            self.take_sample()

    def take_sample(self) -> None:
        counts, self._interval = self._interval, Counter()
        sample = Sample(
            time.monotonic() - self._started,
            self.phase.name if self.phase else "-",
            footprint(self.worker),
            counts,
        )
        self.samples.append(sample)
        c, f = classes(counts), sample.footprint
        shown = f"{f.rss_mib:8.1f}{f.threads:8d}{f.fds:6d}" if f else f"{'worker gone':>22}"
        print(
            f"{sample.elapsed_s:9.0f} {sample.phase:<11}{shown}{c['200']:7d}{c['429']:7d}{c['5xx']:5d}"
            f"{c['exception']:5d}{c['other status']:6d}{c['dropped']:5d}",
            flush=True,
        )


# --- the load --------------------------------------------------------------------------------------
def post(client: HTTPClient, body: bytes) -> str:
    """One ``POST /embed``: its status as text, or the class name of whatever it raised."""
    try:
        response = client.post("/embed", body=body, headers=JSON_HEADERS)
        response.read()
        return str(response.status_code)
    except (Exception, gevent.Timeout) as error:  # gevent.Timeout is no Exception: count it too
        return type(error).__name__


def closed_loop(
    monitor: Monitor, name: str, url: str, bodies: list[bytes], clients: int, seconds: float
) -> PhaseResult:
    """``clients`` clients, each sending its next request when the last one returned."""
    result = monitor.phase = PhaseResult(name, None, seconds)
    client = HTTPClient.from_url(url, concurrency=clients, connection_timeout=10, network_timeout=120)
    deadline = time.monotonic() + seconds
    started = time.monotonic()

    def loop(index: int) -> None:
        n = index
        while time.monotonic() < deadline:
            sent = time.perf_counter()
            kind = post(client, bodies[n % len(bodies)])
            monitor.record(kind, (time.perf_counter() - sent) * 1000)
            n += clients
            if kind == "429":
                gevent.sleep(BACKOFF_AFTER_429_S)

    gevent.joinall([gevent.spawn(loop, i) for i in range(clients)], raise_error=True)
    result.seconds = time.monotonic() - started
    client.close()
    return result


def poisson_offsets(rate: float, seconds: float, seed: int) -> Iterator[float]:
    rng = random.Random(f"soak {seed}")
    offset = rng.expovariate(rate)
    while offset < seconds:
        yield offset
        offset += rng.expovariate(rate)


def open_loop(
    monitor: Monitor, name: str, url: str, bodies: list[bytes], rate: float, seconds: float, seed: int
) -> PhaseResult:
    """Poisson arrivals at ``rate`` for ``seconds``, sent whether or not earlier ones returned."""
    result = monitor.phase = PhaseResult(name, rate, seconds)
    client = HTTPClient.from_url(url, concurrency=SENDERS, connection_timeout=10, network_timeout=120)

    def report(outcome: Outcome[bytes, str]) -> None:
        monitor.record("dropped" if outcome.dropped else str(outcome.result), outcome.latency_ms)

    arrivals = (
        (offset, bodies[i % len(bodies)]) for i, offset in enumerate(poisson_offsets(rate, seconds, seed))
    )
    result.dispatch = run_open_loop(
        arrivals,
        lambda body, _planned_at: post(client, body),
        max_in_flight=SENDERS,
        duration_s=seconds,
        on_outcome=report,
    )
    client.close()
    return result


# --- the verdict -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SoakLimits:
    min_success: float = 0.95
    rss_tolerance_pct: float = 5.0
    threads_tolerance: int = 0
    fds_tolerance: int = 0


def soak_problems(
    phases: list[PhaseResult],
    start: Footprint | None,
    end: Footprint | None,
    healthy: bool,
    same_worker: bool,
    limits: SoakLimits,
) -> list[str]:
    """Every reason the soak fails, one sentence each; none: it passes."""
    problems: list[str] = []
    for phase in phases:
        c = classes(phase.counts)
        bad = {k: c[k] for k in ("5xx", "exception", "other status", "dropped") if c[k]}
        if bad:
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(phase.counts.items()) if outcome_class(k) in bad)
            problems.append(f"{phase.name}: {sum(bad.values())} requests neither 200 nor 429 ({kinds})")
        if phase.name in ("steady", "recovery") and phase.success_share < limits.min_success:
            problems.append(
                f"{phase.name}: {phase.success_share:.1%} of {phase.total} arrivals answered 200, "
                f"under {limits.min_success:.0%}"
            )
        if phase.name == "overload" and not c["429"]:
            problems.append("overload: no 429, so it never reached the admission limit")
    if start is None or end is None:
        problems.append("the worker's footprint could not be read at the start or the end (worker gone)")
    else:
        growth = (end.rss_mib - start.rss_mib) / start.rss_mib * 100
        if growth > limits.rss_tolerance_pct:
            problems.append(
                f"RSS grew {growth:+.1f}% ({start.rss_mib:.1f} -> {end.rss_mib:.1f} MiB), "
                f"over {limits.rss_tolerance_pct:g}%"
            )
        if abs(end.threads - start.threads) > limits.threads_tolerance:
            problems.append(f"threads {start.threads} -> {end.threads}, beyond +-{limits.threads_tolerance}")
        if abs(end.fds - start.fds) > limits.fds_tolerance:
            problems.append(f"open files {start.fds} -> {end.fds}, beyond +-{limits.fds_tolerance}")
    if not healthy:
        problems.append("/health did not answer 200 afterwards")
    if not same_worker:
        problems.append("the worker was restarted")
    return problems


# --- the run ---------------------------------------------------------------------------------------
def gunicorn_worker() -> psutil.Process:
    """The worker that owns the model: the child of the gunicorn master this process started."""
    for child in psutil.Process(os.getpid()).children(recursive=True):
        if child.ppid() != os.getpid() and "target_server" in " ".join(child.cmdline()):
            return child
    raise RuntimeError("no gunicorn worker found under this process")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--steady-minutes", type=float, default=10.0, help="the steady phase (default: 10)")
    add("--overload-minutes", type=float, default=2.0, help="the overload phase (default: 2)")
    add("--recovery-minutes", type=float, default=1.0, help="the recovery phase (default: 1)")
    add(
        "--calibration-s",
        type=float,
        default=30.0,
        help="the capacity phase and each calibration try (default: 30)",
    )
    add(
        "--warm-up-s",
        type=float,
        default=30.0,
        help="overload before the start is taken; 0: none, as the first run (default: 30)",
    )
    add("--load-fraction", type=float, default=0.6, help="first steady rate tried, x capacity (default: 0.6)")
    add("--overload-factor", type=float, default=3.0, help="overload rate, x capacity (default: 3)")
    add(
        "--clients",
        type=int,
        default=6,
        help="closed-loop clients of the capacity phase, within the admission limit (default: 6)",
    )
    add("--threads", type=int, default=12, help="the server's request threads (default: 12)")
    add("--max-queue-tokens", type=int, default=2048, help="the server's admission limit (default: 2048)")
    add("--inputs", type=int, default=8, help="inputs per request (default: 8)")
    add("--passage-tokens", type=int, default=32, help="tokens per input (default: 32)")
    add("--interval-s", type=float, default=30.0, help="seconds between samples (default: 30)")
    add("--min-success", type=float, default=0.95, help="steady and recovery: share of 200s (default: 0.95)")
    add("--rss-tolerance-pct", type=float, default=5.0, help="RSS growth, end vs start (default: 5)")
    add("--threads-tolerance", type=int, default=0, help="threads, end vs start (default: 0)")
    add("--fds-tolerance", type=int, default=0, help="open files, end vs start (default: 0)")
    add("--out", type=Path, help="raw results: DIR/soak.txt, soak.json, soak-server.log, soak-load.json")
    args = parser.parse_args(argv)
    positive = ("steady_minutes", "overload_minutes", "recovery_minutes", "calibration_s", "load_fraction")
    positive += ("overload_factor", "clients", "threads", "max_queue_tokens", "inputs", "passage_tokens")
    if min(getattr(args, name) for name in (*positive, "interval_s")) <= 0:
        parser.error("every duration, rate factor, count and --interval-s must be positive")
    if (
        not 0 < args.min_success <= 1
        or min(args.rss_tolerance_pct, args.threads_tolerance, args.fds_tolerance) < 0
    ):
        parser.error("--min-success must be in (0, 1]; the tolerances must not be negative")
    with raw_results(args.out, "soak"):
        return soak(args)


def soak(args: argparse.Namespace) -> int:
    limits = SoakLimits(args.min_success, args.rss_tolerance_pct, args.threads_tolerance, args.fds_tolerance)
    # Distinct token-exact passages (the Locust side's), 8 x 32 tokens a request by default: the
    # admission limit holds eight of them, the server's threads twelve, so an overload gets 429s.
    passages = PassageFactory(seed=1).passages(32 * args.inputs, args.passage_tokens, stream="soak")
    bodies = [
        json.dumps({"texts": passages[i : i + args.inputs]}).encode()
        for i in range(0, len(passages), args.inputs)
    ]
    server_args = (
        "--cpu-threads", "1", "--threads", str(args.threads), "--max-queue-tokens", str(args.max_queue_tokens),
    )  # fmt: skip
    log_path = args.out / "soak-server.log" if args.out else None
    phases: list[PhaseResult] = []
    tries: list[dict] = []
    print(
        f"soak: server {' '.join(server_args)}; requests {args.inputs} x {args.passage_tokens} tokens; "
        f"steady {args.steady_minutes:g} min, overload {args.overload_minutes:g} min, recovery "
        f"{args.recovery_minutes:g} min",
        flush=True,
    )
    with running_target_server(*server_args, log_path=log_path) as url:
        worker = gunicorn_worker()
        monitor = Monitor(worker, args.interval_s)
        print(f"worker pid {worker.pid}, at start: {footprint(worker)}")
        monitor.start()
        capacity = closed_loop(monitor, "capacity", url, bodies, args.clients, args.calibration_s)
        # More clients than request threads for a few seconds: gunicorn grows its thread pool only
        # when every thread is busy, so the pool reaches its size here, before the start's footprint.
        phases.append(capacity)
        phases.append(closed_loop(monitor, "threads", url, bodies, args.threads + 4, WARM_THREADS_S))
        overload_rate = args.overload_factor * capacity.ok_per_s
        if args.warm_up_s > 0:
            phases.append(open_loop(monitor, "warm-up", url, bodies, overload_rate, args.warm_up_s, seed=0))
        if capacity.ok_per_s <= 0:
            monitor.stop()
            print("verdict: FAIL: the capacity phase got no 200 at all")
            return 1
        rate = args.load_fraction * capacity.ok_per_s
        for attempt in range(1, CALIBRATION_TRIES + 1):
            trial = open_loop(
                monitor, f"calibrate{attempt}", url, bodies, rate, args.calibration_s, seed=attempt
            )
            phases.append(trial)
            tries.append({"rate_per_s": rate, "success_share": trial.success_share})
            if trial.success_share >= CALIBRATION_MIN_SUCCESS or attempt == CALIBRATION_TRIES:
                break
            rate *= CALIBRATION_CUT
        steady_rate = rate
        start = idle_footprint(worker)
        print(f"start (idle, connections closed): {start}; steady rate {steady_rate:.2f}/s", flush=True)
        plan = (
            ("steady", steady_rate, args.steady_minutes),
            ("overload", overload_rate, args.overload_minutes),
            ("recovery", steady_rate, args.recovery_minutes),
        )
        for seed, (name, phase_rate, minutes) in enumerate(plan, start=10):
            phases.append(open_loop(monitor, name, url, bodies, phase_rate, minutes * 60, seed))
        monitor.stop()
        end = idle_footprint(worker)
        print(f"end (idle, connections closed): {end}", flush=True)
        healthy = requests.get(f"{url}/health", timeout=10).status_code == 200
        same_worker = gunicorn_worker().pid == worker.pid

    report_phases(capacity, steady_rate, phases)
    problems = soak_problems(phases, start, end, healthy, same_worker, limits)
    print_verdict(start, end, monitor.samples, problems)
    status = 1 if problems else 0
    if args.out:
        write_json(
            args.out / "soak.json",
            {
                "args": vars(args),
                "server_args": server_args,
                "limits": asdict(limits),
                "capacity_per_s": capacity.ok_per_s,
                "calibration": tries,
                "steady_rate_per_s": steady_rate,
                "phases": [phase.as_json() for phase in phases],
                "start": asdict(start) if start else None,
                "end": asdict(end) if end else None,
                "samples": [
                    {
                        "elapsed_s": s.elapsed_s,
                        "phase": s.phase,
                        "footprint": asdict(s.footprint) if s.footprint else None,
                        "counts": dict(s.counts),
                    }
                    for s in monitor.samples
                ],
                "health_200_after": healthy,
                "same_worker": same_worker,
                "problems": problems,
                "exit_status": status,
            },
        )
    return status


def report_phases(capacity: PhaseResult, steady_rate: float, phases: list[PhaseResult]) -> None:
    print(
        f"\ncapacity {capacity.ok_per_s:.2f} requests/s (200s of the closed loop); steady rate {steady_rate:.2f}/s"
    )
    print(
        f"{'phase':<11}{'offered/s':>10}{'seconds':>8}{'arrivals':>9}{'200':>7}{'429':>7}{'5xx':>5}"
        f"{'exc':>5}{'other':>6}{'drop':>5}{'200 share':>10}{'p50 ms':>8}{'p99 ms':>8}{'lag p99':>8}"
    )
    for p in phases:
        c = classes(p.counts)
        offered = "closed" if p.offered_per_s is None else f"{p.offered_per_s:.2f}"
        lag = f"{p.dispatch.lag_p99_ms:8.1f}" if p.dispatch else f"{'-':>8}"
        print(
            f"{p.name:<11}{offered:>10}{p.seconds:8.0f}{p.total:9d}{c['200']:7d}{c['429']:7d}{c['5xx']:5d}"
            f"{c['exception']:5d}{c['other status']:6d}{c['dropped']:5d}{p.success_share:10.1%}"
            f"{p.latency_ms(50):8.0f}{p.latency_ms(99):8.0f}{lag}"
        )
    exceptions = Counter(
        {k: v for p in phases for k, v in p.counts.items() if outcome_class(k) == "exception"}
    )
    if exceptions:
        print("exceptions: " + ", ".join(f"{k} {v}" for k, v in exceptions.most_common()))


def print_verdict(
    start: Footprint | None, end: Footprint | None, samples: list[Sample], problems: list[str]
) -> None:
    seen = [s.footprint for s in samples if s.footprint is not None]
    if start and end and seen:
        print(
            f"footprint start -> end (idle): RSS {start.rss_mib:.1f} -> {end.rss_mib:.1f} MiB "
            f"({(end.rss_mib - start.rss_mib) / start.rss_mib * 100:+.1f}%), threads {start.threads} -> "
            f"{end.threads}, open files {start.fds} -> {end.fds}; under load: RSS "
            f"{min(f.rss_mib for f in seen):.1f}-{max(f.rss_mib for f in seen):.1f} MiB, threads "
            f"{min(f.threads for f in seen)}-{max(f.threads for f in seen)}, open files "
            f"{min(f.fds for f in seen)}-{max(f.fds for f in seen)}"
        )
    steady = [s.footprint for s in samples if s.phase == "steady" and s.footprint is not None]
    if len(steady) > 1:
        print(
            f"steady phase, first -> last sample: RSS {steady[0].rss_mib:.1f} -> {steady[-1].rss_mib:.1f} MiB, "
            f"threads {steady[0].threads} -> {steady[-1].threads}, open files {steady[0].fds} -> {steady[-1].fds}"
        )
    for problem in problems:
        print(f"  FAIL: {problem}")
    print(f"verdict: {'FAIL' if problems else 'PASS'}")


if __name__ == "__main__":
    sys.exit(main())
