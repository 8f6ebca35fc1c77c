"""The load generator's own ceiling: one Locust process against a trivial local endpoint.

    .venv/bin/python benchmarks/loadgen.py [--users 8] [--requests-per-user 100] [--rounds 3]

Runs the real SelfHostedUser (FastHttpUser, orjson, exact checks, request records) under the real
GridShape against two canned endpoints, each a bare asyncio server in its own process so the server
is never the bottleneck:

- tiny: one one-word passage per request, answered with one 8-dimensional vector;
- realistic: batch 128 x 16-token passages (distinct, token-exact), answered with 128 vectors of 1024
  float32 values (jina-embeddings-v3's width, about 1.4 MB of JSON as orjson writes it), so parsing and
  checking a full-size response is what the figure measures.

Each runs with request records on (written to a temporary run directory, as ``embed-bench run``
does) and off (``embed_bench.load.recorder.KEEP_RECORDS = False``, the benchmark's switch), alternating,
and the script prints requests/s and CPU milliseconds per request of the Locust process, per round
and as medians, with the records on/off ratio (goal >= 0.9x) by requests/s and by CPU per request
(what a CPU-bound process's requests/s follow; other jobs on a shared machine disturb wall-clock
rates far more than a process's own CPU time), and the realistic response's CPU cost (goal <= 10
ms). Figures are printed, never asserted: they depend on the machine.

    .venv/bin/python benchmarks/loadgen.py --schedule [--rates 20 100 400] [--duration 30]

The open-loop schedule instead: for each rate, one rate cell (``--request-rate``, Poisson arrivals,
b=1 t=16, 64 senders) of the real ``locust -f locustfiles/self_hosted.py --headless`` against the
tiny endpoint, once on one process and once on a master with 2 worker processes, read back from the
run's ``requests.csv.gz``, and judged against the rate that was ASKED
(``embed_bench.core.schedule_accuracy``): the planned arrivals and the requests sent within the cell
must both fall inside the 99.9% interval of Poisson(rate x duration); nothing dropped or failed; the
send lag's p99 (sent_at - planned_at) at most 10 ms; and a Kolmogorov-Smirnov test of the planned
inter-arrival times against the exponential of the asked rate at p >= 0.001 (the processes' shares
merged: their union is one Poisson stream). Each cell prints PASS or FAIL with its reasons; the exit
status is 1 when any cell fails. ``--locustfile`` swaps the sender (the tests pass a deliberately
slow one, which must fail).

With --out DIR either mode also writes its raw results: DIR/loadgen.txt or DIR/schedule.txt (what it
prints), DIR/loadgen.json or DIR/schedule.json (every measurement), DIR/*-load.json (load averages
before and after), and each Locust run directory's small files (cells.csv, run.json,
requests.csv.gz, locust_stats.csv) under DIR/runs/.
"""

from __future__ import annotations

import locust  # first: gevent monkey-patches sockets before anything else loads

# isort: split
import argparse
import asyncio
import contextlib
import csv
import gzip
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy  # noqa: E402
from locust.argument_parser import get_parser  # noqa: E402
from locust.env import Environment  # noqa: E402
from locust.event import EventHook  # noqa: E402

from embed_bench.core.options import BenchOptions  # noqa: E402
from embed_bench.core.schedule_accuracy import (  # noqa: E402
    ScheduleAccuracy,
    ScheduleLimits,
    check_schedule,
    nearest_rank,
)
from embed_bench.load import recorder  # noqa: E402
from embed_bench.load.shape import GridShape  # noqa: E402
from locustfiles.self_hosted import SelfHostedUser  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from raw_out import raw_results, write_json  # noqa: E402

# The run directory's files kept with --out (the small ones; Locust's history CSV is left out).
KEPT_RUN_FILES = ("cells.csv", "run.json", "requests.csv.gz", "locust_stats.csv", "locust_failures.csv")


def keep_run_files(run_dir: Path, into: Path | None) -> None:
    """Copy a run directory's small files into ``into`` (--out's DIR/runs/NAME), if given."""
    if into is None:
        return
    into.mkdir(parents=True, exist_ok=True)
    for name in KEPT_RUN_FILES:
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, into / name)


TINY_BODY = json.dumps({"texts": ["hello"], "truncate": True}).encode()


class TinyConstantUser(SelfHostedUser):
    """The baseline: the same user, checks and naming, but one constant one-word passage."""

    @classmethod
    def encode_request(cls, passages: list[str], options: BenchOptions) -> bytes:
        return TINY_BODY


