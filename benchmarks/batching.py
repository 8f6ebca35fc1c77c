"""Batching modes against the model's offline limit, side by side from one run.

Measures, on the bundled model (or --model) and the same passages throughout:
  * offline ``SentenceTransformer.encode`` throughput (tokens/s) for each cell's passage length, at
    its batch size but at least 32 -- the limit a server can approach -- before and after the
    servers, best kept;
  * for each batching mode, the real server under gunicorn on 127.0.0.1:
      - tokens/s at --concurrency (10) for each cell of --cells (default batch 1 and batch 32 of
        --passage-tokens; closed loop: each client sends its next request when the last one
        returns, for --duration seconds, then drains),
      - the share of padding in the passes the server ran for each cell (from its /metrics),
      - p50 latency at concurrency 1, batch 1.
A mode may name the attention too: ``continuous+packed`` serves with ``--attention packed`` (no
compute on padding), so padded and packed passes compare in one run.
A cell's passages are all --passage-tokens long (``32``), or of the cell's own length (``32x512``), or
of lengths drawn from a log-normal (``16xln300x0.8[8-8192]``: median 300, sigma 0.8, 8 to 8192
tokens): real traffic mixes lengths, and a mix of lengths costs padding that one length never shows.
Prints a table with ratios (server / offline, latency / `none`), and writes JSON with --json-out.
With --out DIR: DIR/batching.txt (what it prints), DIR/batching.json (as --json-out, plus each
cell's raw request count, tokens, seconds and latency percentiles, and the b=1 c=1 latencies) and
DIR/batching-load.json (load averages before and after).
The model is loaded as the server loads it (target_server.models.load_embedder), so
``synthetic:NAME`` shapes and --dtype work for the offline limit too.

    .venv/bin/python benchmarks/batching.py            # ~3 minutes on 2 CPU cores
    .venv/bin/python benchmarks/batching.py --device cuda --model jinaai/jina-embeddings-v3 --trust-remote-code
    .venv/bin/python benchmarks/batching.py --device cuda --model synthetic:jina-embeddings-v3 --cells 32x512,128x128
    .venv/bin/python benchmarks/batching.py --cells '32,8xln64x0.8[8-254]'   # a variable-length cell on CPU
    .venv/bin/python benchmarks/batching.py --modes continuous,continuous+packed --cells '32,32xln64x0.8[8-254]'
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import requests
from http_load import EMBED, LoopTotals, Route, encode_bodies, run_load
from raw_out import raw_results

from embed_bench.core.lengths import LengthDistribution, parse_lengths
from embed_bench.core.payloads import PassageFactory, count_tokens
from target_server.launcher import running_target_server

OFFLINE_MIN_BATCH = 32


# A variable-length cell's passage lengths: ``ln300`` (median 300), ``ln300x0.8`` (and sigma),
# ``ln300x0.8[8-8192]`` (and the range; defaults: sigma 0.8, 8 to 8192 tokens).
LOGNORMAL = re.compile(
    r"ln(?P<median>\d+(?:\.\d+)?)(?:x(?P<sigma>\d+(?:\.\d+)?))?(?:\[(?P<low>\d+)-(?P<high>\d+)\])?"
)


@dataclass(frozen=True)
class CellShape:
    """``batch_size`` passages per request, of ``lengths`` tokens each (special tokens excluded)."""

    batch_size: int
    lengths: LengthDistribution

    @property
    def passage_tokens(self) -> int | str:
        """The fixed length, or the distribution's label (``ln300x0.8[8-8192]``)."""
        return self.lengths.low if self.lengths.is_fixed else self.lengths.label

    @property
    def label(self) -> str:
        return f"b={self.batch_size} t={self.passage_tokens}"


@dataclass
class CellResult:
    batch_size: int
    passage_tokens: int | str
    tokens_per_s: float
    vs_offline: float
    # Of the padded tokens the server's passes ran in this cell, the share that was padding
    # (from its /metrics: 1 - embed_batch_tokens / embed_batch_padded_tokens); None: not exported.
    padding_share: float | None = None
    # What a real token attends over, on average: sum(t^2) / sum(t) of the passages as the server
    # counts them (special tokens included); the attention term of FLOPs per real token (gpu.py mfu).
    attention_tokens: float | None = None


@dataclass
class ModeResult:
    mode: str
    cells: list[CellResult]
    b1_c1_p50_latency_ms: float
    failures: int


