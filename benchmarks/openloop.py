"""Does the open-loop dispatcher keep its schedule? Offered vs achieved rate and send lag, one process.

    .venv/bin/python benchmarks/openloop.py [--rates 20 100 400] [--duration 30] [--max-in-flight 64]
                                            [--arrival poisson|constant]

For each rate, one cell of Poisson (or constant) arrivals is sent by ``locustfiles.open_loop`` through
a shared geventhttpclient pool (what Locust's FastHttpSession uses) to a fast local endpoint
(``tests.doubles.stall_server`` without stalls, in its own process). Printed per cell: arrivals
planned, the offered rate (planned / cell duration), the achieved rate (sent / time from the cell's
start to its end or last send), their ratio, and percentiles of the send lag (actual - planned send
time). Figures are printed, never asserted: they depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from locustfiles.arrivals import ARRIVAL_PROCESSES, Mix, arrival_schedule  # noqa: E402
from locustfiles.open_loop import Outcome, run_open_loop  # noqa: E402
from tests.doubles.common import READY_LINE  # noqa: E402
from tests.support.open_loop_http import http_sender  # noqa: E402


@contextlib.contextmanager
def fast_endpoint() -> Iterator[str]:
    command = [
        sys.executable,
        "-m",
        "tests.doubles.stall_server",
        "--port",
        "0",
        "--stall-s",
        "0",
        "--latency-ms",
        "0",
    ]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith(READY_LINE):
            raise SystemExit(f"the endpoint did not start: {line!r}")
        yield line.split()[-1]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(int(q / 100 * len(ordered) + 0.999999) - 1, 0)] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[20.0, 100.0, 400.0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per cell (default 30)")
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--arrival", choices=ARRIVAL_PROCESSES, default="poisson")
    args = parser.parse_args()

    with fast_endpoint() as url:
        send = http_sender(url, args.max_in_flight)
        print(
            f"{args.arrival} arrivals, {args.duration:g} s cells, one process, max in flight {args.max_in_flight}"
        )
        print(
            f"{'rate/s':>7} {'planned':>8} {'offered/s':>10} {'achieved/s':>11} {'ratio':>7} {'dropped':>8} "
            f"{'lag p50':>8} {'p90':>6} {'p99':>6} {'p99.9':>6} {'max':>7}  (ms)"
        )
        for rate in args.rates:
            arrivals = [
                (a.offset_s, None)
                for a in arrival_schedule(rate, args.duration, Mix.single(1, 32), arrival=args.arrival)
            ]
            outcomes: list[Outcome] = []
            summary = run_open_loop(
                arrivals,
                send,
                max_in_flight=args.max_in_flight,
                duration_s=args.duration,
                start_at=time.time() + 0.5,
                on_outcome=outcomes.append,
            )
            failed = sum(1 for outcome in outcomes if outcome.result != 200 and not outcome.dropped)
            lags = [outcome.lag_ms for outcome in outcomes if outcome.lag_ms is not None]
            print(
                f"{rate:7g} {summary.offered:8d} {summary.offered_rate_per_s:10.2f} {summary.achieved_rate_per_s:11.2f} "
                f"{summary.achieved_rate_per_s / summary.offered_rate_per_s:7.4f} {summary.dropped:8d} "
                + " ".join(
                    f"{percentile(lags, q):{width}.2f}"
                    for q, width in ((50, 8), (90, 6), (99, 6), (99.9, 6), (100, 7))
                )
                + (f"  {failed} failed" if failed else "")
            )


if __name__ == "__main__":
    main()