# --- the trivial endpoint (runs in a child process: `loadgen.py --serve PORT`) -------------------
def canned_response(inputs: int, dimensions: int) -> bytes:
    """The bundled server's /embed answer: float32 vectors as orjson writes them (shortest repr)."""
    import numpy
    import orjson

    vectors = numpy.random.default_rng(inputs).standard_normal((inputs, dimensions), dtype=numpy.float32)
    vectors /= numpy.linalg.norm(vectors, axis=1, keepdims=True)
    payload = {"embeddings": vectors, "model": "x"}  # no usage: the canned server cannot count tokens
    content = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(content)}\r\n"
    timing = "x-queue-time: 0.10\r\nx-inference-time: 1.00\r\nx-total-time: 1.20\r\n\r\n"
    return (head + timing).encode() + content


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dimensions: int) -> None:
    canned: dict[int, bytes] = {}
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            # Passages are plain words, so a JSON list of n strings has n - 1 '", "' separators.
            inputs = body.count(b'", "') + 1
            if inputs not in canned:
                canned[inputs] = canned_response(inputs, dimensions)
            writer.write(canned[inputs])
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def serve(port: int, dimensions: int) -> None:
    async def run() -> None:
        server = await asyncio.start_server(
            lambda reader, writer: _handle(reader, writer, dimensions), "127.0.0.1", port
        )
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


# --- the measurement ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    label: str
    user_class: type[SelfHostedUser]
    batch_size: int
    passage_tokens: int
    dimensions: int  # of the endpoint's vectors
    requests_per_user: int


@dataclass
class Measurement:
    scenario: Scenario
    records: bool
    requests: int
    failures: int
    requests_per_s: float
    cpu_ms_per_request: float
    response_bytes: int | None  # from the request records (None with records off)


def recorded_response_bytes(run_dir: Path) -> int | None:
    """The bytes the last measured request received, from ``requests.csv.gz``: the user reads the
    body itself (``stream=True``), so Locust's response object no longer holds it."""
    path = run_dir / "requests.csv.gz"
    if not path.exists():
        return None
    with gzip.open(path, "rt", newline="") as stream:
        measured = [row["bytes_received"] for row in csv.DictReader(stream) if row["warmup"] == "0"]
    return int(measured[-1]) if measured else None


class RequestClock:
    """Wall and CPU clock at each measured request's completion: the first and last bound the window."""

    def __init__(self, environment: Environment) -> None:
        self.marks: list[tuple[float, float]] = []
        self.failures = 0
        environment.events.request.add_listener(self.on_request)

    def on_request(self, name: str, exception: BaseException | None = None, **_kwargs: object) -> None:
        if name.startswith("warmup"):
            return
        self.marks.append((time.perf_counter(), time.process_time()))
        self.failures += exception is not None


@contextlib.contextmanager
def listeners_restored() -> Iterator[None]:
    """Locust's global event hooks as they were: a measurement's Environment adds its stats, its
    tracer's flush and the like to ``locust.events``, and without this each later measurement in the
    process would also feed every earlier one's stats (a request cost that grew by about 10 us per
    earlier measurement, and the second of each on/off pair paid one more than the first)."""
    saved = {
        name: list(hook._handlers)
        for name, hook in vars(locust.events).items()
        if isinstance(hook, EventHook)
    }
    try:
        yield
    finally:
        for name, handlers in saved.items():
            getattr(locust.events, name)._handlers[:] = handlers


def measure(
    scenario: Scenario, host: str, users: int, records: bool, keep: Path | None = None
) -> Measurement:
    with tempfile.TemporaryDirectory(prefix="loadgen-") as run_dir, listeners_restored():
        arguments = [
            "--headless", "--only-summary", "--warmup-requests", "2", "--seed", "1",
            "--users", str(users), "--requests-per-user", str(scenario.requests_per_user),
            "--batch-size", str(scenario.batch_size), "--passage-tokens", str(scenario.passage_tokens),
            "--run-dir", run_dir,
        ]  # fmt: skip
        options = get_parser().parse_args(arguments)
        environment = Environment(
            user_classes=[scenario.user_class],
            shape_class=GridShape(),
            events=locust.events,
            host=host,
            parsed_options=options,
        )
        recorder.KEEP_RECORDS = records
        runner = environment.create_local_runner()
        environment.events.init.fire(environment=environment, runner=runner, web_ui=None)
        clock = RequestClock(environment)
        runner.start_shape()
        runner.shape_greenlet.join()
        runner.quit()
        environment.events.quit.fire(exit_code=0)  # as locust's shutdown does: the last flush
        environment.events.request.remove_listener(clock.on_request)
        written = (Path(run_dir) / "requests.csv.gz").exists()
        response_bytes = recorded_response_bytes(Path(run_dir))
        recorder.KEEP_RECORDS = True
        keep_run_files(Path(run_dir), keep)
    if written != records:
        raise SystemExit(f"records {'on' if records else 'off'}, but requests.csv.gz written: {written}")
    (wall0, cpu0), (wall1, cpu1) = clock.marks[0], clock.marks[-1]
    intervals = len(clock.marks) - 1
    return Measurement(
        scenario,
        records,
        len(clock.marks),
        clock.failures,
        intervals / (wall1 - wall0),
        1000.0 * (cpu1 - cpu0) / intervals,
        response_bytes,
    )


