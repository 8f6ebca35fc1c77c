"""A local HTTP server that answers fast, except during periodic stalls: coordinated omission's test bed.

    python -m tests.doubles.stall_server [--port 0] [--latency-ms 5] [--period-s 10] [--stall-s 3]

Every request is answered ``--latency-ms`` after it arrives, unless that moment falls inside a stall:
then it is held until the stall ends, as a server frozen by a garbage-collection pause or a
failover would hold it. Stalls are the last ``--stall-s`` seconds of every ``--period-s``, counted
from the server's start, so a client can compute each request's due latency from its send time
alone: ``GET /schedule`` returns ``{"epoch", "period_s", "stall_s", "latency_ms"}`` (epoch in
wall-clock seconds). With ``--stall-s 0 --latency-ms 0`` it is a fast endpoint for rate tests.

Any other request is answered ``200 {}``. A bare asyncio server in its own process, so that neither
a thread pool nor the client's process limits it; it prints the contract doubles' ready line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass

from tests.doubles.common import READY_LINE


@dataclass(frozen=True)
class StallSchedule:
    epoch: float
    period_s: float
    stall_s: float
    latency_ms: float

    def release_at(self, arrived_at: float) -> float:
        """When a request that arrived at ``arrived_at`` (wall clock) is answered."""
        ready = arrived_at + self.latency_ms / 1000.0
        if self.stall_s <= 0:
            return ready
        cycle = math.floor((ready - self.epoch) / self.period_s)
        stall_end = self.epoch + (cycle + 1) * self.period_s
        return stall_end if ready >= stall_end - self.stall_s else ready


def _response(status: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def _handle(
    schedule: StallSchedule, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    schedule_body = _response("200 OK", json.dumps(asdict(schedule)).encode())
    empty_body = _response("200 OK", b"{}")
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            arrived_at = time.time()
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            if head.split(b" ", 2)[1:2] == [b"/schedule"]:
                writer.write(schedule_body)
            else:
                delay = schedule.release_at(arrived_at) - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(empty_body)
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def serve(host: str, port: int, schedule: StallSchedule) -> None:
    server = await asyncio.start_server(
        lambda reader, writer: _handle(schedule, reader, writer), host, port, backlog=2048
    )
    bound_port = server.sockets[0].getsockname()[1]
    print(f"{READY_LINE} http://{host}:{bound_port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.doubles.stall_server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed on the ready line)")
    parser.add_argument(
        "--latency-ms", type=float, default=5.0, help="answer time outside stalls (default 5)"
    )
    parser.add_argument("--period-s", type=float, default=10.0, help="one stall per period (default 10)")
    parser.add_argument("--stall-s", type=float, default=3.0, help="stall length, 0 for none (default 3)")
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the stall server listens on the loopback interface only")
    if args.period_s <= 0 or not 0 <= args.stall_s < args.period_s or args.latency_ms < 0:
        parser.error("need --period-s > 0, 0 <= --stall-s < --period-s and --latency-ms >= 0")
    schedule = StallSchedule(time.time(), args.period_s, args.stall_s, args.latency_ms)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, schedule))


if __name__ == "__main__":
    main()
