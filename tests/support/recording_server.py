"""A tiny OpenAI-compatible embeddings server on a loopback port that keeps every request it gets,
byte for byte: the test's own listener, to see what a load generator sends to a host."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    """One request as it arrived: request line, headers and body."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes  # request line + header block + body

    def holds(self, secret: str) -> bool:
        return secret.encode() in self.raw


@dataclass
class RecordingServer:
    url: str
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.requests)

    def embeddings(self) -> list[Received]:
        return [request for request in self.received() if request.path.endswith("/embeddings")]


@contextlib.contextmanager
def recording_server() -> Iterator[RecordingServer]:
    """Answer ``POST .../embeddings`` with one 3-dimensional vector per input (any other request:
    404), keep every request; yields once it listens, stops when the block ends."""
    state = RecordingServer("")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            head = f"{self.requestline}\r\n{self.headers}".encode("latin-1")
            with state.lock:
                state.requests.append(
                    Received(self.command, self.path, dict(self.headers.items()), head + body)
                )
            status, document = 404, {"error": "not found"}
            if self.command == "POST" and self.path.endswith("/embeddings"):
                try:
                    inputs = json.loads(body)["input"]
                except (ValueError, KeyError, TypeError):
                    inputs = []
                status = 200
                document = {
                    "data": [{"index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(len(inputs))],
                    "usage": {"total_tokens": 0},
                }
            payload = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
