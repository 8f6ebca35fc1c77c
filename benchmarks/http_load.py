"""A lean closed-loop HTTP client for the benchmarks, so the client is not what they measure.

Request bodies are encoded once, ahead of the loop; each connection is an ``http.client`` keep-alive
connection on its own thread (they wait on sockets, so the GIL is rarely contended); responses are
read whole but only their ``usage.total_tokens`` is parsed (a regex over the body's tail), because
``json.loads`` of a 128 x 1024 response costs ~45 ms of client CPU. Several processes split the
connections when one Python process is not enough (many cores, tiny requests).

Against another server (a peer such as Infinity, on its OpenAI-compatible route), the server's own
usage count is not trusted to count tokens as ours does: :class:`Route` gives the tokens of each body,
counted once by the client, and an answer counts when it is a 200 holding one embedding per input.
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
EMBEDDING_KEY = b'"embedding":'


@dataclass(frozen=True)
class Route:
    """Where bodies go and what they look like: the bundled server's ``/embed`` by default, or an
    OpenAI-compatible ``path`` taking ``{"input": [...], "model": model}``."""

    path: str = "/embed"
    model: str | None = None

    def body(self, texts: list[str]) -> dict:
        return {"texts": texts} if self.model is None else {"input": texts, "model": self.model}

    def vectors(self, answer: dict) -> list[list[float]]:
        """The embeddings of a parsed answer, in input order."""
        if self.model is None:
            return answer["embeddings"]
        return [item["embedding"] for item in sorted(answer["data"], key=lambda item: item["index"])]


EMBED = Route()


@dataclass(frozen=True)
class Counted:
    """What an answer to each body must hold and what it is worth, counted by the client: the body's
    inputs (one embedding each) and their tokens."""

    rows: list[int]
    tokens: list[int]


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


def batches(texts: list[str], batch_size: int) -> list[list[str]]:
    """``batch_size`` consecutive texts each (a short tail is dropped)."""
    return [texts[i : i + batch_size] for i in range(0, len(texts) - batch_size + 1, batch_size)]


def encode_bodies(texts: list[str], batch_size: int, route: Route = EMBED) -> list[bytes]:
    """The bodies of ``batch_size`` consecutive texts each, for ``route``."""
    return [json.dumps(route.body(batch)).encode() for batch in batches(texts, batch_size)]


def closed_loop(
    url: str,
    bodies: list[bytes],
    connections: int,
    offset: int,
    until: float,
    traceparents: list[str] | None = None,
    path: str = "/embed",
    counted: Counted | None = None,
) -> LoopTotals:
    """``connections`` threads, each a keep-alive connection sending the next body when answered
    (request n with ``traceparents[n]``, cycling, where given: a traced client's headers).

    Tokens come from each answer's ``usage.total_tokens``, or with ``counted`` from the client's own
    count of the body answered."""
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
                connection.request("POST", path, bodies[n % len(bodies)], headers)
                response = connection.getresponse()
                data = response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                connection.close()
                ok, data = False, b""
            latencies.append((time.perf_counter() - started) * 1e3)
            index = n % len(bodies)
            n += connections
            requests += 1
            if counted is not None:
                if ok and data.count(EMBEDDING_KEY) == counted.rows[index]:
                    tokens += counted.tokens[index]
                else:
                    failures += 1
                continue
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
    path: str = "/embed",
    counted: Counted | None = None,
) -> LoopTotals:
    """Closed loop over ``processes`` client processes (connections split evenly) until a shared deadline."""
    until = time.time() + seconds
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    if processes == 1:
        return closed_loop(url, bodies, concurrency, 0, until, traceparents, path, counted)
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
                [path] * processes,
                [counted] * processes,
            )
        )
    return LoopTotals(
        tokens=sum(p.tokens for p in parts),
        requests=sum(p.requests for p in parts),
        failures=sum(p.failures for p in parts),
        latencies_ms=[ms for p in parts for ms in p.latencies_ms],
        seconds=max(p.seconds for p in parts),
    )
