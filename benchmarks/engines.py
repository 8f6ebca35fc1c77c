"""CPU engines side by side: the bundled server on torch, ONNX Runtime and OpenVINO, fp32 and int8, one run.

For each engine (``--engines``, torch first: it is the reference), the real server under gunicorn on
127.0.0.1, same model, batching mode, passages and client throughout:
  * start: seconds to /health 200 (the export, if not cached, plus the load and warm-up), and /info;
  * parity: one request of --parity-texts passages of mixed lengths (so the pass is padded); each
    vector's cosine with torch's vector for the same passage (min and mean);
  * p50 latency of a lone b=1 request (c=1, sequential);
  * tokens/s at --concurrency for each cell of --cells (closed loop for --duration seconds).
Prints one table with every figure and its ratio to torch.

With --infinity (an ``infinity_emb`` in its own virtual environment), Infinity's engines
(--infinity-engines) follow ours in the same run, on the same model folder (its ONNX engines on
folders made once, see ``infinity_peer.py``), and a last table sets our best engine against each of
them. Every server gets the same ``POST /embeddings`` bodies, and the client counts each answered
body's tokens itself, so no server's own count decides a ratio.

With --out DIR: DIR/engines.txt (what it prints), DIR/engines.json (every figure, each cell's raw counts and latency percentiles, /info of
each server), DIR/engines-load.json (load averages before and after) and DIR/server-ENGINE.log.

    .venv/bin/python benchmarks/engines.py                   # ~5 minutes on 2 CPU cores
    .venv/bin/python benchmarks/engines.py --engines torch,onnx,onnx:int8 --cells 1,32 --out DIR
    .venv/bin/python benchmarks/engines.py --infinity /tmp/infvenv/bin/infinity_emb --out DIR   # with the peer
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path

import infinity_peer
import numpy as np
import requests
from batching import cell_passages, p50_latency_ms, parse_cells, raw_totals, served_tokenizer
from http_load import Counted, Route, batches, encode_bodies, run_load
from raw_out import raw_results, write_json

from embed_bench.core.payloads import PassageFactory
from target_server.embedder import bundled_model_path
from target_server.launcher import running_target_server
from target_server.synthetic import SYNTHETIC_PREFIX

PARITY_LENGTHS = (3, 8, 17, 33, 64, 100, 129, 200, 254)  # special tokens included: up to the 256 limit


@dataclass(frozen=True)
class EngineSpec:
    engine: str
    quantize: str
    attention: str = "padded"

    @property
    def label(self) -> str:
        label = self.engine if self.quantize == "none" else f"{self.engine}-{self.quantize}"
        return label if self.attention == "padded" else f"{label}-{self.attention}"

    @property
    def server_args(self) -> list[str]:
        return ["--engine", self.engine, "--quantize", self.quantize, "--attention", self.attention]


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
    """``torch,torch+packed,onnx,onnx:int8``: engine, optionally ``:int8``, optionally ``+packed``
    (``--attention packed``); torch (fp32, padded) must come first."""
    specs = []
    for item in text.split(","):
        item, _, attention = item.strip().partition("+")
        engine, _, quantize = item.partition(":")
        specs.append(EngineSpec(engine, quantize or "none", attention or "padded"))
    if specs[0] != EngineSpec("torch", "none"):
        raise SystemExit("error: --engines must start with torch (padded): the reference of every ratio")
    return specs


def cosines(reference: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    dots = np.sum(reference * vectors, axis=1)
    return dots / (np.linalg.norm(reference, axis=1) * np.linalg.norm(vectors, axis=1))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        default="bundled",
        help="bundled, a local model folder, or synthetic:NAME (saved once under --peer-cache, so every "
        "server, ours and the peer's, loads the same weights)",
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--dtype", default="auto", help="every server's (auto: fp32 on the CPU, bf16 ours on CUDA)"
    )
    parser.add_argument(
        "--engines",
        default="torch,onnx,onnx:int8,openvino,openvino:int8",
        help="each ENGINE[:int8][+packed]; torch first (on CUDA: torch,torch+packed)",
    )
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
        "--infinity",
        help="an infinity_emb executable (in its own virtual environment): Infinity joins the run as a peer",
    )
    parser.add_argument(
        "--infinity-site",
        help="instead of --infinity: a folder Infinity and its pins were installed into with pip --target "
        "(the GPU machine's wheels); it runs as this Python's -m infinity_emb.cli, torch engine only",
    )
    parser.add_argument("--infinity-engines", default="torch,optimum,optimum:int8")
    parser.add_argument(
        "--peer-cache",
        default="/tmp/embed-bench-peer-models",
        help="the peer's ONNX model folders, made once",
    )
    parser.add_argument(
        "--out", type=Path, help="raw results: DIR/engines.txt, .json, -load.json, server logs"
    )
    args = parser.parse_args()
    with raw_results(args.out, "engines"):
        return measure(args)


@dataclass(frozen=True)
class Contender:
    """A server measured in the run: the bundled one on an engine, or the peer on one of its own."""

    label: str
    start: Callable[[Path | None], AbstractContextManager[str]]  # log path -> URL while running
    peer: bool = False


def contenders(args: argparse.Namespace, source: Path) -> list[Contender]:
    common = ["--batching", args.batching, "--threads", "32", "--device", args.device, "--dtype", args.dtype]
    common += ["--model", str(source)]
    common += ["--cpu-threads", str(args.cpu_threads)] if args.cpu_threads else []
    common += ["--engine-cache", args.engine_cache] if args.engine_cache else []
    ours = [
        Contender(
            spec.label,
            lambda log, spec=spec: running_target_server(
                *common, *spec.server_args, timeout_s=args.server_start_timeout, log_path=log
            ),
        )
        for spec in parse_engines(args.engines)
    ]
    if not (args.infinity or args.infinity_site):
        return ours
    if args.infinity:
        launch = infinity_peer.PeerLaunch.of_executable(Path(args.infinity).resolve())
    else:
        launch = infinity_peer.PeerLaunch.of_site(Path(args.infinity_site).resolve())
    cache = Path(args.peer_cache).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    peers = []
    for spec in infinity_peer.parse_peers(args.infinity_engines):
        folder = infinity_peer.prepare_model(launch, spec, source, cache)  # before any timing
        peers.append(
            Contender(
                spec.label,
                lambda log, spec=spec, folder=folder: infinity_peer.running_infinity(
                    launch,
                    spec,
                    folder,
                    cache,
                    device=args.device,
                    dtype=args.dtype,
                    timeout_s=args.server_start_timeout,
                    log_path=log,
                ),
                peer=True,
            )
        )
    return ours + peers


def model_source(args: argparse.Namespace) -> Path:
    """The folder every server loads: the bundled model's, the one given, or a synthetic model saved
    once (its weights drawn as the server draws them, kept in --dtype when it names one: half the
    bytes to write and load in bf16) into --peer-cache."""
    if args.model == "bundled":
        return Path(bundled_model_path())
    if not args.model.startswith(SYNTHETIC_PREFIX):
        return Path(args.model).resolve()
    dtype = args.dtype if args.dtype in ("float32", "float16", "bfloat16") else "float32"
    folder = Path(args.peer_cache).resolve() / f"{args.model.replace(':', '-')}-{dtype}"
    if not (folder / "modules.json").exists():
        from target_server.config import ServerConfig
        from target_server.models import load_embedder

        model = load_embedder(ServerConfig(model=args.model, device="cpu", dtype=dtype)).model
        infinity_peer.save_for_peer(model, folder)
    return folder


def token_counts(factory: PassageFactory, texts: list[str], batch_size: int) -> Counted:
    """Each body's inputs and tokens, special tokens included, as our server's ``usage`` counts them
    (Infinity's counts characters unless it runs with ``--lengths-via-tokenize``)."""
    bodies = batches(texts, batch_size)
    lengths = dict(zip(texts, (len(e.ids) for e in factory.tokenizer.encode_batch(texts)), strict=True))
    return Counted([len(body) for body in bodies], [sum(lengths[text] for text in body) for body in bodies])


def measure(args: argparse.Namespace) -> int:
    cells = parse_cells(args.cells, args.passage_tokens)
    source = model_source(args)
    factory = PassageFactory(served_tokenizer(args.model), seed=1)
    passages = {cell: cell_passages(factory, cell, args.passages) for cell in cells}
    singles = [[t] for t in factory.passages(args.latency_requests, args.passage_tokens, stream="latency")]
    # Lengths counted without the 2 special tokens the server adds.
    parity_texts = factory.passages_of([n - 2 for n in PARITY_LENGTHS], stream="parity")
    # One route and one count of tokens for every server, ours and the peer's: its OpenAI route.
    route = Route("/embeddings", infinity_peer.SERVED_NAME)
    bodies = {cell: encode_bodies(passages[cell], cell.batch_size, route) for cell in cells}
    counted = {cell: token_counts(factory, passages[cell], cell.batch_size) for cell in cells}
    servers = contenders(args, source)

    reference: np.ndarray | None = None
    results: list[EngineResult] = []
    raw: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "engines": {}}
    for server in servers:
        log_path = args.out / f"server-{server.label}.log" if args.out else None
        started = time.perf_counter()
        with server.start(log_path) as url:
            start_s = time.perf_counter() - started
            info = server_info(url, server.peer)
            response = requests.post(url + route.path, json=route.body(parity_texts), timeout=60)
            response.raise_for_status()
            vectors = np.array(route.vectors(response.json()), dtype=np.float64)
            reference = vectors if reference is None else reference
            similarity = cosines(reference, vectors)
            singles_ms: list[float] = []
            p50 = p50_latency_ms(url, singles, args.latency_requests, singles_ms, route)
            rates, raw_cells, failures = {}, {}, 0
            for cell in cells:
                totals = run_load(
                    url,
                    bodies[cell],
                    args.concurrency,
                    args.duration,
                    1,
                    path=route.path,
                    counted=counted[cell],
                )
                rates[cell.label] = totals.tokens_per_s
                failures += totals.failures
                raw_cells[f"{cell.label} c={args.concurrency}"] = raw_totals(totals)
        result = EngineResult(
            server.label,
            start_s,
            float(similarity.min()),
            float(similarity.mean()),
            p50,
            rates,
            failures,
        )
        results.append(result)
        raw["engines"][server.label] = asdict(result) | {
            "peer": server.peer,
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
            f"{server.label}: started in {start_s:.1f} s, parity min cos {result.parity_min_cosine:.5f}, "
            f"{summary} (c={args.concurrency}), p50 b=1 c=1 {p50:.1f} ms, {failures} failures",
            flush=True,
        )

    torch = results[0]
    print(
        f"\nmodel {args.model} on {args.device} ({args.dtype}), batching={args.batching}, {args.concurrency} clients, "
        f"{args.duration:g} s per cell, POST {route.path} for every server, tokens counted by the client; "
        "ratios are to the bundled server on torch, padded (the first engine)\n"
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
    peers = [r for r, server in zip(results, servers, strict=True) if server.peer]
    if peers:
        ours = [r for r, server in zip(results, servers, strict=True) if not server.peer]
        print(against_peers(ours, peers, [c.label for c in cells]))
        raw["against_peers"] = peer_ratios(ours, peers, [c.label for c in cells])
        if args.out:
            write_json(args.out / "engines.json", raw)
    return 0


def geometric_mean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values)))) if values and min(values) > 0 else 0.0


