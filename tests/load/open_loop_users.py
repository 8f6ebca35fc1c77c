"""A locustfile whose users are the open-loop dispatcher's senders: the integration, proven in a real
Locust process (``tests/load/test_open_loop.py`` runs it with ``locust --headless``).

At test start one dispatcher per load-generating process plans its share of ``OPEN_LOOP_RATE``
requests/s for ``OPEN_LOOP_DURATION`` s (``OPEN_LOOP_PROCESSES`` processes; a worker's share is its
Locust ``worker_index``); each user's task takes the next due arrival and sends it, and adds its lag
to Locust's response time, so Locust's own statistics count from the planned send time. On quitting,
each process writes its dispatcher's summary, Locust's totals and every request's (planned_at,
latency_ms) to ``OPEN_LOOP_REPORT`` (a worker: ``OPEN_LOOP_REPORT.<index>``) as JSON.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patches before anything else loads)

# isort: split
import json
import os
import time
from typing import Any

import gevent
from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from embed_bench.core.arrivals import Mix, arrival_schedule
from embed_bench.load.open_loop import OpenLoopDispatcher

RATE_PER_S = float(os.environ.get("OPEN_LOOP_RATE", "50"))
DURATION_S = float(os.environ.get("OPEN_LOOP_DURATION", "4"))
PROCESSES = int(os.environ.get("OPEN_LOOP_PROCESSES", "1"))
REQUEST_NAME = "open loop"
state: dict[str, Any] = {"latencies": []}


@events.test_start.add_listener
def plan_the_cell(environment: Environment, **_kwargs: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        return  # the master sends nothing; its workers plan their shares
    index = environment.runner.worker_index if isinstance(environment.runner, WorkerRunner) else 0
    schedule = arrival_schedule(
        RATE_PER_S, DURATION_S, Mix.single(1, 32), processes=PROCESSES, process_index=index, seed=1
    )
    # The next whole second but two: the processes start together unless a second boundary falls
    # between their test starts (the real integration sends the start time with the cell's plan).
    start_at = float(int(time.time()) + 3)
    dispatcher: OpenLoopDispatcher[None] = OpenLoopDispatcher(
        ((arrival.offset_s, None) for arrival in schedule), start_at=start_at, duration_s=DURATION_S
    )
    state["suffix"] = f".{index}" if isinstance(environment.runner, WorkerRunner) else ""
    state["dispatcher"] = dispatcher
    dispatcher.start()


class OpenLoopUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def send(self) -> None:
        due = state["dispatcher"].take()
        if due is None:  # the cell is over: idle until the run ends
            gevent.sleep(0.5)
            return
        with self.client.get("/", name=REQUEST_NAME, catch_response=True) as response:
            meta = response.request_meta
            meta["response_time"] += (meta["start_time"] - due.planned_at) * 1000.0
            state["latencies"].append((due.planned_at, meta["response_time"]))


@events.quitting.add_listener
def report(environment: Environment, **_kwargs: Any) -> None:
    entry = environment.stats.get(REQUEST_NAME, "GET")
    document: dict[str, Any] = {
        "locust_requests": entry.num_requests,
        "locust_failures": entry.num_failures,
        "locust_total_response_time_ms": entry.total_response_time,
        "locust_max_response_time_ms": entry.max_response_time,
        "latencies": state["latencies"],
    }
    if "dispatcher" in state:  # a load generator (the master of --processes has none)
        summary = state["dispatcher"].summary()
        document |= {
            "offered": summary.offered,
            "achieved_rate_per_s": summary.achieved_rate_per_s,
            "sent": summary.sent,
            "dropped": summary.dropped,
            "lag_p99_ms": summary.lag_p99_ms,
        }
    with open(os.environ["OPEN_LOOP_REPORT"] + state.get("suffix", ""), "w", encoding="utf-8") as file:
        json.dump(document, file)
