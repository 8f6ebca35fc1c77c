"""SelfHostedUser: the bundled target server's ``POST /embed`` (the study's own endpoint).

    locust -f locustfiles/self_hosted.py -H http://127.0.0.1:8000 --grid quick

Request ``{"texts": [...], "truncate": true}``; response ``{"embeddings": [[...]], "usage":
{"total_tokens": n}, "model": ...}``. The server counts the special tokens it embeds and truncates at
the model's limit; its usage is kept in the request record (``tokens_server``), while
``response_length`` is the client's count like every backend's. ``--api-key`` (or
``JINA_API_KEY``), if set, is sent as a Bearer token for a server started with ``--api-key``.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patches sockets and ssl before anything else)

# isort: split
import json
from typing import Any

import embed_bench.load.prometheus_exporter  # GET /metrics on the web UI, for Prometheus
import embed_bench.load.web_ui  # noqa: F401  (registers the embed-bench tab of the web UI)
from embed_bench.core.checks import BadBody, Embeddings
from embed_bench.core.options import BenchOptions
from embed_bench.load.shape import GridShape
from embed_bench.load.users import EmbeddingUser

__all__ = ["GridShape", "SelfHostedUser"]


class SelfHostedUser(EmbeddingUser):
    @classmethod
    def encode_request(cls, passages: list[str], options: BenchOptions) -> bytes:
        return json.dumps({"texts": passages, "truncate": True}).encode()

    def request_path(self) -> str:
        return "/embed"

    def parse_embeddings(self, body: Any, inputs: int) -> Embeddings:
        if not isinstance(body, dict) or not isinstance(body.get("embeddings"), list):
            raise BadBody("bad body: no embeddings list")
        usage = body.get("usage")
        tokens = usage.get("total_tokens") if isinstance(usage, dict) else None
        return Embeddings(body["embeddings"], tokens if isinstance(tokens, int) else None)
