"""The server's own overhead: the real server with a null model against the bare tokenizer, one run.

    .venv/bin/python benchmarks/overhead.py                 # ~2 minutes on 2 CPU cores
    .venv/bin/python benchmarks/overhead.py --client-processes 4 --json-out out/overhead.json

Once a GPU makes the forward pass fast, what limits a server is everything around it: HTTP, JSON
parsing, tokenization, batching, padding and response encoding. This script measures exactly that:
  * the real server (``python -m target_server`` under gunicorn, via target_server.launcher) with
    ``--model null:WIDTH`` -- the bundled tokenizer and the whole serving path, with the forward pass
    replaced by an instant WIDTH-dim output (default 1024, jina-embeddings-v3's width);
  * the bare tokenizer (the same tokenizer.json, ``encode_batch`` on one thread) on the same texts
    and batch sizes -- the work a server cannot avoid;
side by side as tokens/s and their ratio, for each batch size (t = --passage-tokens) and concurrency
(closed loop: each client connection sends its next request when the last one returns). The client
is lean (pre-encoded bodies, http.client keep-alive, responses read but only their token count
parsed) so it is not the limit. Then py-spy samples the server worker for --profile-seconds and
the script prints where its CPU goes (skipped with a note when py-spy is not installed).
Figures are printed, never asserted: they depend on the machine. With --out DIR it also writes
DIR/overhead.txt (what it prints), DIR/overhead.json (as --json-out, plus each cell's raw counts and
both bare-tokenizer runs), DIR/overhead-profile.txt.gz (py-spy's raw collapsed stacks) and
DIR/overhead-load.json (load averages before and after).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from http_load import LoopTotals, encode_bodies, run_load  # noqa: E402
from raw_out import raw_results  # noqa: E402

from embed_bench.core.payloads import PassageFactory, bundled_tokenizer_path  # noqa: E402
from target_server.launcher import running_target_server  # noqa: E402

# Leaf frames of threads that wait (py-spy cannot always tell a blocked thread from a busy one).
WAITING = ("Condition.wait", "EpollSelector.select", "_worker (concurrent", "Event.wait", "Thread.join")


@dataclass
class Cell:
    batch_size: int
    concurrency: int
    server_tokens_per_s: float
    bare_tokenizer_tokens_per_s: float
    server_vs_tokenizer: float
    requests_per_s: float
    p50_latency_ms: float
    failures: int


# ---- bare tokenizer (runs in a child process with RAYON_NUM_THREADS=1) --------------------------------
def bare_tokenizer_tokens_per_s(texts: list[str], batch_size: int, seconds: float) -> float:
    """``encode_batch`` of the server's tokenizer over ``texts`` in batches, for about ``seconds``."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(bundled_tokenizer_path()))
    tokenizer.no_padding()
    tokenizer.enable_truncation(256)  # as the null model's embedder: the bundled model's limit
    batches = [texts[i : i + batch_size] for i in range(0, len(texts) - batch_size + 1, batch_size)]
    tokens, n = 0, 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        tokens += sum(len(e.ids) for e in tokenizer.encode_batch(batches[n % len(batches)]))
        n += 1
    return tokens / (time.perf_counter() - started)


def measure_bare_tokenizer(texts: list[str], batch_size: int, seconds: float) -> float:
    """Run in a child with one Rayon thread, so the figure is one core's, whatever this process does."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "texts.json"
        path.write_text(json.dumps(texts))
        child = [
            "--bare-tokenizer-child",
            str(path),
            "--batch-sizes",
            str(batch_size),
            "--seconds",
            str(seconds),
        ]
        out = subprocess.run(
            [sys.executable, __file__, *child],
            env={**os.environ, "RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"},
            capture_output=True,
            text=True,
            check=True,
            timeout=60 + 3 * seconds,
        )
    return float(out.stdout.splitlines()[-1])


# ---- profile ------------------------------------------------------------------------------------------
def server_worker_pid() -> int | None:
    """The gunicorn worker: the child of the server (the master), which is a child of this process."""

    def children(pid: int) -> list[int]:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
        return found

    for master in children(os.getpid()):
        workers = children(master)
        if workers:
            return workers[0]
    return None


def profile_summary(raw: str, top: int) -> list[str]:
    """py-spy's collapsed stacks to two tables: self time by function, and time spent under a function."""
    own, under = Counter(), Counter()
    total = waiting = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")[1:]]  # drop the thread frame
        if not frames or frames[-1].startswith(WAITING):
            waiting += samples
            continue
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            under[frame] += samples
    if not total:
        return ["(no samples)"]
    lines = [f"{total} busy samples of the server's threads ({waiting} more in waits, left out)", ""]
    lines += ["| self % | function |", "|---:|---|"]
    lines += [f"| {100 * n / total:.1f} | {name} |" for name, n in own.most_common(top)]
    lines += ["", "| total % (incl. callees) | function of the server or json |", "|---:|---|"]
    ours = [(name, n) for name, n in under.most_common() if "target_server/" in name or "(json/" in name]
    lines += [f"| {100 * n / total:.1f} | {name} |" for name, n in ours[:top]]
    return lines


