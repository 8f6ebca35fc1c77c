"""Two (or more) identical capacity searches, one after the other, side by side: do they agree
within their intervals?

One search gives one number, and noise near the knee moves it; the confirmation steps give each
answer a 95% interval (``embed_bench.core.capacity``). If those intervals are honest, two identical
searches on a quiet machine agree within them: each answer lies inside the other's interval, or at
the least the two intervals overlap. This script runs ``embed-bench run --grid capacity`` ``--runs``
times against one bundled server (started here, on 127.0.0.1) with the same options, and prints each
answer, its interval and the verdict.

    .venv/bin/python benchmarks/capacity_repeat.py --out benchmarks/results/<machine>-<date>/capacity-repeat

With --out DIR: DIR/capacity_repeat.txt (what it prints), DIR/capacity_repeat.json (each run's
capacity as run.json records it), DIR/capacity_repeat-load.json (load averages), and each run's
directory (DIR/run-1, ...) with its requests.csv.gz, so every figure can be recomputed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from raw_out import raw_results, write_json

from target_server.launcher import running_target_server


@dataclass(frozen=True)
class Answer:
    """One search's answer: its point estimate and its interval (requests/s)."""

    run: str
    requests_per_s: float
    lower_requests_per_s: float
    upper_requests_per_s: float | None
    steps: int

    def holds(self, rate: float) -> bool:
        return self.lower_requests_per_s <= rate <= (self.upper_requests_per_s or float("inf"))

    def describe(self) -> str:
        upper = f"{self.upper_requests_per_s:g}" if self.upper_requests_per_s is not None else "none failed"
        return (
            f"{self.run}: {self.requests_per_s:g} requests/s, 95% interval "
            f"{self.lower_requests_per_s:g} to {upper} ({self.steps} steps)"
        )


def answer_of(run_dir: Path) -> Answer:
    capacity = json.loads((run_dir / "run.json").read_text())["capacity"]
    interval = capacity.get("interval") or {}
    return Answer(
        run_dir.name,
        capacity["requests_per_s"],
        interval.get("lower_requests_per_s", 0.0),
        interval.get("upper_requests_per_s"),
        len(capacity.get("steps", [])),
    )


def agree(first: Answer, second: Answer) -> bool:
    """Each answer inside the other's interval."""
    return first.holds(second.requests_per_s) and second.holds(first.requests_per_s)


def overlap(first: Answer, second: Answer) -> bool:
    high = min(first.upper_requests_per_s or float("inf"), second.upper_requests_per_s or float("inf"))
    return max(first.lower_requests_per_s, second.lower_requests_per_s) <= high


def search(url: str, out: Path, args: argparse.Namespace) -> Answer:
    command = [
        sys.executable, "-m", "embed_bench", "run", "--backend", "self-hosted", "--host", url,
        "--grid", "capacity", "--batch-size", str(args.batch_size), "--passage-tokens", str(args.passage_tokens),
        "--slo-p95-ms", f"{args.slo_p95_ms:g}", "--request-rate", f"{args.start_rate:g}",
        "--cell-duration", f"{args.step_s:g}", "--confirm-repeats", str(args.confirm_repeats),
        "--out", str(out), "--force",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout_s)
    if result.returncode != 0:
        raise SystemExit(f"search failed ({result.returncode}): {result.stderr[-2000:]}")
    return answer_of(out)


def repeat_searches(args: argparse.Namespace, out: Path) -> list[Answer]:
    env = {"OMP_NUM_THREADS": str(args.cpu_threads)} if args.cpu_threads else None
    with running_target_server("--batching", args.batching, "--device", args.device, env=env) as url:
        return [search(url, out / f"run-{number}", args) for number in range(1, args.runs + 1)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--batching", default="continuous")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--cpu-threads", type=int, default=1, help="OMP_NUM_THREADS of the server (0: torch's)"
    )
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--passage-tokens", type=int, default=16)
    parser.add_argument("--slo-p95-ms", type=float, default=250.0)
    parser.add_argument("--start-rate", type=float, default=8.0)
    parser.add_argument("--step-s", type=float, default=5.0)
    parser.add_argument("--confirm-repeats", type=int, default=2)
    parser.add_argument("--timeout-s", type=float, default=1200.0)
    parser.add_argument("--out", type=Path, default=None)
    return parser


def main() -> int:
    args = build_parser().parse_args()
    with raw_results(args.out, "capacity_repeat"), tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        print(
            f"{args.runs} identical capacity searches: b={args.batch_size} t={args.passage_tokens}, "
            f"p95 <= {args.slo_p95_ms:g} ms, {args.batching} batching on {args.device}, "
            f"{args.confirm_repeats} confirmation round(s)"
        )
        answers = repeat_searches(args, out)
        for answer in answers:
            print("  " + answer.describe())
        pairs = [(a, b) for i, a in enumerate(answers) for b in answers[i + 1 :]]
        for first, second in pairs:
            print(
                f"  {first.run} vs {second.run}: each inside the other's interval: {agree(first, second)}; "
                f"intervals overlap: {overlap(first, second)}; ratio {second.requests_per_s / first.requests_per_s:.2f}"
            )
        if args.out:
            write_json(
                args.out / "capacity_repeat.json",
                {"args": vars(args) | {"out": str(args.out)}, "answers": [asdict(a) for a in answers]},
            )
    return 0 if all(overlap(a, b) for a, b in pairs) else 1


if __name__ == "__main__":
    sys.exit(main())
