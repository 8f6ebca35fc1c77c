"""JinaApiUser: the Jina Embeddings API and any OpenAI-compatible embeddings server.

    JINA_API_KEY=jina_... locust -f locustfiles/jina_api.py --grid article   # host: api.jina.ai
    locust -f locustfiles/jina_api.py -H http://127.0.0.1:8080 --embeddings-path /embeddings \\
        --grid quick        # TEI, vLLM, Infinity, the bundled server: the model from its /v1/models

Without ``--model``, the model is the study's ``jina-embeddings-v3`` on the Jina API and, on any other
host, the one the server lists (``/v1/models``, ``/models``, ``/info``), or the run stops at start
saying so. Request ``{"model": ..., "input": [...], "task": ...}`` (``task`` only when ``--task`` is set) to
``--embeddings-path`` with ``Authorization: Bearer <key>`` when a key is set and the host is the Jina
API or the one given at start (``embed_bench.load.credentials``); response
``{"data": [{"index": i, "embedding": [...]}], "usage": {"total_tokens": n}}``. Error codes of the
Jina API (``{"code": "RATE_TOKEN_LIMIT_EXCEEDED"}``), of OpenAI-style servers and of the bundled
server all end up in the failure message, e.g. ``HTTP 429 RATE_TOKEN_LIMIT_EXCEEDED``.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patches sockets and ssl before anything else)

# isort: split
import dataclasses
import json
import logging
from typing import Any

import embed_bench.load.prometheus_exporter  # GET /metrics on the web UI, for Prometheus
import embed_bench.load.web_ui  # noqa: F401  (registers the embed-bench tab of the web UI)
from embed_bench.core.backends import JINA_API_URL, STUDY_MODEL, BackendError, discover_model
from embed_bench.core.checks import BadBody, Embeddings, embedding_items
from embed_bench.core.options import BenchOptions, OptionError
from embed_bench.load.shape import GridShape
from embed_bench.load.users import EmbeddingUser

__all__ = ["GridShape", "JinaApiUser"]

logger = logging.getLogger(__name__)


class JinaApiUser(EmbeddingUser):
    host = JINA_API_URL  # -H / --host points it at any OpenAI-compatible server instead
    credential_default_host = JINA_API_URL  # the key may always go to the Jina API itself

    @classmethod
    def resolve_options(cls, options: BenchOptions, host: str | None, api_key: str) -> BenchOptions:
        """The model the run sends (once per run, on the master: ``embed_bench.load.shape``):
        ``--model``; else, on the Jina API, the study's; else the one the server lists
        (``/v1/models``, ``/models``, ``/info``, as ``embed-bench run --backend openai`` asks), or
        an error at start that names what was tried and ``--model``."""
        if options.model:
            return options
        if not host or host.rstrip("/") == JINA_API_URL:
            return dataclasses.replace(options, model=STUDY_MODEL)
        try:
            model, source = discover_model(host, api_key or None)
        except BackendError as exc:
            raise OptionError(str(exc)) from None
        logger.info("--model not set: %s serves %r (%s); its requests name it", host, model, source)
        return dataclasses.replace(options, model=model)

    @classmethod
    def encode_request(cls, passages: list[str], options: BenchOptions) -> bytes:
        body: dict[str, Any] = {"model": options.model, "input": passages}
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
