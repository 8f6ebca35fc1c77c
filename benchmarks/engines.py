"""CPU engines side by side: the bundled server on torch, ONNX Runtime and OpenVINO, fp32 and int8, one run.

For each engine (``--engines``, torch first: it is the reference), the real server under gunicorn on
127.0.0.1, same model, batching mode, passages and client throughout:
  * start: seconds to /health 200 (the export, if not cached, plus the load and warm-up), and /info;
  * parity: one request of --parity-texts passages of mixed lengths (so the pass is padded); each
    vector's cosine with torch's vector for the same passage (min and mean);
  * p50 latency of a lone b=1 request (c=1, sequential);
  * tokens/s at --concurrency for each cell of --cells (closed loop for --duration seconds).
Prints one table with every figure and its ratio to torch. With --out DIR: DIR/engines.txt (what it
prints), DIR/engines.json (every figure, each cell's raw counts and latency percentiles, /info of
each server), DIR/engines-load.json (load averages before and after) and DIR/server-ENGINE.log.

    .venv/bin/python benchmarks/engines.py                   # ~5 minutes on 2 CPU cores
    .venv/bin/python benchmarks/engines.py --engines torch,onnx,onnx:int8 --cells 1,32 --out DIR
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import requests
from batching import p50_latency_ms, parse_cells, raw_totals
from http_load import encode_bodies, run_load
from raw_out import raw_results, write_json

from embed_bench.core.payloads import PassageFactory
from target_server.launcher import running_target_server

PARITY_LENGTHS = (3, 8, 17, 33, 64, 100, 129, 200, 254)  # special tokens included: up to the 256 limit


@dataclass(frozen=True)
class EngineSpec:
    engine: str
    quantize: str

    @property
    def label(self) -> str:
        return self.engine if self.quantize == "none" else f"{self.engine}-{self.quantize}"

    @property
    def server_args(self) -> list[str]:
        return ["--engine", self.engine, "--quantize", self.quantize]


@dataclass
class EngineResult:
    label: str
    start_s: float
    parity_min_cosine: float
    parity_mean_cosine: float
    b1_c1_p50_ms: float
    tokens_per_s: dict[str, float]
    failures: int


def parse_engines(text: str) -> list[EngineSpec]:
    """``torch,onnx,onnx:int8``: engine, optionally ``:int8``; torch (fp32) must come first."""
    specs = []
    for item in text.split(","):
        engine, _, quantize = item.strip().partition(":")
        specs.append(EngineSpec(engine, quantize or "none"))
    if specs[0] != EngineSpec("torch", "none"):
        raise SystemExit("error: --engines must start with torch (fp32): the reference of every ratio")
    return specs


def cosines(reference: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    dots = np.sum(reference * vectors, axis=1)
    return dots / (np.linalg.norm(reference, axis=1) * np.linalg.norm(vectors, axis=1))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engines", default="torch,onnx,onnx:int8,openvino,openvino:int8")
    parser.add_argument("--batching", default="continuous")
    parser.add_argument("--passage-tokens", type=int, default=128)
    parser.add_argument("--cells", default="1,32", help="batch sizes, each optionally xTOKENS")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--passages", type=int, default=640)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds each closed-loop cell sends")
    parser.add_argument("--latency-requests", type=int, default=30)
    parser.add_argument("--cpu-threads", type=int, help="passed to every server (default: the engine's)")
    parser.add_argument("--engine-cache", help="passed to every server (default: the server's)")
    parser.add_argument("--server-start-timeout", type=float, default=900)
    parser.add_argument(
        "--out", type=Path, help="raw results: DIR/engines.txt, .json, -load.json, server logs"
    )
    args = parser.parse_args()
    with raw_results(args.out, "engines"):
        return measure(args)


def measure(args: argparse.Namespace) -> int:
    specs = parse_engines(args.engines)
    cells = parse_cells(args.cells, args.passage_tokens)
    factory = PassageFactory("", seed=1)
    passages = {
        cell: factory.passages(args.passages, cell.passage_tokens, stream=f"engines-{cell.passage_tokens}")
        for cell in cells
    }
    singles = [[t] for t in factory.passages(args.latency_requests, args.passage_tokens, stream="latency")]
    # Lengths counted without the 2 special tokens the server adds.
    parity_texts = factory.passages_of([n - 2 for n in PARITY_LENGTHS], stream="parity")
    common = ["--batching", args.batching, "--threads", "32", "--device", "cpu"]
    common += ["--cpu-threads", str(args.cpu_threads)] if args.cpu_threads else []
    common += ["--engine-cache", args.engine_cache] if args.engine_cache else []

    reference: np.ndarray | None = None
    results: list[EngineResult] = []
    raw: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "engines": {}}
    for spec in specs:
        log_path = args.out / f"server-{spec.label}.log" if args.out else None
        started = time.perf_counter()
        with running_target_server(
            *common, *spec.server_args, timeout_s=args.server_start_timeout, log_path=log_path
        ) as url:
            start_s = time.perf_counter() - started
            info = requests.get(url + "/info", timeout=10).json()
            response = requests.post(url + "/embed", json={"texts": parity_texts}, timeout=60)
            response.raise_for_status()
            vectors = np.array(response.json()["embeddings"], dtype=np.float64)
            reference = vectors if reference is None else reference
            similarity = cosines(reference, vectors)
            singles_ms: list[float] = []
            p50 = p50_latency_ms(url, singles, args.latency_requests, singles_ms)
            rates, raw_cells, failures = {}, {}, 0
            for cell in cells:
                totals = run_load(
                    url, encode_bodies(passages[cell], cell.batch_size), args.concurrency, args.duration, 1
                )
                rates[cell.label] = totals.tokens_per_s
                failures += totals.failures
                raw_cells[f"{cell.label} c={args.concurrency}"] = raw_totals(totals)
        result = EngineResult(
            spec.label,
            start_s,
            float(similarity.min()),
            float(similarity.mean()),
            p50,
            rates,
            failures,
        )
        results.append(result)
        raw["engines"][spec.label] = asdict(result) | {
            "info": info,
            "parity_cosines": similarity.tolist(),
            "parity_lengths": list(PARITY_LENGTHS),
            "b1_c1_latencies_ms": singles_ms,
            "cells": raw_cells,
        }
        if args.out:  # a later failure loses nothing
            write_json(args.out / "engines.json", raw)
        summary = ", ".join(f"{label} {rate:,.0f} tok/s" for label, rate in rates.items())
        print(
            f"{spec.label}: started in {start_s:.1f} s, parity min cos {result.parity_min_cosine:.5f}, "
            f"{summary} (c={args.concurrency}), p50 b=1 c=1 {p50:.1f} ms, {failures} failures",
            flush=True,
        )

    torch = results[0]
    print(
        f"\nbundled model, batching={args.batching}, {args.concurrency} clients, t={args.passage_tokens}, "
        f"{args.duration:g} s per cell; ratios are to torch (fp32)\n"
    )
    header = "".join(f" tokens/s {c.label} c={args.concurrency} | x torch |" for c in cells)
    print(f"| engine | start s | parity min cos | mean cos |{header} p50 ms b=1 c=1 | x torch | failures |")
    print("|---|---:|---:|---:|" + "---:|---:|" * len(cells) + "---:|---:|---:|")
    for r in results:
        row = "".join(
            f" {r.tokens_per_s[c.label]:,.0f} | {r.tokens_per_s[c.label] / torch.tokens_per_s[c.label]:.2f} |"
            for c in cells
        )
        print(
            f"| {r.label} | {r.start_s:.1f} | {r.parity_min_cosine:.5f} | {r.parity_mean_cosine:.5f} |{row} "
            f"{r.b1_c1_p50_ms:.1f} | {r.b1_c1_p50_ms / torch.b1_c1_p50_ms:.2f} | {r.failures} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