def p50_latency_ms(
    url: str, bodies: list[list[str]], count: int, samples: list[float] | None = None, route: Route = EMBED
) -> float:
    session = requests.Session()
    latencies = []
    for body in bodies[:count]:
        started = time.perf_counter()
        response = session.post(url + route.path, json=route.body(body), timeout=60)
        latencies.append((time.perf_counter() - started) * 1e3)
        response.raise_for_status()
    if samples is not None:
        samples.extend(latencies)
    return statistics.median(latencies)


def raw_totals(totals: LoopTotals) -> dict:
    """One closed-loop phase's raw counts (for --out)."""
    ordered = sorted(totals.latencies_ms)
    pick = (lambda q: ordered[min(int(q * len(ordered)), len(ordered) - 1)]) if ordered else (lambda q: None)
    return {
        "requests": totals.requests,
        "tokens": totals.tokens,
        "failures": totals.failures,
        "seconds": totals.seconds,
        "latency_ms": {
            "p50": pick(0.5),
            "p90": pick(0.9),
            "p99": pick(0.99),
            "max": ordered[-1] if ordered else None,
        },
    }


def offline_tokens_per_s(model, texts: list[str], batch_size: int) -> float:
    tokens = sum(
        len(ids)
        for ids in model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]
    )
    model.encode(texts[:batch_size], batch_size=batch_size)  # warm
    started = time.perf_counter()
    model.encode(texts, batch_size=batch_size)
    return tokens / (time.perf_counter() - started)


def offline_limits(args, passages: dict[CellShape, list[str]]) -> dict[CellShape, float]:
    """Offline encode throughput per cell, with the model loaded exactly as the server loads it."""
    from target_server.config import ServerConfig
    from target_server.models import load_embedder

    config = ServerConfig(
        model=args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code
    )
    model = load_embedder(config).model
    # At the cell's batch size, at least 32: the batch a server may form from small concurrent requests.
    limits = {
        cell: offline_tokens_per_s(model, texts, max(OFFLINE_MIN_BATCH, cell.batch_size))
        for cell, texts in passages.items()
    }
    del model
    if args.device == "cuda":
        import torch

        torch.cuda.empty_cache()  # free the device for the servers
    return limits


def write_json(
    args,
    cells: list[CellShape],
    offline: dict[CellShape, float],
    measured: list,
    *,
    complete: bool,
    attention: dict[CellShape, float],
    raw: dict | None = None,
) -> list[ModeResult]:
    """The modes measured so far against ``offline``; written to --json-out (after each mode, then at the end)."""
    results = [
        ModeResult(
            mode,
            [
                CellResult(
                    c.batch_size,
                    c.passage_tokens,
                    rates[c],
                    rates[c] / offline[c],
                    padding.get(c),
                    attention.get(c),
                )
                for c in cells
            ],
            p50,
            failures,
        )
        for mode, rates, p50, failures, padding in measured
    ]
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "complete": complete,  # false: written before the offline limit was measured again
            "offline_tokens_per_s": [
                {
                    "batch_size": c.batch_size,
                    "passage_tokens": c.passage_tokens,
                    "attention_tokens": attention.get(c),
                    "tokens_per_s": offline[c],
                }
                for c in cells
            ],
            "args": vars(args) | {"json_out": str(args.json_out), "out": str(args.out)},
            "modes": [asdict(r) for r in results],
        }
        if raw is not None:
            payload["raw"] = raw
        args.json_out.write_text(json.dumps(payload, indent=2))
    return results


def served_tokenizer(model: str) -> str:
    """The tokenizer a PassageFactory needs for ``model``: its own, or the bundled one ("") for
    ``bundled``, ``synthetic:NAME`` and ``null:WIDTH`` (both take the bundled tokenizer)."""
    return "" if model == "bundled" or ":" in model else model


def parse_cells(text: str, passage_tokens: int) -> list[CellShape]:
    """``1,32``, ``32x512,128x128`` or ``16xln300x0.8[8-8192]``: batch size, optionally x passage
    tokens (else --passage-tokens) or a log-normal length distribution (a variable-length cell)."""
    cells = []
    for item in text.split(","):
        batch, _, tokens = item.strip().partition("x")
        cells.append(CellShape(int(batch), parse_passage_lengths(tokens or str(passage_tokens))))
    return cells


