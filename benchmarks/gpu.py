"""Everything a short GPU session must measure, as one bounded run (start it with benchmarks/gpu.sh).

    benchmarks/gpu.sh                # on the GPU machine: ~7 minutes, no network
    benchmarks/gpu.sh --smoke        # here, on the CPU: the same parts with synthetic:bge-small, tiny

Parts, each a child process with its own time limit (a hang costs that part only; servers it
started are stopped by their marker in the environment):
  batching  benchmarks/batching.py with synthetic:jina-embeddings-v3 in bf16: offline limit vs the
            batching modes (continuous padded and packed, none, timeout) at c=10 for b=32 t=512,
            b=128 t=128 and a variable-length mix (log-normal around 300 tokens, up to 8192)
  oom       a real CUDA out-of-memory, recovered: this process fills the GPU but for --oom-headroom-gib,
            then a server (no warm-up, a huge --max-batch-tokens) gets one request of 256 x 8192
            tokens; its forward pass runs out of memory, is halved until it fits, answers 200; then
            /health is 200 and a normal request succeeds
  mfu       model FLOPs utilization implied by the tokens/s of `batching` (computed here, no device)
  peer      benchmarks/engines.py: the bundled server (continuous, padded and packed) against Infinity
            0.0.78 on its torch engine, same GPU, model folder (the synthetic model saved once), dtype,
            passages and client, at c=10 for b=32 t=512 and the variable-length mix; Infinity comes
            from --infinity-site (its wheels installed with pip --target, see gpu_session.sh) or
            --infinity (a venv's infinity_emb); without either the part is skipped, and says so
  overhead  benchmarks/overhead.py with the null model on all cores
  frontends benchmarks/frontends.py: serve --frontends 1 against 4 on the null model, b=1 and b=32,
            on all cores (where one process's GIL, not the cores, limits small requests)

Writes $OUT (default ./gpu-out): one log and one JSON per part, summary.json and summary.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
for path in (REPO, BENCHMARKS):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

MARKER = "EMBED_BENCH_GPU_PART"  # in the environment of every process a part starts
H200_BF16_DENSE_TFLOPS = 989.0


@dataclass(frozen=True)
class Plan:
    """What to run: the real plan on CUDA, or the smoke plan (same code paths, tiny, on the CPU)."""

    model: str
    device: str
    dtype: str
    cells: str
    concurrency: int
    duration_s: float
    passages: int
    latency_requests: int
    oom_rows: int
    oom_tokens: int
    overhead_args: tuple[str, ...]
    peer_cells: str
    frontends_args: tuple[str, ...]
    # Batching modes in the order measured (a part cut short keeps the earlier ones): padded and
    # packed continuous passes first, then the study's baselines.
    modes: str = "continuous,continuous+packed,none,timeout"
    limits_s: dict[str, float] = field(default_factory=dict)


PLANS = {
    "gpu": Plan(
        model="synthetic:jina-embeddings-v3",
        device="cuda",
        dtype="bfloat16",
        # and a variable-length mix: log-normal around 300 tokens, up to 8192 (MFU on its real tokens)
        cells="32x512,128x128,16xln300x0.8[8-8192]",
        concurrency=10,
        duration_s=6.0,
        passages=1280,
        latency_requests=20,
        oom_rows=256,
        oom_tokens=8192,
        overhead_args=("--client-processes", "4", "--seconds", "4", "--profile-seconds", "5"),
        peer_cells="32x512,16xln300x0.8[8-8192]",
        frontends_args=(
            *("--frontends", "1,4", "--rounds", "1", "--seconds", "4"),
            *("--concurrency", "128", "--client-processes", "4"),
        ),
        limits_s={"batching": 330, "oom": 100, "overhead": 90, "peer": 240, "frontends": 90},
    ),
    "smoke": Plan(
        model="synthetic:bge-small",
        device="cpu",
        dtype="float32",
        cells="4x32,8x16,4xln16x0.8[2-64]",
        concurrency=4,
        duration_s=1.0,
        passages=16,
        latency_requests=3,
        oom_rows=8,
        oom_tokens=64,
        overhead_args=(
            *("--batch-sizes", "1,8", "--concurrency", "4", "--seconds", "1"),
            *("--profile-seconds", "1", "--profile-batch-size", "8"),
        ),
        peer_cells="4x32,4xln16x0.8[2-64]",
        frontends_args=(
            *("--frontends", "1,2", "--rounds", "1", "--seconds", "1"),
            *("--concurrency", "8", "--client-processes", "1", "--batch-sizes", "1,8"),
        ),
        limits_s={"batching": 400, "oom": 200, "overhead": 200, "peer": 400, "frontends": 200},
    ),
}


@dataclass
class PartResult:
    name: str
    status: str  # ok | failed (exit code) | timeout
    seconds: float
    figures: dict


# ---- running parts ------------------------------------------------------------------------------------
def marked_processes(tag: str) -> list[int]:
    """Processes whose environment carries ``MARKER=tag`` (servers a part started, in their own sessions)."""
    needle = f"{MARKER}={tag}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def stop_marked(tag: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = marked_processes(tag)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if pids and sig == signal.SIGTERM:
            time.sleep(5)


def run_part(name: str, command: list[str], limit_s: float, out: Path) -> tuple[str, float]:
    """Run a part's command with a time limit; its output goes to OUT/NAME.log (its end is printed)."""
    tag = f"{name}-{os.getpid()}"
    started = time.perf_counter()
    print(f"\n=== {name} (limit {limit_s:g} s): {' '.join(command)}", flush=True)
    log_path = out / f"{name}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, MARKER: tag},
            start_new_session=True,
        )
        try:
            process.wait(timeout=limit_s)
            status = "ok" if process.returncode == 0 else f"failed (exit {process.returncode})"
        except subprocess.TimeoutExpired:
            status = "timeout"
    print("".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-40:]), flush=True)
    if status == "timeout":
        print(f"=== {name}: over its {limit_s:g} s limit, stopped", flush=True)
    stop_marked(tag)  # the part, and servers it started in their own sessions
    return status, time.perf_counter() - started