def start_endpoint(dimensions: int) -> tuple[subprocess.Popen[str], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--dimensions", str(dimensions)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert server.stdout is not None
    server.stdout.readline()
    return server, f"http://127.0.0.1:{port}"


TOPOLOGIES = {"one process": 0, "master + 2 workers": 2}  # worker processes (0: a local runner)
LOCUSTFILE = REPO / "locustfiles" / "self_hosted.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--requests-per-user", type=int, default=100, help="tiny scenario")
    parser.add_argument(
        "--realistic-requests-per-user", type=int, default=25, help="b=128 x 1024-dim scenario"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    parser.add_argument("--schedule", action="store_true", help="the open-loop schedule's accuracy instead")
    parser.add_argument("--rates", type=float, nargs="+", default=[20.0, 100.0, 400.0], help="--schedule")
    parser.add_argument("--duration", type=float, default=30.0, help="--schedule: seconds per cell")
    parser.add_argument(
        "--topology", choices=list(TOPOLOGIES), nargs="+", default=list(TOPOLOGIES), help="--schedule"
    )
    parser.add_argument(
        "--locustfile",
        type=Path,
        default=LOCUSTFILE,
        help="--schedule: the sender (default: locustfiles/self_hosted.py)",
    )
    parser.add_argument(
        "--max-lag-p99-ms",
        type=float,
        default=ScheduleLimits.max_lag_p99_ms,
        help="--schedule: the send lag's p99 bound (default: %(default)g)",
    )
    parser.add_argument("--out", type=Path, help="raw results into DIR (see above)")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dimensions", type=int, default=8, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.dimensions)
        return
    if args.schedule:
        if min(args.rates) <= 0 or args.duration <= 0 or args.max_lag_p99_ms <= 0:
            parser.error("--rates, --duration and --max-lag-p99-ms must be positive")
        if not args.locustfile.is_file():
            parser.error(f"--locustfile {args.locustfile}: no such file")
        limits = ScheduleLimits(max_lag_p99_ms=args.max_lag_p99_ms)
        with raw_results(args.out, "schedule"):
            status = schedule(
                args.rates, args.duration, args.out, args.topology, args.locustfile.resolve(), limits
            )
        sys.exit(status)
    with raw_results(args.out, "loadgen"):
        ceiling(args)


def ceiling(args: argparse.Namespace) -> None:
    scenarios = [
        Scenario("tiny (1 x 8-dim)", TinyConstantUser, 1, 1, 8, args.requests_per_user),
        Scenario(
            "realistic (128 x 1024-dim)", SelfHostedUser, 128, 16, 1024, args.realistic_requests_per_user
        ),
    ]
    endpoints = [start_endpoint(scenario.dimensions) for scenario in scenarios]
    rounds: list[list[Measurement]] = []

    def keep(number: int, scenario: Scenario, records: bool) -> Path | None:
        if args.out is None:
            return None
        short = scenario.label.split()[0]
        return args.out / "runs" / f"round{number}-{short}-records-{'on' if records else 'off'}"

    try:
        # Alternate scenarios and records on/off so all see the same background load on a shared machine.
        for number in range(1, args.rounds + 1):
            rounds.append(
                [
                    measure(scenario, host, args.users, records, keep(number, scenario, records))
                    for scenario, (_, host) in zip(scenarios, endpoints, strict=True)
                    for records in (True, False)
                ]
            )
    finally:
        for server, _ in endpoints:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)
    report(args, scenarios, rounds)
    if args.out:
        measurements = [
            {"round": number, "scenario": m.scenario.label, "users": args.users}
            | {k: v for k, v in asdict(m).items() if k != "scenario"}
            | {f"scenario_{k}": v for k, v in asdict(m.scenario).items() if k != "user_class"}
            for number, pair in enumerate(rounds, start=1)
            for m in pair
        ]
        write_json(args.out / "loadgen.json", {"args": vars(args), "measurements": measurements})


