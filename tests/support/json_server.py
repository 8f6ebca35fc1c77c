"""A tiny threaded HTTP server on a loopback port that answers GETs with JSON documents by path:
the stand-in for a server's ``/health``, ``/info`` or ``/v1/models`` in tests of the client side."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# path -> (status, document); None: 404
Answer = Callable[[str], tuple[int, object] | None]


@contextlib.contextmanager
def json_server(answer: Answer) -> Iterator[str]:
    """Serve ``answer(path)`` for every GET until the block ends; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = answer(self.path)
            status, document = found if found is not None else (404, {"error": "not found"})
            payload = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