def profile_server(
    url: str,
    bodies: list[bytes],
    concurrency: int,
    seconds: float,
    processes: int,
    raw_path: Path | None = None,
) -> list[str]:
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    pid = server_worker_pid()
    if py_spy is None or pid is None:
        return ["(profile skipped: py-spy is not installed)" if py_spy is None else "(no worker found)"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "profile.txt"
        record = (
            f"record --pid {pid} --duration {int(seconds)} --rate 200 --nonblocking --threads --format raw"
        )
        spy = subprocess.Popen(
            [py_spy, *record.split(), "--output", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        run_load(url, bodies, concurrency, seconds + 1, processes)
        _, error = spy.communicate(timeout=seconds + 60)
        if spy.returncode != 0 or not out.exists():
            return [f"(profile failed: {error.strip()[-300:]})"]
        if raw_path is not None:
            raw_path.write_bytes(gzip.compress(out.read_bytes()))
        return profile_summary(out.read_text(), top=12)


# ---- main ---------------------------------------------------------------------------------------------
def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=int, default=1024, help="null model output dims (default 1024)")
    parser.add_argument("--batch-sizes", type=ints, default=[1, 32, 128])
    parser.add_argument("--passage-tokens", type=int, default=128)
    parser.add_argument("--concurrency", type=ints, default=[16, 64])
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds each cell sends")
    parser.add_argument(
        "--client-processes", type=int, default=1, help="client processes (more on many cores)"
    )
    parser.add_argument("--server-threads", type=int, default=64)
    parser.add_argument("--profile-seconds", type=float, default=10.0, help="0: no profile")
    parser.add_argument("--profile-batch-size", type=int, default=32)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument(
        "--out", type=Path, help="raw results: DIR/overhead.txt, .json (--json-out's default), ..."
    )
    parser.add_argument("--bare-tokenizer-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.bare_tokenizer_child:  # the child process of measure_bare_tokenizer
        texts = json.loads(args.bare_tokenizer_child.read_text())
        print(bare_tokenizer_tokens_per_s(texts, args.batch_sizes[0], args.seconds / 2))
        return 0
    if args.out and not args.json_out:
        args.json_out = args.out / "overhead.json"
    with raw_results(args.out, "overhead"):
        return measure(args)


def raw_totals(totals: LoopTotals) -> dict:
    """One cell's raw counts (for --out)."""
    ordered = sorted(totals.latencies_ms)
    pick = (lambda q: ordered[min(int(q * len(ordered)), len(ordered) - 1)]) if ordered else (lambda q: None)
    latency = {"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "max": ordered[-1] if ordered else None}
    return {
        "requests": totals.requests,
        "tokens": totals.tokens,
        "failures": totals.failures,
        "seconds": totals.seconds,
        "latency_ms": latency,
    }


def measure(args: argparse.Namespace) -> int:

    count = max(1024, 8 * max(args.batch_sizes))
    texts = PassageFactory("", seed=1).passages(count, args.passage_tokens, stream="overhead")
    cells: list[Cell] = []
    profile: list[str] = []
    raw: list[dict] = []
    server_args = ["--model", f"null:{args.width}", "--threads", str(args.server_threads)]
    with running_target_server(*server_args, timeout_s=300) as url:
        for b in args.batch_sizes:
            bodies = encode_bodies(texts, b)
            run_load(url, bodies, min(args.concurrency), 1.0, 1)  # warm connections and caches
            # Right before and after the server's cells (the better of the two), so that load from
            # other processes on a shared machine hits both sides of the ratio alike.
            bare_before = measure_bare_tokenizer(texts, b, args.seconds)
            measured: list[tuple[int, LoopTotals]] = []
            for c in args.concurrency:
                measured.append((c, run_load(url, bodies, c, args.seconds, args.client_processes)))
            bare_after = measure_bare_tokenizer(texts, b, args.seconds)
            bare = max(bare_before, bare_after)
            raw += [
                {"batch_size": b, "concurrency": c, "bare_before": bare_before, "bare_after": bare_after}
                | raw_totals(totals)
                for c, totals in measured
            ]
            for c, totals in measured:
                rate = totals.tokens / totals.seconds
                cell = Cell(
                    batch_size=b,
                    concurrency=c,
                    server_tokens_per_s=rate,
                    bare_tokenizer_tokens_per_s=bare,
                    server_vs_tokenizer=rate / bare,
                    requests_per_s=totals.requests / totals.seconds,
                    p50_latency_ms=statistics.median(totals.latencies_ms) if totals.latencies_ms else 0.0,
                    failures=totals.failures,
                )
                cells.append(cell)
                print(
                    f"b={b} c={c}: server {rate:,.0f} tok/s vs bare tokenizer {bare:,.0f} tok/s "
                    f"= {cell.server_vs_tokenizer:.2f}x ({cell.requests_per_s:,.0f} req/s, "
                    f"p50 {cell.p50_latency_ms:.1f} ms, {cell.failures} failures)",
                    flush=True,
                )
            if b == args.profile_batch_size and args.profile_seconds > 0:
                profile = profile_server(
                    url,
                    bodies,
                    max(args.concurrency),
                    args.profile_seconds,
                    args.client_processes,
                    args.out / "overhead-profile.txt.gz" if args.out else None,
                )

    print(
        f"\nnull model {args.width} dims, t={args.passage_tokens}, {os.cpu_count()} CPU cores, "
        f"{args.client_processes} client process(es), {args.seconds:g} s per cell\n"
    )
    print(
        "| b | c | server tokens/s | bare tokenizer tokens/s (1 thread) | server / tokenizer | requests/s | p50 ms | failures |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in cells:
        print(
            f"| {c.batch_size} | {c.concurrency} | {c.server_tokens_per_s:,.0f} | "
            f"{c.bare_tokenizer_tokens_per_s:,.0f} | {c.server_vs_tokenizer:.2f} | {c.requests_per_s:,.0f} | "
            f"{c.p50_latency_ms:.1f} | {c.failures} |"
        )
    if profile:
        print(
            f"\nwhere the server's CPU goes (py-spy, b={args.profile_batch_size} c={max(args.concurrency)}):\n"
        )
        print("\n".join(profile))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
        payload |= {"cpu_count": os.cpu_count(), "cells": [asdict(c) for c in cells], "profile": profile}
        if args.out:
            payload["raw"] = raw
        args.json_out.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
