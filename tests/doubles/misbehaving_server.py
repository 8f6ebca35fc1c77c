"""A target that answers ``POST /embed`` (the bundled server's shape) badly on a fixed schedule.

    python -m tests.doubles.misbehaving_server [--port 0] [--dimensions 8] --schedule ok,truncated,...

Request k (counted from 1 over every ``POST /embed``) gets the (k-1)-th fault of ``--schedule``,
cyclically; ``--good-first N`` answers the first N requests well whatever the schedule says (a
client learns the dimension from its first good answer); ``--hold-first-s`` holds the first answer
that long (a test reads the client's memory before any bad answer comes). The faults, each a way a real server or
the network between can fail:

- ``ok``: ``{"embeddings": [[...]], "usage": {"total_tokens": n}, "model": "misbehaving"}``;
- ``truncated``: that body cut in half, with a Content-Length that matches the cut (valid HTTP,
  invalid JSON);
- ``cut``: the whole body announced, half of it sent, then the connection closed;
- ``wrong-dims``: vectors one dimension short;
- ``nan``: a ``NaN`` among the values;
- ``huge``: a 50 MB body (``--huge-mb``) announced by its Content-Length;
- ``huge-chunked``: the same, chunked, with no length announced;
- ``trickle``: the good body, one byte a second (``--trickle-s``).

``GET /health`` answers ``{"status": "ok"}``; ``GET /__double__/ledger`` what was received and
which faults were served. A bare asyncio server in its own process (byte-level control of what goes
on the wire); listens on the loopback interface only; prints the contract doubles' ready line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from dataclasses import dataclass, field

from tests.doubles.common import READY_LINE

FAULTS = ("ok", "truncated", "cut", "wrong-dims", "nan", "huge", "huge-chunked", "trickle")
CHUNK = 64 << 10


@dataclass
class Misbehaviour:
    schedule: tuple[str, ...]
    dimensions: int = 8
    good_first: int = 0
    huge_bytes: int = 50 << 20
    trickle_s: float = 1.0
    hold_first_s: float = 0.0
    received: int = 0
    served: dict[str, int] = field(default_factory=dict)

    def next_fault(self) -> str:
        self.received += 1
        number = self.received
        fault = "ok" if number <= self.good_first else self.schedule[(number - 1) % len(self.schedule)]
        self.served[fault] = self.served.get(fault, 0) + 1
        return fault

    def body(self, inputs: int, dimensions: int | None = None, nan: bool = False) -> bytes:
        vector = [round(0.1 * (index + 1), 3) for index in range(dimensions or self.dimensions)]
        text = json.dumps(
            {"embeddings": [vector] * inputs, "usage": {"total_tokens": inputs}, "model": "misbehaving"}
        )
        return text.replace("0.1,", "NaN,", 1).encode() if nan else text.encode()


def _head(status: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"HTTP/1.1 {status}",
        "Content-Type: application/json",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _answer(body: bytes) -> bytes:
    return _head("200 OK", {"Content-Length": str(len(body))}) + body


async def _serve_fault(fault: str, inputs: int, state: Misbehaviour, writer: asyncio.StreamWriter) -> bool:
    """Write the answer of ``fault``; False when the connection must close after it."""
    good = state.body(inputs)
    if fault == "ok":
        writer.write(_answer(good))
    elif fault == "truncated":
        writer.write(_answer(good[: len(good) // 2]))
    elif fault == "cut":
        writer.write(_head("200 OK", {"Content-Length": str(len(good))}) + good[: len(good) // 2])
        await writer.drain()
        return False
    elif fault == "wrong-dims":
        writer.write(_answer(state.body(inputs, dimensions=state.dimensions - 1)))
    elif fault == "nan":
        writer.write(_answer(state.body(inputs, nan=True)))
    elif fault in ("huge", "huge-chunked"):
        await _huge(state.huge_bytes, chunked=fault == "huge-chunked", writer=writer)
        return False
    elif fault == "trickle":
        writer.write(_head("200 OK", {"Content-Length": str(len(good))}))
        for byte in good:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(state.trickle_s)
    await writer.drain()
    return True


async def _huge(size: int, chunked: bool, writer: asyncio.StreamWriter) -> None:
    """A JSON-looking body of ``size`` bytes, written as fast as the client reads it."""
    headers = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(size)}
    writer.write(_head("200 OK", headers))
    piece = (b"0.0, " * (CHUNK // 5 + 1))[:CHUNK]
    sent = 0
    while sent < size:
        part = piece[: min(CHUNK, size - sent)]
        writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n" if chunked else part)
        sent += len(part)
        await writer.drain()
    if chunked:
        writer.write(b"0\r\n\r\n")
    await writer.drain()


async def _handle(state: Misbehaviour, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, path = request_line.split(" ")[:2]
            length = 0
            for line in header_lines:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            payload = await reader.readexactly(length) if length else b""
            if method == "POST" and path == "/embed":
                texts = json.loads(payload).get("texts", [])
                fault = state.next_fault()
                if state.received == 1:
                    await asyncio.sleep(state.hold_first_s)
                if not await _serve_fault(fault, len(texts), state, writer):
                    return
            elif path == "/__double__/ledger":
                writer.write(
                    _answer(json.dumps({"received": state.received, "faults": state.served}).encode())
                )
            elif path == "/health":
                writer.write(_answer(b'{"status": "ok"}'))
            else:
                body = b'{"error": "not found", "error_type": "not_found"}'
                writer.write(_head("404 Not Found", {"Content-Length": str(len(body))}) + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        pass  # the client went away (a client that stops reading a huge body closes the connection)
    finally:
        writer.close()


async def serve(host: str, port: int, state: Misbehaviour) -> None:
    server = await asyncio.start_server(lambda r, w: _handle(state, r, w), host, port)
    print(f"{READY_LINE} http://{host}:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.doubles.misbehaving_server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed on the ready line)")
    parser.add_argument("--schedule", default="ok", help=f"comma-separated faults among {', '.join(FAULTS)}")
    parser.add_argument("--good-first", type=int, default=0, help="answer the first N requests well")
    parser.add_argument("--dimensions", type=int, default=8)
    parser.add_argument("--huge-mb", type=float, default=50.0, help="size of a huge body (default 50)")
    parser.add_argument("--trickle-s", type=float, default=1.0, help="seconds per byte of a trickle")
    parser.add_argument("--hold-first-s", type=float, default=0.0, help="hold the first answer this long")
    args = parser.parse_args()
    schedule = tuple(name.strip() for name in args.schedule.split(","))
    unknown = [name for name in schedule if name not in FAULTS]
    if unknown:
        parser.error(f"unknown fault(s) {unknown}; choose among {', '.join(FAULTS)}")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the misbehaving server listens on the loopback interface only")
    state = Misbehaviour(
        schedule,
        args.dimensions,
        args.good_first,
        int(args.huge_mb * (1 << 20)),
        args.trickle_s,
        args.hold_first_s,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, state))


if __name__ == "__main__":
    main()
