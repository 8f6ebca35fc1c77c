"""``GET /metrics`` on the Locust web UI: the load generator's live figures for Prometheus.

Locust exports no Prometheus metrics of its own (the community's exporters are separate processes
that poll ``/stats/requests``); a route on the web UI's Flask app does the same in-process, without a
container more. Registered by Locust's ``init`` event on the process that serves the web UI (a
local runner or the master, which holds the aggregated statistics of every worker); a headless run
has no web UI and samples the target instead (``server_metrics.csv``).

Every figure is read from the runner at scrape time by a ``prometheus_client`` collector, one
registry per web UI, so nothing is kept twice and nothing drifts:

- ``locust_users``, ``locust_workers``, ``locust_running`` (1 while a test runs);
- per request name (an embed-bench cell, e.g. ``b=32 t=512 c=5``, or ``Aggregated``):
  ``locust_requests_total``, ``locust_failures_total``, ``locust_response_length_total`` (embed-bench
  reports the tokens of each successful request as its response length, so its rate is tokens/s),
  ``locust_requests_per_second`` (Locust's current rate) and ``locust_response_time_p50_seconds`` and
  ``locust_response_time_p95_seconds`` over Locust's last 10 s window.

The route is open, like the target's ``/metrics``: Prometheus scrapes it without Locust's login. It
serves counts and timings only, never an option value or a key.
"""

from __future__ import annotations

from locust import events  # first: gevent monkey-patches before anything else loads
from locust.env import Environment
from locust.runners import LocalRunner, MasterRunner, Runner

# isort: split
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

ROUTE = "/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
QUANTILES = (0.5, 0.95)


class LocustCollector(Collector):
    """The runner's statistics as Prometheus families, read when scraped."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment

    def collect(self) -> Iterator[Any]:
        runner = self.environment.runner
        users = GaugeMetricFamily("locust_users", "Users running now")
        workers = GaugeMetricFamily("locust_workers", "Workers connected to the master (0: one process)")
        running = GaugeMetricFamily("locust_running", "1 while a test runs (spawning or running)")
        labels = ("name", "method")
        requests = CounterMetricFamily(
            "locust_requests", "Requests completed, failures included", labels=labels
        )
        failures = CounterMetricFamily("locust_failures", "Requests that failed", labels=labels)
        length = CounterMetricFamily(
            "locust_response_length",
            "Sum of response lengths: for embed-bench, the tokens of the successful requests",
            labels=labels,
        )
        rate = GaugeMetricFamily("locust_requests_per_second", "Locust's current request rate", labels=labels)
        # Gauges, not a summary: prometheus-client's summaries have no quantiles, and a gauge may not
        # carry a "quantile" label (promtool), so each percentile is a series of its own.
        times = {
            quantile: GaugeMetricFamily(
                f"locust_response_time_p{round(quantile * 100)}_seconds",
                f"Response time at the {round(quantile * 100)}th percentile over Locust's last 10 s window",
                labels=labels,
            )
            for quantile in QUANTILES
        }
        if runner is not None:
            users.add_metric([], runner.user_count)
            workers.add_metric([], runner.worker_count if isinstance(runner, MasterRunner) else 0)
            running.add_metric([], 1 if runner.state in ("spawning", "running") else 0)
            stats = runner.stats
            for entry in [*stats.entries.values(), stats.total]:
                key = [entry.name, entry.method or ""]
                requests.add_metric(key, entry.num_requests)
                failures.add_metric(key, entry.num_failures)
                length.add_metric(key, entry.total_content_length)
                rate.add_metric(key, entry.current_rps)
                if entry.num_requests and entry.use_response_times_cache:
                    for quantile in QUANTILES:
                        milliseconds = entry.get_current_response_time_percentile(quantile)
                        if milliseconds is not None:
                            times[quantile].add_metric(key, milliseconds / 1000.0)
        yield from (users, workers, running, requests, failures, length, rate, *times.values())


def attach(environment: Environment, web_ui: Any) -> CollectorRegistry:
    """Add ``GET /metrics`` (under ``--web-base-path``) to the web UI; returns its registry."""
    registry = CollectorRegistry()
    registry.register(LocustCollector(environment))
    options = environment.parsed_options
    blueprint = Blueprint("embed_bench_metrics", __name__, url_prefix=getattr(options, "web_base_path", None))

    @blueprint.route(ROUTE)
    def metrics() -> Response:
        return Response(generate_latest(registry), content_type=CONTENT_TYPE)

    web_ui.app.register_blueprint(blueprint)
    return registry


@events.init.add_listener
def on_init(
    environment: Environment, runner: Runner | None = None, web_ui: Any = None, **_kwargs: Any
) -> None:
    if web_ui is not None and isinstance(runner, LocalRunner | MasterRunner):
        attach(environment, web_ui)
