"""Batching modes against the model's offline limit, side by side from one run.

Measures, on the bundled model (or --model) and the same passages throughout:
  * offline ``SentenceTransformer.encode`` throughput (tokens/s) -- the limit a server can approach;
  * for each batching mode, the real server under gunicorn on 127.0.0.1:
      - tokens/s at concurrency 10 with batch 1 and batch 32 (closed loop: each of 10 clients sends
        its next request when the last one returns, for --duration seconds, then drains),
      - p50 latency at concurrency 1, batch 1.
Prints a table with ratios (server / offline, latency / `none`), and writes JSON with --json-out.

    .venv/bin/python benchmarks/batching.py            # ~3 minutes on 2 CPU cores
    .venv/bin/python benchmarks/batching.py --device cuda --model jinaai/jina-embeddings-v3 --trust-remote-code
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from locustfiles.payloads import PassageFactory
from target_server.launcher import running_target_server


@dataclass
class ModeResult:
    mode: str
    b1_c10_tokens_per_s: float
    b32_c10_tokens_per_s: float
    b1_c1_p50_latency_ms: float
    failures: int


def closed_loop(url: str, bodies: list[list[str]], concurrency: int, duration_s: float) -> tuple[float, int]:
    """tokens/s over the whole run (start to last answer) and the number of failed requests."""
    lock = threading.Lock()
    totals = {"tokens": 0, "failures": 0}
    deadline = time.perf_counter() + duration_s

    def client(index: int) -> None:
        session = requests.Session()
        n = index
        while time.perf_counter() < deadline:
            response = session.post(url + "/embed", json={"texts": bodies[n % len(bodies)]}, timeout=300)
            n += concurrency
            with lock:
                if response.status_code == 200:
                    totals["tokens"] += response.json()["usage"]["total_tokens"]
                else:
                    totals["failures"] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return totals["tokens"] / (time.perf_counter() - started), totals["failures"]


def p50_latency_ms(url: str, bodies: list[list[str]], count: int) -> float:
    session = requests.Session()
    latencies = []
    for body in bodies[:count]:
        started = time.perf_counter()
        response = session.post(url + "/embed", json={"texts": body}, timeout=60)
        latencies.append((time.perf_counter() - started) * 1e3)
        response.raise_for_status()
    return statistics.median(latencies)


def offline_tokens_per_s(model, texts: list[str], batch_size: int) -> float:
    tokens = sum(
        len(ids)
        for ids in model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]
    )
    model.encode(texts[:batch_size], batch_size=batch_size)  # warm
    started = time.perf_counter()
    model.encode(texts, batch_size=batch_size)
    return tokens / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--passage-tokens", type=int, default=128)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds each closed-loop phase sends")
    parser.add_argument("--modes", default="none,timeout,continuous")
    parser.add_argument("--max-batch-tokens", type=int, help="passed to every server (default: each mode's)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    from target_server.embedder import bundled_model_path

    source = bundled_model_path() if args.model == "bundled" else args.model
    model = SentenceTransformer(source, device=args.device, trust_remote_code=args.trust_remote_code)
    # The Locust side's token-exact, distinct passages, under the served model's own tokenizer.
    factory = PassageFactory("" if args.model == "bundled" else args.model, seed=1)
    texts = factory.passages(640, args.passage_tokens, stream="benchmark")
    singles = [[t] for t in texts]
    batches32 = [texts[i : i + 32] for i in range(0, len(texts), 32)]

    offline_before = offline_tokens_per_s(model, texts[:320], 32)
    print(f"offline encode: {offline_before:,.0f} tokens/s", flush=True)
    del model  # free the device for the servers

    server_args = ["--device", args.device, "--model", args.model, "--threads", "32"]
    server_args += ["--trust-remote-code"] if args.trust_remote_code else []
    server_args += ["--max-batch-tokens", str(args.max_batch_tokens)] if args.max_batch_tokens else []
    results = []
    for mode in args.modes.split(","):
        with running_target_server(*server_args, "--batching", mode, timeout_s=600) as url:
            p50 = p50_latency_ms(url, singles[::-1], 8 if mode == "timeout" else 30)
            b1, fail1 = closed_loop(url, singles, 10, args.duration)
            b32, fail32 = closed_loop(url, batches32, 10, args.duration)
        results.append(ModeResult(mode, b1, b32, p50, fail1 + fail32))
        print(
            f"{mode}: b=1 c=10 {b1:,.0f} tok/s, b=32 c=10 {b32:,.0f} tok/s, p50 b=1 c=1 {p50:,.1f} ms",
            flush=True,
        )

    model = SentenceTransformer(source, device=args.device, trust_remote_code=args.trust_remote_code)
    offline_after = offline_tokens_per_s(model, texts[:320], 32)
    offline = max(offline_before, offline_after)
    none_p50 = next((r.b1_c1_p50_latency_ms for r in results if r.mode == "none"), None)

    print(
        f"\nmodel: {args.model}  device: {args.device}  passages: {args.passage_tokens} tokens  "
        f"offline encode (batch 32): {offline:,.0f} tokens/s "
        f"(before {offline_before:,.0f}, after {offline_after:,.0f})\n"
    )
    print(
        "| mode | tokens/s b=1 c=10 | x offline | tokens/s b=32 c=10 | x offline | p50 ms b=1 c=1 | x none | failures |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        vs_none = f"{r.b1_c1_p50_latency_ms / none_p50:.2f}" if none_p50 else "-"
        print(
            f"| {r.mode} | {r.b1_c10_tokens_per_s:,.0f} | {r.b1_c10_tokens_per_s / offline:.2f} | "
            f"{r.b32_c10_tokens_per_s:,.0f} | {r.b32_c10_tokens_per_s / offline:.2f} | "
            f"{r.b1_c1_p50_latency_ms:,.1f} | {vs_none} | {r.failures} |"
        )
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(
            json.dumps(
                {
                    "offline_tokens_per_s": offline,
                    "args": vars(args) | {"json_out": str(args.json_out)},
                    "modes": [asdict(r) for r in results],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