def report(args: argparse.Namespace, scenarios: list[Scenario], rounds: list[list[Measurement]]) -> None:
    print(
        f"\nOne Locust process, {args.users} users, trivial local endpoints, {os.cpu_count()} CPUs, "
        f"{args.rounds} alternating round(s)"
    )
    print(
        f"{'round':<7}{'scenario':<30}{'records':>8}{'requests':>9}{'failures':>9}{'req/s':>9}"
        f"{'CPU ms/req':>12}{'response bytes':>16}"
    )
    for number, measurements in enumerate(rounds, start=1):
        for m in measurements:
            print(
                f"{number:<7}{m.scenario.label:<30}{'on' if m.records else 'off':>8}{m.requests:>9}"
                f"{m.failures:>9}{m.requests_per_s:>9.0f}{m.cpu_ms_per_request:>12.3f}"
                f"{'-' if m.response_bytes is None else f'{m.response_bytes:,}':>16}"
            )
    print()
    for scenario in scenarios:
        by_records = {
            records: [m for pair in rounds for m in pair if m.scenario is scenario and m.records is records]
            for records in (True, False)
        }
        for records, measurements in by_records.items():
            rate = statistics.median(m.requests_per_s for m in measurements)
            cpu = statistics.median(m.cpu_ms_per_request for m in measurements)
            print(
                f"median {scenario.label:<28} records {'on ' if records else 'off'} {rate:>7.0f} req/s  "
                f"{cpu:.3f} CPU ms/request"
            )
        pairs = list(zip(by_records[True], by_records[False], strict=True))
        rate_ratio = statistics.median(on.requests_per_s / off.requests_per_s for on, off in pairs)
        cpu_ratio = statistics.median(off.cpu_ms_per_request / on.cpu_ms_per_request for on, off in pairs)
        print(
            f"  records on / off, per round, median: {rate_ratio:.2f}x req/s, {cpu_ratio:.2f}x by CPU per "
            "request (goal >= 0.9x)"
        )
    realistic = [
        m.cpu_ms_per_request for pair in rounds for m in pair if m.scenario is scenarios[1] and m.records
    ]
    print(
        f"client CPU per 128 x 1024-dim response, records on (median): {statistics.median(realistic):.2f} ms "
        "(goal <= 10 ms)"
    )


# --- the open-loop schedule (loadgen.py --schedule) ----------------------------------------------


@dataclass
class ScheduleCell:
    topology: str
    rate: float
    duration_s: float
    planned: int
    sent_in_cell: int
    dropped: int
    failed: int
    lags_ms: list[float]
    ks_p: float
    per_worker: dict[str, int]

    def accuracy(self, limits: ScheduleLimits) -> ScheduleAccuracy:
        """This cell judged against its asked rate (not against its own plan)."""
        return check_schedule(
            self.rate,
            self.duration_s,
            planned=self.planned,
            sent_in_cell=self.sent_in_cell,
            dropped=self.dropped,
            failed=self.failed,
            lags_ms=self.lags_ms,
            ks_p=self.ks_p,
            limits=limits,
        )


def schedule_cell(
    url: str,
    rate: float,
    duration_s: float,
    topology: str,
    keep: Path | None = None,
    locustfile: Path = LOCUSTFILE,
) -> ScheduleCell:
    from scipy import stats

    from tests.load.runs import run_headless, run_master_and_workers

    arguments = (
        "-H", url, "--request-rate", f"{rate:g}", "--cell-duration", f"{duration_s:g}",
        "--max-in-flight", "64", "--batch-size", "1", "--passage-tokens", "16",
        "--warmup-requests", "1", "--seed", "1",
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="loadgen-schedule-") as directory:
        run_dir = Path(directory) / "run"
        workers = TOPOLOGIES[topology]
        if workers:
            run = run_master_and_workers(str(locustfile), run_dir, workers, *arguments)
        else:
            run = run_headless(str(locustfile), run_dir, *arguments, timeout_s=duration_s + 120)
        if run.returncode != 0:
            if keep is not None:  # what failed, kept with the raw results
                keep_run_files(run_dir, keep)
                (keep / "failure.txt").write_text(
                    f"{run.describe()}\n--- stdout tail ---\n{run.stdout[-3000:]}"
                )
            raise SystemExit(f"{topology} at {rate:g}/s: {run.describe()}")
        (cell,) = run.cells()
        records = run.records()
        keep_run_files(run_dir, keep)
    measured = records[records["warmup"] == 0]
    sent = measured[measured["dropped"] == 0]
    start = float(cell["start"])
    in_cell = sent[(sent["sent_at"] >= start) & (sent["sent_at"] <= start + duration_s)]
    gaps = numpy.diff(numpy.sort(measured["planned_at"].to_numpy()))
    ks = stats.kstest(gaps, "expon", args=(0, 1 / rate))
    return ScheduleCell(
        topology,
        rate,
        duration_s,
        planned=len(measured),
        sent_in_cell=len(in_cell),
        dropped=int(measured["dropped"].sum()),
        failed=int((sent["ok"] == 0).sum()),
        lags_ms=sorted(sent["lag_ms"].tolist()),
        ks_p=float(ks.pvalue),
        per_worker=sent["worker"].value_counts().to_dict(),
    )


