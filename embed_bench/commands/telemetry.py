"""``embed-bench run``'s server telemetry: which endpoint to sample, and the sampler around the run.

On by default for the self-hosted backend (the bundled server's ``/metrics`` at ``--host``); any
other backend has no endpoint we know of (a hosted API exposes none), so it is off there unless
``--server-metrics-url`` names one (TEI, vLLM and Infinity serve ``/metrics`` too). run.json's
``server_metrics`` says what happened: the URL, the interval, how many scrapes and failures -- or,
for a run without an endpoint, why not, so the report can say "not measured" and why.
"""

from __future__ import annotations

import argparse
import json
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from embed_bench.core.contract import RUN_FILES
from embed_bench.core.server_metrics import DEFAULT_INTERVAL_S, ServerMetricsSampler

OFF = "off"
DEFAULT_PATH = "/metrics"
DEFAULT_ON = frozenset({"self-hosted"})


class TelemetryError(ValueError):
    """A --server-metrics-* value that cannot be used."""


@dataclass(frozen=True)
class TelemetryPlan:
    url: str | None  # None: nothing sampled
    interval_s: float
    reason: str = ""  # why nothing is sampled
    discover: bool = False  # ask the bundled server's /info for its own metrics listener first

    def record(self) -> dict[str, object]:
        """run.json's ``server_metrics`` before the run (counts come with :meth:`Telemetry.finish`)."""
        if self.url is None:
            return {"url": None, "note": self.reason}
        return {"url": self.url, "interval_s": self.interval_s}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server-metrics-url",
        metavar="URL|off",
        help="the target's Prometheus endpoint, sampled about once a second into server_metrics.csv while "
        "the run goes on (default: HOST/metrics for the self-hosted backend, none for the others); "
        "off: sample nothing",
    )
    parser.add_argument(
        "--server-metrics-interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        metavar="S",
        help="seconds between two samples of --server-metrics-url (0.1 to 60)",
    )


def plan_telemetry(args: argparse.Namespace, backend: str, host: str) -> TelemetryPlan:
    """What to sample, from the options; TelemetryError with what to fix."""
    interval = getattr(args, "server_metrics_interval", DEFAULT_INTERVAL_S)
    if not 0.1 <= interval <= 60:
        raise TelemetryError(f"--server-metrics-interval takes 0.1 to 60 seconds, got {interval:g}")
    given = getattr(args, "server_metrics_url", None)
    if given is not None and given.strip().lower() == OFF:
        return TelemetryPlan(None, interval, "off (--server-metrics-url off)")
    if given is None:
        if backend not in DEFAULT_ON:
            return TelemetryPlan(
                None,
                interval,
                f"not available: the {backend} backend has no Prometheus endpoint we know of "
                "(--server-metrics-url URL samples one)",
            )
        return TelemetryPlan(host.rstrip("/") + DEFAULT_PATH, interval, discover=True)
    parts = urlsplit(given)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TelemetryError(
            f"--server-metrics-url must be a URL like http://127.0.0.1:8000/metrics, or off; got {given!r}"
        )
    return TelemetryPlan(given, interval)


def metrics_listener(url: str, timeout_s: float = 5.0) -> str:
    """The bundled server's own /metrics listener (``serve --metrics-port``, named in its /info), which
    answers while all its request threads are busy with queued work -- when a scrape through the main
    port would wait behind them; ``url`` itself when the server names none or /info does not answer."""
    parts = urlsplit(url)
    info_url = urlunsplit(
        (parts.scheme, parts.netloc, parts.path.removesuffix(DEFAULT_PATH) + "/info", "", "")
    )
    try:
        with urllib.request.urlopen(info_url, timeout=timeout_s) as response:
            port = (json.loads(response.read(1_000_000)).get("metrics") or {}).get("port")
    except (OSError, ValueError, AttributeError):
        return url
    if not isinstance(port, int) or not 0 < port < 65536 or parts.hostname is None:
        return url
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return urlunsplit((parts.scheme, f"{host}:{port}", DEFAULT_PATH, "", ""))


class Telemetry:
    """The sampler of one run (or nothing, for a plan without an endpoint)."""

    def __init__(self, plan: TelemetryPlan, out: Path, write: Callable[[str], None]) -> None:
        if plan.discover and plan.url is not None:
            plan = replace(plan, url=metrics_listener(plan.url))
        self.plan = plan
        self.sampler = (
            ServerMetricsSampler(
                plan.url, out / RUN_FILES.server_metrics_csv, plan.interval_s, on_error=write
            )
            if plan.url is not None
            else None
        )

    def start(self) -> Telemetry:
        if self.sampler is not None:
            self.sampler.start()
        return self

    def finish(self) -> dict[str, object]:
        """Stop sampling; run.json's ``server_metrics`` with the counts."""
        if self.sampler is None:
            return self.plan.record()
        return self.sampler.stop().as_dict()