def parse_passage_lengths(text: str) -> LengthDistribution:
    if text.isdigit():
        return LengthDistribution.fixed(int(text))
    match = LOGNORMAL.fullmatch(text)
    if match is None:
        raise SystemExit(
            f"error: passage tokens must be a number or lnMEDIAN[xSIGMA][[MIN-MAX]], got {text!r}"
        )
    table = {
        "distribution": "lognormal",
        "median": float(match["median"]),
        "sigma": float(match["sigma"] or 0.8),
        "min": int(match["low"] or 8),
        "max": int(match["high"] or 8192),
    }
    return parse_lengths(table, where=text)


def cell_passages(factory: PassageFactory, cell: CellShape, count: int) -> list[str]:
    """``count`` distinct passages of the cell's lengths (drawn from a seeded stream per cell)."""
    stream = f"benchmark-{cell.passage_tokens}"
    if cell.lengths.is_fixed:
        return factory.passages(count, cell.lengths.low, stream=stream)
    lengths = cell.lengths.draw(random.Random(stream), count)
    return factory.passages_of(list(lengths), stream=stream)


def attention_tokens(lengths: list[int]) -> float:
    """sum(t^2) / sum(t): the sequence length an average real token attends over."""
    return sum(t * t for t in lengths) / sum(lengths)


def scrape_pass_tokens(url: str) -> tuple[float, float] | None:
    """(real, padded) tokens the server's passes have run so far, from /metrics; None if it does not
    export both (``embed_batch_tokens`` is newer than ``embed_batch_padded_tokens``)."""
    text = requests.get(url + "/metrics", timeout=10).text
    sums = dict(re.findall(r"^(embed_batch_tokens_sum|embed_batch_padded_tokens_sum) (\S+)$", text, re.M))
    if len(sums) < 2:
        return None
    return float(sums["embed_batch_tokens_sum"]), float(sums["embed_batch_padded_tokens_sum"])