# ---- the oom part (runs as a child: gpu.py oom) --------------------------------------------------------
def oom_part(plan: Plan, out: Path, headroom_gib: float) -> int:
    """Provoke a real out-of-memory in a server's forward pass and check that it recovers."""
    import requests

    from embed_bench.core.payloads import PassageFactory
    from target_server.launcher import running_target_server

    ballast = None
    figures: dict = {"device": plan.device, "rows": plan.oom_rows, "tokens_per_row": plan.oom_tokens}
    if plan.device == "cuda":
        import torch

        free, total = torch.cuda.mem_get_info()
        size = max(0, free - int(headroom_gib * 2**30))
        while ballast is None:  # one block that large may not be free: ask for a little less
            try:
                ballast = torch.empty(size, dtype=torch.uint8, device="cuda")
            except torch.OutOfMemoryError:
                size -= 2**30
        figures |= {"gpu_total_gib": total / 2**30, "left_free_gib": torch.cuda.mem_get_info()[0] / 2**30}
        print(
            f"ballast: {ballast.numel() / 2**30:.1f} GiB held, {figures['left_free_gib']:.1f} GiB left free"
        )
    texts = PassageFactory("", seed=2).passages(8, plan.oom_tokens, stream="oom") * (plan.oom_rows // 8)
    budget = plan.oom_rows * (plan.oom_tokens + 2)  # all rows in one pass: it is the pass that fails
    args = ["--model", plan.model, "--device", plan.device, "--dtype", plan.dtype, "--no-warmup"]
    args += ["--max-batch-tokens", str(budget), "--max-body-bytes", str(256 * 2**20)]
    args += ["--request-timeout", "300", "--threads", "8"]
    with running_target_server(*args, timeout_s=120) as url:
        started = time.perf_counter()
        big = requests.post(url + "/embed", json={"texts": texts}, timeout=300)
        figures["big_request_seconds"] = time.perf_counter() - started
        figures["big_request_status"] = big.status_code
        if big.status_code == 200:
            vectors = big.json()["embeddings"]
            figures["big_request_vectors"] = [len(vectors), len(vectors[0])]
        metrics = requests.get(url + "/metrics", timeout=10).text
        for name in ("oom_splits", "oom_failures"):  # the counters embed_oom_*_total, not their _created
            figures[name] = sum(
                float(line.split()[-1])
                for line in metrics.splitlines()
                if re.match(rf"embed_{name}_total(\{{.*\}})? ", line)
            )
        figures["health_after"] = requests.get(url + "/health", timeout=10).status_code
        normal = requests.post(url + "/embed", json={"texts": ["a normal request", "after it"]}, timeout=60)
        figures["normal_request_after"] = normal.status_code
    del ballast
    figures["provoked"] = figures["oom_splits"] > 0
    figures["recovered"] = (
        figures["big_request_status"] == 200
        and figures["health_after"] == 200
        and figures["normal_request_after"] == 200
    )
    if plan.device != "cuda":
        figures["note"] = (
            "CPU smoke: nothing is provoked; the procedure and the server's answers are exercised"
        )
    (out / "oom.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    return 0 if figures["recovered"] and (figures["provoked"] or plan.device != "cuda") else 1


# ---- mfu ----------------------------------------------------------------------------------------------
def mfu_figures(plan: Plan, batching_json: Path, peak_tflops: float) -> dict:
    """MFU = tokens/s x FLOPs per token / peak; FLOPs per token = 2 x layer params + 4 x layers x t x hidden."""
    from target_server.synthetic import SHAPES

    shape = SHAPES[plan.model.removeprefix("synthetic:")]
    data = json.loads(batching_json.read_text())
    rows = []

    def row(source: str, cell: dict, tokens_per_s: float) -> dict:
        # Real tokens only (tokens/s counts no padding), each attending over its own passage:
        # attention_tokens = sum(t^2) / sum(t); files from before it was recorded give the fixed t.
        attention = cell.get("attention_tokens") or cell["passage_tokens"]
        flops = shape.forward_flops_per_token(attention)
        return {
            "source": source,
            "batch_size": cell["batch_size"],
            "passage_tokens": cell["passage_tokens"],
            "attention_tokens": attention,
            "padding_share": cell.get("padding_share"),
            "tokens_per_s": tokens_per_s,
            "gflop_per_token": flops / 1e9,
            "achieved_tflops": tokens_per_s * flops / 1e12,
            "mfu": tokens_per_s * flops / (peak_tflops * 1e12),
        }

    for cell in data["offline_tokens_per_s"]:
        rows.append(row("offline encode", cell, cell["tokens_per_s"]))
    for mode in data["modes"]:
        for cell in mode["cells"]:
            rows.append(row(f"server {mode['mode']}", cell, cell["tokens_per_s"]))
    formula = (
        f"FLOPs/token = 2 x {shape.layer_parameters():,} encoder-layer parameters + "
        f"4 x {shape.layers} layers x t x {shape.hidden} (bidirectional attention: QK^T and AV); MFU = tokens/s x FLOPs/token / "
        f"{peak_tflops:g} TFLOP/s (dense bf16 peak); tokens/s and FLOPs count real tokens only, t is "
        "the length a real token attends over (sum(t^2) / sum(t) for a variable-length cell)"
    )
    return {"formula": formula, "peak_tflops": peak_tflops, "rows": rows}


# ---- orchestration ------------------------------------------------------------------------------------
def device_name() -> str:
    try:
        query = ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"]
        return subprocess.run(query, capture_output=True, text=True, timeout=20, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"no GPU ({platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores)"


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f}%"


def peer_table(figures: dict) -> str:
    """Each contender's tokens/s per cell and parity, then ours (best) / Infinity per cell."""
    engines = figures["engines"]
    cells = list(next(iter(engines.values()))["tokens_per_s"])
    lines = [
        "| server | parity min cos | "
        + " | ".join(f"tokens/s {c}" for c in cells)
        + " | p50 b=1 ms | failures |",
        "|---|---:|" + "---:|" * (len(cells) + 2),
    ]
    for label, e in engines.items():
        rates = " | ".join(f"{e['tokens_per_s'][c]:,.0f}" for c in cells)
        lines.append(
            f"| {label} | {e['parity_min_cosine']:.4f} | {rates} | {e['b1_c1_p50_ms']:.1f} | {e['failures']} |"
        )
    ratios = figures["against_peers"]
    lines += ["", f"ours ({ratios['ours_best']}) / peer:", ""]
    for peer, r in ratios["peers"].items():
        cellwise = ", ".join(f"{c} {x:.2f}x" for c, x in r["tokens_per_s_ratio"].items())
        lines.append(f"- {peer}: {cellwise}; geometric mean {r['geometric_mean_ratio']:.2f}x")
    return "\n".join(lines)


def summary_markdown(device: str, parts: list[PartResult]) -> str:
    lines = [f"# GPU session: {device}", "", "| part | status | seconds |", "|---|---|---:|"]
    lines += [f"| {p.name} | {p.status} | {p.seconds:.0f} |" for p in parts]
    for part in parts:
        if part.name == "mfu" and part.figures.get("rows"):
            lines += ["", "## MFU", "", part.figures["formula"], ""]
            lines += [
                "| source | b | t | attention t | padding | tokens/s | GFLOP/token | TFLOP/s | MFU |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            ]
            lines += [
                f"| {r['source']} | {r['batch_size']} | {r['passage_tokens']} | {r['attention_tokens']:,.0f} | "
                f"{_percent(r.get('padding_share'))} | "
                f"{r['tokens_per_s']:,.0f} | {r['gflop_per_token']:.3f} | {r['achieved_tflops']:,.1f} | "
                f"{100 * r['mfu']:.1f}% |"
                for r in part.figures["rows"]
            ]
        elif part.name == "peer" and part.figures.get("against_peers"):
            lines += ["", "## Against Infinity on the same device", "", peer_table(part.figures)]
        elif part.name == "frontends" and part.figures.get("cells"):
            from frontends import Cell, ratio_table

            cells = [Cell(**cell) for cell in part.figures["cells"]]
            args = part.figures["args"]
            lines += ["", "## serve --frontends N (null model)", ""]
            lines += ratio_table(cells, args["frontends"], args["batch_sizes"])
        elif part.figures:
            lines += ["", f"## {part.name}", "", "```json", json.dumps(part.figures, indent=2)[:4000], "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("part", nargs="?", default="all", choices=("all", "oom"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--smoke", action="store_true", help="synthetic:bge-small on the CPU, seconds per part"
    )
    parser.add_argument("--parts", default="batching,oom,mfu,peer,overhead,frontends")
    parser.add_argument(
        "--oom-headroom-gib", type=float, default=24.0, help="GPU memory left to the OOM server"
    )
    parser.add_argument("--peak-tflops", type=float, default=H200_BF16_DENSE_TFLOPS)
    parser.add_argument(
        "--infinity-site",
        default=os.environ.get("PEER_SITE", "/tmp/peer-site"),
        help="the peer part's Infinity, installed with pip --target (default: $PEER_SITE or /tmp/peer-site)",
    )
    parser.add_argument("--infinity", help="the peer part's Infinity as a venv's infinity_emb (instead)")
    args = parser.parse_args()
    plan = PLANS["smoke" if args.smoke else "gpu"]
    out = Path(os.environ.get("OUT") or "gpu-out").resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.part == "oom":
        return oom_part(plan, out, args.oom_headroom_gib)

    device = device_name()
    print(f"device: {device}; plan: {'smoke' if args.smoke else 'gpu'}; output: {out}", flush=True)
    python = sys.executable
    commands = {
        "batching": [
            *(python, str(BENCHMARKS / "batching.py"), "--model", plan.model, "--device", plan.device),
            *("--dtype", plan.dtype, "--cells", plan.cells, "--concurrency", str(plan.concurrency)),
            *("--duration", str(plan.duration_s), "--passages", str(plan.passages)),
            *("--latency-requests", str(plan.latency_requests), "--modes", plan.modes),
            *("--json-out", str(out / "batching.json")),
        ],
        "oom": [
            python,
            __file__,
            "oom",
            *(["--smoke"] if args.smoke else []),
            "--oom-headroom-gib",
            str(args.oom_headroom_gib),
        ],
        "overhead": [
            *(python, str(BENCHMARKS / "overhead.py"), *plan.overhead_args),
            *("--json-out", str(out / "overhead.json")),
        ],
        "frontends": [
            *(python, str(BENCHMARKS / "frontends.py"), "--model", "null:1024", *plan.frontends_args),
            *("--out", str(out / "frontends")),
        ],
        "peer": [
            *(python, str(BENCHMARKS / "engines.py"), "--model", plan.model, "--device", plan.device),
            *("--dtype", plan.dtype, "--engines", "torch,torch+packed", "--infinity-engines", "torch"),
            *(["--infinity", args.infinity] if args.infinity else ["--infinity-site", args.infinity_site]),
            *("--cells", plan.peer_cells, "--concurrency", str(plan.concurrency)),
            *("--duration", str(plan.duration_s), "--passages", str(plan.passages)),
            *("--latency-requests", str(plan.latency_requests), "--out", str(out / "peer")),
        ],
    }
    parts: list[PartResult] = []
    for name in args.parts.split(","):
        if name == "mfu":
            started = time.perf_counter()
            try:
                figures, status = mfu_figures(plan, out / "batching.json", args.peak_tflops), "ok"
            except (OSError, KeyError, ValueError) as error:
                figures, status = {}, f"failed ({type(error).__name__}: {error})"
            parts.append(PartResult(name, status, time.perf_counter() - started, figures))
        elif name == "peer" and not (args.infinity or Path(args.infinity_site, "infinity_emb").is_dir()):
            why = f"skipped (no Infinity: nothing installed in {args.infinity_site}, no --infinity)"
            print(f"\n=== peer: {why}", flush=True)
            parts.append(PartResult(name, why, 0.0, {}))
        else:
            status, seconds = run_part(name, commands[name], plan.limits_s[name], out)
            nested = {"peer": "peer/engines.json", "frontends": "frontends/frontends.json"}
            result = out / nested.get(name, f"{name}.json")
            figures = json.loads(result.read_text()) if result.exists() else {}
            parts.append(PartResult(name, status, seconds, figures))
        (out / "summary.json").write_text(
            json.dumps({"device": device, "parts": [asdict(p) for p in parts]}, indent=2)
        )
        (out / "summary.md").write_text(summary_markdown(device, parts))
    print("\n" + summary_markdown(device, parts))
    return 0 if all(p.status == "ok" for p in parts) else 1


if __name__ == "__main__":
    sys.exit(main())
