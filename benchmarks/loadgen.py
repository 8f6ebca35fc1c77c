"""The load generator's own ceiling: one Locust process against a trivial local endpoint.

    .venv/bin/python benchmarks/loadgen.py [--users 8] [--requests-per-user 100] [--rounds 3]

Runs the real SelfHostedUser under the real GridShape with a tiny constant payload and with batch
32 x 512-token passages (distinct, token-exact), alternating, and prints requests/s and CPU
milliseconds per request of the Locust process for both, per round and as medians. Payload work happens
before a cell starts, so the big payload should cost little more than the tiny one: a ratio of
at least 0.8x says payload work is not what limits the load generator. The endpoint is a bare
asyncio server in its own process that answers a canned ``/embed`` response (8-dimensional vectors,
one per input), so response parsing stays small and the server is not the bottleneck either.
Figures are printed, never asserted: they depend on the machine.
"""

from __future__ import annotations

import locust  # first: gevent monkey-patches sockets before anything else loads

# isort: split
import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from locust.argument_parser import get_parser  # noqa: E402
from locust.env import Environment  # noqa: E402

from locustfiles.grid import GridShape  # noqa: E402
from locustfiles.options import BenchOptions  # noqa: E402
from locustfiles.payloads import PassageFactory  # noqa: E402
from locustfiles.self_hosted import SelfHostedUser  # noqa: E402

TINY_BODY = json.dumps({"texts": ["hello"], "truncate": True}).encode()


class TinyConstantUser(SelfHostedUser):
    """The baseline: the same user, checks and naming, but one constant one-word passage."""

    @classmethod
    def encode_request(cls, passages: list[str], options: BenchOptions) -> bytes:
        return TINY_BODY


# --- the trivial endpoint (runs in a child process: `loadgen.py --serve PORT`) -------------------
async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    canned: dict[int, bytes] = {}
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            # Passages are plain words, so a JSON list of n strings has n - 1 '", "' separators.
            inputs = body.count(b'", "') + 1
            if inputs not in canned:
                payload = {
                    "embeddings": [[0.125] * 8] * inputs,
                    "usage": {"total_tokens": inputs},
                    "model": "x",
                }
                content = json.dumps(payload).encode()
                canned[inputs] = (
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(content)).encode()
                    + b"\r\n\r\n"
                    + content
                )
            writer.write(canned[inputs])
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def serve(port: int) -> None:
    async def run() -> None:
        server = await asyncio.start_server(_handle, "127.0.0.1", port)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


# --- the measurement ----------------------------------------------------------------------------
@dataclass
class Measurement:
    label: str
    requests: int
    failures: int
    requests_per_s: float
    cpu_ms_per_request: float
    body_bytes: int


class RequestClock:
    """Wall and CPU clock at each measured request's completion: the first and last bound the window."""

    def __init__(self, environment: Environment) -> None:
        self.marks: list[tuple[float, float]] = []
        self.failures = 0
        environment.events.request.add_listener(self.on_request)

    def on_request(self, name: str, exception: BaseException | None = None, **_kwargs: object) -> None:
        if name.startswith("warmup"):
            return
        self.marks.append((time.perf_counter(), time.process_time()))
        self.failures += exception is not None


def measure(user_class: type[SelfHostedUser], label: str, host: str, cell: list[str]) -> Measurement:
    arguments = ["--headless", "--only-summary", "--warmup-requests", "2", "--seed", "1", *cell]
    options = get_parser().parse_args(arguments)
    environment = Environment(
        user_classes=[user_class],
        shape_class=GridShape(),
        events=locust.events,
        host=host,
        parsed_options=options,
    )
    runner = environment.create_local_runner()
    environment.events.init.fire(environment=environment, runner=runner, web_ui=None)
    clock = RequestClock(environment)
    runner.start_shape()
    runner.shape_greenlet.join()
    runner.quit()
    environment.events.request.remove_listener(clock.on_request)
    (wall0, cpu0), (wall1, cpu1) = clock.marks[0], clock.marks[-1]
    intervals = len(clock.marks) - 1
    bench = BenchOptions.from_namespace(options)
    sample = PassageFactory(seed=2).passages(bench.batch_size, bench.passage_tokens, "body size probe")
    return Measurement(
        label,
        len(clock.marks),
        clock.failures,
        intervals / (wall1 - wall0),
        1000.0 * (cpu1 - cpu0) / intervals,
        len(user_class.encode_request(sample, bench)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--requests-per-user", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="alternating pairs; medians are reported")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    common = ["--users", str(args.users), "--requests-per-user", str(args.requests_per_user)]
    scenarios = [
        (TinyConstantUser, "tiny constant payload", [*common, "--batch-size", "1", "--passage-tokens", "1"]),
        (
            SelfHostedUser,
            "batch 32 x 512-token passages",
            [*common, "--batch-size", "32", "--passage-tokens", "512"],
        ),
    ]
    rounds: list[list[Measurement]] = []
    try:
        assert server.stdout is not None
        server.stdout.readline()
        host = f"http://127.0.0.1:{port}"
        # Alternate the two payloads so both see the same background load on a shared machine.
        for _ in range(args.rounds):
            rounds.append([measure(user_class, label, host, cell) for user_class, label, cell in scenarios])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
    print(
        f"\nOne Locust process, {args.users} users x {args.requests_per_user} measured requests per run, "
        f"trivial local endpoint, {os.cpu_count()} CPUs, {args.rounds} alternating round(s)"
    )
    print(
        f"{'round':<7}{'payload':<32}{'requests':>9}{'failures':>9}{'req/s':>9}{'CPU ms/req':>12}{'body bytes':>12}"
    )
    for number, pair in enumerate(rounds, start=1):
        for result in pair:
            print(
                f"{number:<7}{result.label:<32}{result.requests:>9}{result.failures:>9}{result.requests_per_s:>9.0f}"
                f"{result.cpu_ms_per_request:>12.3f}{result.body_bytes:>12,}"
            )
    for index, (_, label, _) in enumerate(scenarios):
        rate = statistics.median(pair[index].requests_per_s for pair in rounds)
        cpu = statistics.median(pair[index].cpu_ms_per_request for pair in rounds)
        print(
            f"median {label:<32} {rate:>7.0f} req/s  {cpu:.3f} CPU ms/request (ceiling {1000 / cpu:.0f} req/s)"
        )
    ratio = statistics.median(pair[1].requests_per_s / pair[0].requests_per_s for pair in rounds)
    verdict = (
        "payload work is not the bottleneck" if ratio >= 0.8 else "payload work limits the load generator"
    )
    print(f"median ratio 32x512 / tiny (req/s, per round): {ratio:.2f}x (>= 0.8x wanted): {verdict}")


if __name__ == "__main__":
    main()
