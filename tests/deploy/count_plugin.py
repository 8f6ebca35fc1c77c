"""Test-only Locust plugin: every worker writes down how many requests of each name it sent.

Loaded beside a backend's locustfile (``-f locustfiles/self_hosted.py,tests/deploy/count_plugin.py``)
when ``EMBED_BENCH_TEST_COUNT_DIR`` is set. Why: workers write no CSV files; the master's
``locust_stats.csv`` is built from the statistics the workers report, and the swarm test checks it
against what each worker itself saw. Request events fire in the process that sent the request, so a
listener on a worker counts exactly that worker's requests. The counts file is rewritten (atomically)
whenever the test stops and when the worker quits.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patches before anything else loads)

# isort: split
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import Runner, WorkerRunner

COUNT_DIR_ENV = "EMBED_BENCH_TEST_COUNT_DIR"


class RequestCounter:
    """Counts this worker's requests and failures by request name."""

    def __init__(self, environment: Environment, runner: WorkerRunner, directory: Path) -> None:
        self.runner = runner
        self.path = directory / f"worker-{os.getpid()}.json"
        self.requests: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        environment.events.request.add_listener(self.on_request)
        environment.events.test_stop.add_listener(self.write)
        environment.events.quitting.add_listener(self.write)

    def on_request(self, name: str, exception: BaseException | None = None, **_kwargs: Any) -> None:
        self.requests[name] += 1
        if exception is not None:
            self.failures[name] += 1

    def write(self, **_kwargs: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "worker": self.runner.client_id,
            "requests": dict(self.requests),
            "failures": dict(self.failures),
        }
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record), encoding="utf-8")
        temporary.replace(self.path)


@events.init.add_listener
def _count_on_workers(environment: Environment, runner: Runner | None = None, **_kwargs: Any) -> None:
    directory = os.environ.get(COUNT_DIR_ENV)
    if directory and isinstance(runner, WorkerRunner):
        RequestCounter(environment, runner, Path(directory))
