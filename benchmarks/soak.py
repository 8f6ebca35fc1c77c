"""Soak: the bundled server held at its admission limit for minutes; does anything leak or break?

Starts the real server (gunicorn, bundled model) with a small ``--max-queue-tokens``, so that a few
closed-loop clients keep it full and part of their requests get 429. Every ``--interval-s`` it
prints the worker's RSS and thread count and the status mix (200 / 429 / 5xx / other) of that
interval; at the end one verdict line: RSS growth after warm-up, thread count min/max, 5xx count.
Targets: RSS growth under 5 %, a flat thread count, no 5xx.

    .venv/bin/python benchmarks/soak.py                  # 10 minutes
    .venv/bin/python benchmarks/soak.py --minutes 0.2    # a quick check that it runs

With --out DIR it also writes DIR/soak.txt (what it prints), DIR/soak.json (every sample and the
verdict's figures) and DIR/soak-load.json (load averages before and after).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests
from raw_out import raw_results, write_json

from embed_bench.core.payloads import PassageFactory
from target_server.launcher import running_target_server

# A 429 is answered at once; a short pause keeps clients from spinning on the CPU the server needs,
# while the backlog they rejoin is still full.
BACKOFF_AFTER_429_S = 0.05


@dataclass(frozen=True)
class Sample:
    elapsed_s: float
    rss_mib: float
    threads: int
    statuses: Counter[str]


def status_class(status: int) -> str:
    if status in (200, 429):
        return str(status)
    return "5xx" if status >= 500 else "other"


class Clients:
    """Closed-loop clients posting ``/embed``; status counts since the last :meth:`take`."""

    def __init__(self, url: str, count: int, bodies: list[dict]) -> None:
        self.url, self.bodies = url, bodies
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(count)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def take(self) -> Counter[str]:
        with self._lock:
            counts, self._counts = self._counts, Counter()
        return counts

    def _run(self, index: int) -> None:
        session = requests.Session()
        sent = index
        while not self._stop.is_set():
            body = self.bodies[sent % len(self.bodies)]
            sent += 1
            try:
                kind = status_class(session.post(f"{self.url}/embed", json=body, timeout=300).status_code)
            except requests.RequestException:
                kind = "other"
            with self._lock:
                self._counts[kind] += 1
            if kind == "429":
                self._stop.wait(BACKOFF_AFTER_429_S)


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
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to hold the load (default: 10)")
    parser.add_argument("--clients", type=int, default=4, help="closed-loop clients (default: 4)")
    parser.add_argument(
        "--max-queue-tokens", type=int, default=512, help="the server's admission limit (default: 512)"
    )
    parser.add_argument("--inputs", type=int, default=8, help="inputs per request (default: 8)")
    parser.add_argument("--passage-tokens", type=int, default=32, help="tokens per input (default: 32)")
    parser.add_argument("--interval-s", type=float, default=30.0, help="seconds between rows (default: 30)")
    parser.add_argument(
        "--warmup-minutes",
        type=float,
        default=1.0,
        help="time before the RSS baseline, at most a fifth of the run (default: 1)",
    )
    parser.add_argument("--out", type=Path, help="raw results: DIR/soak.txt, soak.json, soak-load.json")
    args = parser.parse_args(argv)
    with raw_results(args.out, "soak"):
        return soak(parser, args)


def soak(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if min(args.minutes, args.interval_s, args.clients, args.inputs, args.passage_tokens) <= 0:
        parser.error("--minutes, --interval-s, --clients, --inputs and --passage-tokens must be positive")
    duration_s = args.minutes * 60
    interval_s = min(args.interval_s, duration_s / 6)
    warmup_s = min(args.warmup_minutes * 60, duration_s / 5)
    # Distinct token-exact passages (the Locust side's); by default 256 tokens a request, so two
    # requests fill the admission limit and the other clients' requests get 429.
    passages = PassageFactory(seed=1).passages(32 * args.inputs, args.passage_tokens, stream="soak")
    bodies = [{"texts": passages[i : i + args.inputs]} for i in range(0, len(passages), args.inputs)]

    # One request thread per client: gunicorn's pool grows lazily up to --threads, so a larger pool
    # would creep up for a while (a thread per race) and hide a real leak in that noise.
    server_args = ("--max-queue-tokens", str(args.max_queue_tokens), "--threads", str(args.clients))
    with running_target_server(*server_args) as url:
        worker = gunicorn_worker()
        print(
            f"soak: {args.minutes:g} min, {args.clients} clients x {args.inputs} inputs x "
            f"{args.passage_tokens} tokens, "
            f"--max-queue-tokens {args.max_queue_tokens}, warm-up {warmup_s:.0f} s, worker pid {worker.pid}"
        )
        print(f"{'elapsed s':>9} {'RSS MiB':>8} {'threads':>7} {'200':>6} {'429':>6} {'5xx':>4} {'other':>5}")
        clients = Clients(url, args.clients, bodies)
        started = time.monotonic()
        clients.start()
        samples: list[Sample] = []
        try:
            while (elapsed := time.monotonic() - started) < duration_s:
                time.sleep(min(interval_s, duration_s - elapsed))
                sample = Sample(
                    time.monotonic() - started,
                    worker.memory_info().rss / 2**20,
                    worker.num_threads(),
                    clients.take(),
                )
                samples.append(sample)
                counts = sample.statuses
                print(
                    f"{sample.elapsed_s:9.0f} {sample.rss_mib:8.1f} {sample.threads:7d} {counts['200']:6d} "
                    f"{counts['429']:6d} {counts['5xx']:4d} {counts['other']:5d}",
                    flush=True,
                )
        finally:
            clients.stop()
        healthy = requests.get(f"{url}/health", timeout=10).status_code == 200
        same_worker = gunicorn_worker().pid == worker.pid

    status = verdict(samples, warmup_s, healthy, same_worker)
    if args.out:
        rows = [
            {
                "elapsed_s": x.elapsed_s,
                "rss_mib": x.rss_mib,
                "threads": x.threads,
                "statuses": dict(x.statuses),
            }
            for x in samples
        ]
        write_json(
            args.out / "soak.json",
            {
                "args": vars(args),
                "warmup_s": warmup_s,
                "samples": rows,
                "health_200_after": healthy,
                "same_worker": same_worker,
                "exit_status": status,
            },
        )
    return status


def verdict(samples: list[Sample], warmup_s: float, healthy: bool, same_worker: bool) -> int:
    """Print the verdict line; exit status 0 only when every target holds."""
    steady = [sample for sample in samples if sample.elapsed_s >= warmup_s] or samples[-1:]
    baseline = steady[0].rss_mib
    growth_pct = (steady[-1].rss_mib - baseline) / baseline * 100
    threads = [sample.threads for sample in steady]
    total: Counter[str] = sum((sample.statuses for sample in samples), Counter())
    ok = growth_pct < 5 and min(threads) == max(threads) and total["5xx"] == 0 and healthy and same_worker
    print(
        f"verdict: RSS growth after warm-up {growth_pct:+.1f}% ({baseline:.1f} -> {steady[-1].rss_mib:.1f} MiB), "
        f"threads min/max {min(threads)}/{max(threads)}, 5xx {total['5xx']}, "
        f"requests 200/429/other {total['200']}/{total['429']}/{total['other']}, "
        f"/health {'200' if healthy else 'not 200'}, worker {'unchanged' if same_worker else 'RESTARTED'}: "
        f"{'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