def best(results: list[EngineResult], cells: list[str]) -> EngineResult:
    """The result with the highest geometric mean of tokens/s over the cells: one engine for all cells."""
    return max(results, key=lambda r: geometric_mean([r.tokens_per_s[c] for c in cells]))


def peer_ratios(ours: list[EngineResult], peers: list[EngineResult], cells: list[str]) -> dict:
    """Our best engine against each peer engine, cell by cell (tokens/s) and at a lone request (p50)."""
    mine = best(ours, cells)
    return {
        "ours_best": mine.label,
        "peers": {
            peer.label: {
                "tokens_per_s_ratio": {c: mine.tokens_per_s[c] / peer.tokens_per_s[c] for c in cells},
                "geometric_mean_ratio": geometric_mean(
                    [mine.tokens_per_s[c] / peer.tokens_per_s[c] for c in cells]
                ),
                "b1_c1_p50_ratio": mine.b1_c1_p50_ms / peer.b1_c1_p50_ms,
            }
            for peer in peers
        },
    }


def against_peers(ours: list[EngineResult], peers: list[EngineResult], cells: list[str]) -> str:
    ratios = peer_ratios(ours, peers, cells)
    lines = [
        f"\nours/peer: the bundled server's best engine ({ratios['ours_best']}, by the geometric mean "
        "of its tokens/s over the cells) against each peer engine\n",
        "| peer | "
        + " | ".join(f"tokens/s {c}, ours/peer" for c in cells)
        + " | geometric mean | p50 b=1, ours/peer |",
        "|---|" + "---:|" * (len(cells) + 2),
    ]
    for label, figures in ratios["peers"].items():
        cellwise = " | ".join(f"{figures['tokens_per_s_ratio'][c]:.2f}x" for c in cells)
        lines.append(
            f"| {label} | {cellwise} | {figures['geometric_mean_ratio']:.2f}x | {figures['b1_c1_p50_ratio']:.2f}x |"
        )
    return "\n".join(lines)


def server_info(url: str, peer: bool) -> dict:
    """Our server's ``/info``; the peer's ``/models`` (what it says it serves, with which engine)."""
    return requests.get(url + ("/models" if peer else "/info"), timeout=10).json()


if __name__ == "__main__":
    sys.exit(main())
