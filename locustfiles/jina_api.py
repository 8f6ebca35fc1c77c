"""JinaApiUser: the Jina Embeddings API and any OpenAI-compatible embeddings server.

    JINA_API_KEY=jina_... locust -f locustfiles/jina_api.py --grid article   # host: api.jina.ai
    locust -f locustfiles/jina_api.py -H http://127.0.0.1:8080 --model BAAI/bge-small-en-v1.5 \\
        --embeddings-path /embeddings --grid quick        # TEI, vLLM, Infinity, the bundled server

Request ``{"model": ..., "input": [...], "task": ...}`` (``task`` only when ``--task`` is set) to
``--embeddings-path`` with ``Authorization: Bearer <key>`` when a key is set and the host is the Jina
API or the one given at start (``embed_bench.load.credentials``); response
``{"data": [{"index": i, "embedding": [...]}], "usage": {"total_tokens": n}}``. Error codes of the
Jina API (``{"code": "RATE_TOKEN_LIMIT_EXCEEDED"}``), of OpenAI-style servers and of the bundled
server all end up in the failure message, e.g. ``HTTP 429 RATE_TOKEN_LIMIT_EXCEEDED``.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patches sockets and ssl before anything else)

# isort: split
import json
from typing import Any

import embed_bench.load.web_ui  # noqa: F401  (registers the embed-bench tab of the web UI)
from embed_bench.core.backends import JINA_API_URL, STUDY_MODEL
from embed_bench.core.checks import BadBody, Embeddings, embedding_items
from embed_bench.core.options import BenchOptions
from embed_bench.load.shape import GridShape
from embed_bench.load.users import EmbeddingUser

__all__ = ["GridShape", "JinaApiUser"]


class JinaApiUser(EmbeddingUser):
    host = JINA_API_URL  # -H / --host points it at any OpenAI-compatible server instead
    credential_default_host = JINA_API_URL  # the key may always go to the Jina API itself

    @classmethod
    def encode_request(cls, passages: list[str], options: BenchOptions) -> bytes:
        body: dict[str, Any] = {"model": options.model or STUDY_MODEL, "input": passages}
        if options.task:
            body["task"] = options.task
        return json.dumps(body).encode()

    def request_path(self) -> str:
        path = self.options.embeddings_path
        return path if path.startswith("/") else "/" + path

    def parse_embeddings(self, body: Any, inputs: int) -> Embeddings:
        items = embedding_items(body)
        if all(isinstance(item.get("index"), int) for item in items):
            items = sorted(items, key=lambda item: item["index"])
            if [item["index"] for item in items] != list(range(len(items))):
                raise BadBody("bad body: data indices are not 0..n-1")
        usage = body.get("usage")
        tokens = None
        if isinstance(usage, dict):
            tokens = usage.get("total_tokens", usage.get("prompt_tokens"))
        return Embeddings([item["embedding"] for item in items], tokens if isinstance(tokens, int) else None)