def padding_share(before: tuple[float, float] | None, after: tuple[float, float] | None) -> float | None:
    if before is None or after is None or after[1] <= before[1]:
        return None
    return 1 - (after[0] - before[0]) / (after[1] - before[1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="bundled", help="as the server's --model (synthetic:NAME too)")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--dtype", default="auto", help="as the server's --dtype (auto: bf16 on CUDA)")
    parser.add_argument("--passage-tokens", type=int, default=128, help="of b=1 latency and cells without x")
    parser.add_argument(
        "--cells", default="1,32", help="batch sizes, each optionally xTOKENS: 32x512,128x128"
    )
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--passages", type=int, default=640, help="distinct passages per cell")
    parser.add_argument(
        "--duration", "--seconds", type=float, default=10.0, help="seconds each closed-loop phase sends"
    )
    parser.add_argument("--latency-requests", type=int, default=30, help="sequential b=1 requests for p50")
    parser.add_argument(
        "--modes",
        default="none,timeout,continuous",
        help="batching modes, each optionally +packed (--attention packed): none,continuous,continuous+packed",
    )
    parser.add_argument("--max-batch-tokens", type=int, help="passed to every server (default: each mode's)")
    parser.add_argument("--server-start-timeout", type=float, default=600)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument(
        "--out", type=Path, help="raw results: DIR/batching.txt, .json (--json-out's default), -load.json"
    )
    args = parser.parse_args()
    if args.out and not args.json_out:
        args.json_out = args.out / "batching.json"
    with raw_results(args.out, "batching"):
        return measure(args)


def measure(args: argparse.Namespace) -> int:

    cells = parse_cells(args.cells, args.passage_tokens)
    # The Locust side's token-exact, distinct passages, under the served model's own tokenizer
    # (synthetic shapes and the null model use the bundled one).
    factory = PassageFactory(served_tokenizer(args.model), seed=1)
    passages = {cell: cell_passages(factory, cell, args.passages) for cell in cells}
    singles = [[t] for t in factory.passages(args.latency_requests, args.passage_tokens, stream="latency")]
    attention: dict[CellShape, float] = {}  # per cell, once the model's input limit is known

    offline_before = offline_limits(args, passages)
    raw: dict | None = {"offline_before": {}, "offline_after": {}, "modes": {}} if args.out else None
    if raw is not None:
        raw["offline_before"] = {cell.label: rate for cell, rate in offline_before.items()}
    for cell, rate in offline_before.items():
        print(f"offline encode {cell.label}: {rate:,.0f} tokens/s", flush=True)

    server_args = ["--device", args.device, "--dtype", args.dtype, "--model", args.model, "--threads", "32"]
    server_args += ["--trust-remote-code"] if args.trust_remote_code else []
    server_args += ["--max-batch-tokens", str(args.max_batch_tokens)] if args.max_batch_tokens else []
    measured: list[tuple[str, dict[CellShape, float], float, int, dict[CellShape, float | None]]] = []
    for mode in args.modes.split(","):
        batching, _, attention_mode = mode.partition("+")
        mode_args = ["--batching", batching] + (["--attention", attention_mode] if attention_mode else [])
        with running_target_server(*server_args, *mode_args, timeout_s=args.server_start_timeout) as url:
            if not attention:
                limit = requests.get(url + "/info", timeout=10).json()["max_input_tokens"]
                for cell, texts in passages.items():  # as the server counts: special tokens, truncation
                    lengths = [min(n + 2, limit) for n in count_tokens(factory.tokenizer, texts)]
                    attention[cell] = attention_tokens(lengths)
            singles_ms: list[float] = []
            p50 = p50_latency_ms(
                url, singles, 8 if batching == "timeout" else args.latency_requests, singles_ms
            )
            rates, failures, padding = {}, 0, {}
            raw_cells = {}
            for cell in cells:
                before = scrape_pass_tokens(url)
                totals = run_load(
                    url, encode_bodies(passages[cell], cell.batch_size), args.concurrency, args.duration, 1
                )
                after = scrape_pass_tokens(url)
                rates[cell] = totals.tokens_per_s
                padding[cell] = padding_share(before, after)
                failures += totals.failures
                raw_cells[f"{cell.label} c={args.concurrency}"] = raw_totals(totals) | {
                    "pass_tokens_before": before,  # (real, padded) summed over the server's passes
                    "pass_tokens_after": after,
                    "padding_share": padding[cell],
                }
        measured.append((mode, rates, p50, failures, padding))
        if raw is not None:
            raw["modes"][mode] = {"b1_c1_latencies_ms": singles_ms, "cells": raw_cells}
        # a later hang loses nothing
        write_json(args, cells, offline_before, measured, complete=False, attention=attention, raw=raw)
        summary = ", ".join(
            f"{cell.label} c={args.concurrency} {rate:,.0f} tok/s ({percent(padding[cell])} padding)"
            for cell, rate in rates.items()
        )
        print(f"{mode}: {summary}, p50 b=1 c=1 {p50:,.1f} ms", flush=True)

    offline_after = offline_limits(args, passages)
    offline = {cell: max(offline_before[cell], offline_after[cell]) for cell in cells}
    if raw is not None:
        raw["offline_after"] = {cell.label: rate for cell, rate in offline_after.items()}
    results = write_json(args, cells, offline, measured, complete=True, attention=attention, raw=raw)
    none_p50 = next((r.b1_c1_p50_latency_ms for r in results if r.mode == "none"), None)

    limits = ", ".join(
        f"{c.label} {offline[c]:,.0f} (before {offline_before[c]:,.0f}, after {offline_after[c]:,.0f})"
        for c in cells
    )
    print(f"\nmodel: {args.model}  device: {args.device}  dtype: {args.dtype}  offline tokens/s: {limits}\n")
    header = "".join(f" tokens/s {c.label} c={args.concurrency} | x offline | padding |" for c in cells)
    print(f"| mode |{header} p50 ms b=1 c=1 | x none | failures |")
    print("|---|" + "---:|---:|---:|" * len(cells) + "---:|---:|---:|")
    for r in results:
        vs_none = f"{r.b1_c1_p50_latency_ms / none_p50:.2f}" if none_p50 else "-"
        row = "".join(
            f" {c.tokens_per_s:,.0f} | {c.vs_offline:.2f} | {percent(c.padding_share)} |" for c in r.cells
        )
        print(f"| {r.mode} |{row} {r.b1_c1_p50_latency_ms:,.1f} | {vs_none} | {r.failures} |")
    print(
        "\npadding: the share of the padded tokens the server's passes ran in the cell that was padding "
        "(its /metrics: 1 - embed_batch_tokens / embed_batch_padded_tokens); tokens/s counts real tokens"
    )
    return 0


def percent(share: float | None) -> str:
    return "not measured" if share is None else f"{100 * share:.1f}%"


if __name__ == "__main__":
    sys.exit(main())