LAG_QUANTILES = (50, 90, 99, 99.9, 100)


def schedule(
    rates: list[float],
    duration_s: float,
    out: Path | None = None,
    topologies: list[str] | None = None,
    locustfile: Path = LOCUSTFILE,
    limits: ScheduleLimits | None = None,
) -> int:
    """Run and judge every (topology, rate) cell; 0 when all pass, 1 when any fails."""
    limits = limits or ScheduleLimits()
    server, url = start_endpoint(8)
    cells: list[ScheduleCell] = []
    try:
        for topology in topologies or list(TOPOLOGIES):
            for rate in rates:
                keep = None
                if out is not None:
                    keep = out / "runs" / f"{topology.replace(' + ', '-').replace(' ', '-')}-{rate:g}"
                cells.append(schedule_cell(url, rate, duration_s, topology, keep, locustfile))
                print(f"{topology}, {rate:g}/s: done", flush=True)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
    judged = [(c, c.accuracy(limits)) for c in cells]
    sender = "" if locustfile == LOCUSTFILE else f", sender {locustfile.name}"
    print(
        f"\nPoisson rate cells of {duration_s:g} s, b=1 t=16, 64 senders, the tiny endpoint{sender}, "
        f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f})"
    )
    interval_head = f"{limits.confidence:.1%} interval"
    print(
        f"{'topology':<20}{'asked/s':>8}{'planned':>8}{interval_head:>17}{'achieved/s':>11}{'/asked':>8}"
        f"{'dropped':>8}{'failed':>7}{'lag p50':>8}{'p90':>6}{'p99':>7}{'p99.9':>8}{'max':>8}{'KS p':>7}"
        "  verdict"
    )
    for c, a in judged:
        lags = " ".join(
            f"{nearest_rank(c.lags_ms, q):{width}.2f}"
            for q, width in zip(LAG_QUANTILES, (7, 5, 6, 7, 7), strict=True)
        )
        print(
            f"{c.topology:<20}{c.rate:>8g}{c.planned:>8}{a.interval.text:>17}{a.achieved_per_s:>11.2f}"
            f"{a.achieved_vs_asked:>8.4f}{c.dropped:>8}{c.failed:>7} {lags}{c.ks_p:>7.3f}"
            f"  {'PASS' if a.passed else 'FAIL'}"
        )
    print(
        f"lag in ms (sent_at - planned_at). A cell passes when its planned arrivals and the requests "
        f"sent within it both fall in the {limits.confidence:.1%} interval of Poisson(asked rate x "
        f"{duration_s:g} s), nothing is dropped or failed, lag p99 <= {limits.max_lag_p99_ms:g} ms and "
        f"KS p >= {limits.min_ks_p:g}"
    )
    for c, a in judged:
        for problem in a.problems:
            print(f"  FAIL {c.topology} at {c.rate:g}/s: {problem}")
        if len(c.per_worker) > 1:
            shares = ", ".join(f"{count}" for _, count in sorted(c.per_worker.items()))
            print(f"  {c.topology} at {c.rate:g}/s: requests per worker {shares}")
    failed = sum(not a.passed for _, a in judged)
    print(
        f"schedule check: {'PASS' if not failed else 'FAIL'} "
        f"({len(judged) - failed} of {len(judged)} cells passed)"
    )
    if out is not None:
        rows = [
            {k: v for k, v in asdict(c).items() if k != "lags_ms"}
            | {
                "achieved_per_s": a.achieved_per_s,
                "achieved_vs_asked": a.achieved_vs_asked,
                "interval": asdict(a.interval),
                "lag_ms": {f"p{q:g}": nearest_rank(c.lags_ms, q) for q in LAG_QUANTILES},
                "passed": a.passed,
                "problems": list(a.problems),
            }
            for c, a in judged
        ]
        write_json(
            out / "schedule.json",
            {
                "rates": rates,
                "duration_s": duration_s,
                "locustfile": str(locustfile),
                "limits": asdict(limits),
                "cells": rows,
                "passed": not failed,
            },
        )
    return 1 if failed else 0


if __name__ == "__main__":
    main()
