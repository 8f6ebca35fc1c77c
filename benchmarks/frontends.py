"""Do several front-end processes pay? ``serve --frontends N`` against ``--frontends 1``, side by side.

Each front-end count serves the same model, the same bodies and the same closed-loop load
(benchmarks/http_load.py, several client processes), cell by cell. The counts are alternated, and
the whole sequence repeated (``--rounds``), so that a shared machine's drift hits every count alike;
each cell's ratio to ``--frontends 1`` is printed per round, then the median over rounds.

The null model (default) is the server with an instant forward pass, where HTTP and tokenization
are all there is; ``--model bundled`` (or any model the server takes) puts the model's own pass back
on the same cores.

    flock /tmp/cpu.lock .venv/bin/python benchmarks/frontends.py --out benchmarks/results/<machine>-<date>/frontends
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil
from http_load import encode_bodies, run_load
from raw_out import raw_results

from embed_bench.core.payloads import PassageFactory
from target_server.launcher import running_target_server


def ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


@dataclass(frozen=True)
class Cell:
    round: int
    frontends: int
    batch_size: int
    concurrency: int
    requests_per_s: float
    tokens_per_s: float
    p50_ms: float
    failures: int
    time: str
    # CPU seconds per request of each part of the server over the cell (psutil): "server" (one
    # process), or "front ends" (all of them) and "model process".
    cpu_ms_per_request: dict[str, float]


def server_processes(url: str) -> dict[str, list[psutil.Process]]:
    """The server's processes by part: the gunicorn worker that answered ``/info`` has the master as
    its parent, whose children are the workers and (split) the model process."""
    with urllib.request.urlopen(f"{url}/info", timeout=10) as answer:
        worker = psutil.Process(json.load(answer)["frontends"]["this_pid"])
    children = worker.parent().children()
    model = [p for p in children if "target_server.model_process" in " ".join(p.cmdline())]
    workers = [p for p in children if p not in model]
    return {"model process": model, "front ends": workers} if model else {"server": workers}


def cpu_seconds(parts: dict[str, list[psutil.Process]]) -> dict[str, float]:
    def used(process: psutil.Process) -> float:
        times = process.cpu_times()
        return times.user + times.system

    return {name: sum(used(p) for p in processes) for name, processes in parts.items()}


def cpu_shares(cells: list[Cell]) -> str:
    names = dict.fromkeys(name for cell in cells for name in cell.cpu_ms_per_request)
    return ", ".join(
        f"{name} {statistics.median(c.cpu_ms_per_request[name] for c in cells):.2f}" for name in names
    )


def ratio_table(cells: list[Cell], frontends: list[int], batch_sizes: list[int]) -> list[str]:
    """Per batch size and front-end count: tokens/s per round, and each round's ratio to the first
    count's cell of the same round (the baseline); the median over rounds."""
    base = frontends[0]
    lines = [
        f"| b | frontends | tokens/s per round | requests/s (median) | p50 ms (median) | ratio to frontends={base}, "
        "per round | median ratio | server CPU ms per request (median) | failures |",
        "|---:|---:|---|---:|---:|---|---:|---|---:|",
    ]
    for b in batch_sizes:
        baseline = {c.round: c for c in cells if c.batch_size == b and c.frontends == base}
        for count in frontends:
            mine = [c for c in cells if c.batch_size == b and c.frontends == count]
            ratios = [
                c.tokens_per_s / baseline[c.round].tokens_per_s if baseline[c.round].tokens_per_s else 0.0
                for c in mine
            ]
            lines.append(
                f"| {b} | {count} | {', '.join(f'{c.tokens_per_s:,.0f}' for c in mine)} | "
                f"{statistics.median(c.requests_per_s for c in mine):,.0f} | "
                f"{statistics.median(c.p50_ms for c in mine):.1f} | {', '.join(f'{r:.2f}' for r in ratios)} | "
                f"{statistics.median(ratios):.2f} | {cpu_shares(mine)} | {sum(c.failures for c in mine)} |"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--frontends", type=ints, default=[1, 2], help="front-end counts (first: the baseline)"
    )
    parser.add_argument("--model", default="null:1024", help="the server's --model (default null:1024)")
    parser.add_argument("--batch-sizes", type=ints, default=[1, 32])
    parser.add_argument("--passage-tokens", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds each cell sends")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--server-args", default="", help="more serve flags, e.g. '--cpu-threads 1'")
    parser.add_argument("--out", type=Path, help="raw results: DIR/frontends.txt, .json, -load.json, logs")
    args = parser.parse_args()
    with raw_results(args.out, "frontends"):
        return measure(args)


def measure(args: argparse.Namespace) -> int:
    count = max(1024, 8 * max(args.batch_sizes))
    texts = PassageFactory("", seed=1).passages(count, args.passage_tokens, stream="frontends")
    bodies = {b: encode_bodies(texts, b) for b in args.batch_sizes}
    cells: list[Cell] = []
    for round_ in range(1, args.rounds + 1):
        # Alternate the order each round: the first count of a round is not always the same one.
        order = args.frontends if round_ % 2 else list(reversed(args.frontends))
        for frontends in order:
            log = args.out / f"server-r{round_}-f{frontends}.log" if args.out else None
            server = ["--model", args.model, "--frontends", str(frontends), *args.server_args.split()]
            with running_target_server(*server, timeout_s=600, log_path=log) as url:
                run_load(url, bodies[args.batch_sizes[0]], args.concurrency, 2.0, args.client_processes)
                parts = server_processes(url)
                for b in args.batch_sizes:
                    before = cpu_seconds(parts)
                    totals = run_load(url, bodies[b], args.concurrency, args.seconds, args.client_processes)
                    after = cpu_seconds(parts)
                    per_request = {
                        name: 1e3 * (after[name] - before[name]) / max(1, totals.requests) for name in parts
                    }
                    cell = Cell(
                        round=round_,
                        frontends=frontends,
                        batch_size=b,
                        concurrency=args.concurrency,
                        requests_per_s=totals.requests / totals.seconds,
                        tokens_per_s=totals.tokens_per_s,
                        p50_ms=statistics.median(totals.latencies_ms) if totals.latencies_ms else 0.0,
                        failures=totals.failures,
                        time=time.strftime("%H:%M:%S"),
                        cpu_ms_per_request=per_request,
                    )
                    cells.append(cell)
                    print(
                        f"round {round_} frontends={frontends} b={b}: {cell.requests_per_s:,.0f} req/s, "
                        f"{cell.tokens_per_s:,.0f} tokens/s, p50 {cell.p50_ms:.1f} ms, {cell.failures} failures; "
                        "CPU ms per request: "
                        + ", ".join(f"{name} {ms:.2f}" for name, ms in per_request.items()),
                        flush=True,
                    )
    print(
        f"\n{args.model}, t={args.passage_tokens}, c={args.concurrency}, {os.cpu_count()} CPU cores, "
        f"{args.client_processes} client processes, {args.seconds:g} s per cell, {args.rounds} rounds\n"
    )
    print("\n".join(ratio_table(cells, args.frontends, args.batch_sizes)))
    if args.out:
        payload = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
        payload |= {"cpu_count": os.cpu_count(), "cells": [asdict(c) for c in cells]}
        (args.out / "frontends.json").write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
