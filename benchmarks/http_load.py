"""A lean closed-loop HTTP client for the benchmarks, so the client is not what they measure.

Request bodies are encoded once, ahead of the loop; each connection is an ``http.client`` keep-alive
connection on its own thread (they wait on sockets, so the GIL is rarely contended); responses are
read whole but only their ``usage.total_tokens`` is parsed (a regex over the body's tail), because
``json.loads`` of a 128 x 1024 response costs ~45 ms of client CPU. Several processes split the
connections when one Python process is not enough (many cores, tiny requests).
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

TOTAL_TOKENS = re.compile(rb'"total_tokens":(\d+)')


@dataclass
class LoopTotals:
    tokens: int
    requests: int
    failures: int
    latencies_ms: list[float]
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def encode_bodies(texts: list[str], batch_size: int) -> list[bytes]:
    """``/embed`` bodies of ``batch_size`` consecutive texts each (a short tail is dropped)."""
    return [
        json.dumps({"texts": texts[i : i + batch_size]}).encode()
        for i in range(0, len(texts) - batch_size + 1, batch_size)
    ]


def closed_loop(
    url: str,
    bodies: list[bytes],
    connections: int,
    offset: int,
    until: float,
    traceparents: list[str] | None = None,
) -> LoopTotals:
    """``connections`` threads, each a keep-alive connection sending the next body when answered
    (request n with ``traceparents[n]``, cycling, where given: a traced client's headers)."""
    parts = urlsplit(url)
    lock = threading.Lock()
    totals = LoopTotals(0, 0, 0, [], 0.0)
    plain = {"Content-Type": "application/json"}

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
        n = offset + index
        tokens = requests = failures = 0
        latencies: list[float] = []
        while time.time() < until:
            started = time.perf_counter()
            try:
                headers = plain
                if traceparents:
                    headers = {**plain, "traceparent": traceparents[n % len(traceparents)]}
                connection.request("POST", "/embed", bodies[n % len(bodies)], headers)
                response = connection.getresponse()
                data = response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                connection.close()
                ok, data = False, b""
            latencies.append((time.perf_counter() - started) * 1e3)
            n += connections
            requests += 1
            match = TOTAL_TOKENS.search(data, max(0, len(data) - 200)) if ok else None
            if match:
                tokens += int(match.group(1))
            else:
                failures += 1
        with lock:
            totals.tokens += tokens
            totals.requests += requests
            totals.failures += failures
            totals.latencies_ms += latencies

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    totals.seconds = time.perf_counter() - started
    return totals


def run_load(
    url: str,
    bodies: list[bytes],
    concurrency: int,
    seconds: float,
    processes: int,
    traceparents: list[str] | None = None,
) -> LoopTotals:
    """Closed loop over ``processes`` client processes (connections split evenly) until a shared deadline."""
    until = time.time() + seconds
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    if processes == 1:
        return closed_loop(url, bodies, concurrency, 0, until, traceparents)
    with ProcessPoolExecutor(processes) as pool:
        parts = list(
            pool.map(
                closed_loop,
                [url] * processes,
                [bodies] * processes,
                shares,
                range(processes),
                [until] * processes,
                [traceparents] * processes,
            )
        )
    return LoopTotals(
        tokens=sum(p.tokens for p in parts),
        requests=sum(p.requests for p in parts),
        failures=sum(p.failures for p in parts),
        latencies_ms=[ms for p in parts for ms in p.latencies_ms],
        seconds=max(p.seconds for p in parts),
    )
