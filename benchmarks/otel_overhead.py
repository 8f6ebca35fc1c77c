"""What tracing costs: the load generator and the bundled server with OpenTelemetry on and off.

    .venv/bin/python benchmarks/otel_overhead.py [--rounds 3] [--out DIR]
        [--every-request | --sampler-ratio R] [--server-model null:1024 | MODEL]
        [--only loadgen|server|spans|header]

Both sides export for real, over OTLP/HTTP, to a sink in its own process (a bare receiver that
answers every POST at once), so the figure includes building, batching and sending the spans (the
encoding and sending in embed-bench's span export helper process, whose CPU is reported beside the
load generator's; each measurement runs past the span processor's 5 s export interval, so exports
fall within it):

- load generator: ``loadgen.py``'s measurement (the real SelfHostedUser under GridShape, one Locust
  process, request records on) against its tiny canned endpoint, with tracing off and on
  (``OTEL_EXPORTER_OTLP_ENDPOINT`` set: a client span and a ``traceparent`` per request);
  requests/s and CPU ms per request of the Locust process (goal >= 0.9x);
- server: the bundled server (``--server-model``; ``null:1024`` by default, its forward pass
  instant, so the per-request work that tracing adds is the largest share it can be; the bundled
  model for a server that computes), started once without and once with tracing, driven by the lean
  closed-loop client (``http_load.py``), with server telemetry on as well (``/metrics`` sampled once a
  second, as ``embed-bench run`` does, through its own plumbing), its requests carrying the ``traceparent`` headers
  embed-bench's client sends under the same sampling (one in twenty says sampled by default), at each
  batch size; requests/s (goal >= 0.95x). The server without tracing gets the same headers.

Tracing on means embed-bench's default sampling (one trace in twenty, ``embed_bench.core.otel``) unless
``--every-request`` (``OTEL_TRACES_SAMPLER=parentbased_always_on``) or ``--sampler-ratio R``
(``parentbased_traceidratio`` at R). Each round measures off and on back to back, in alternating
order (off first in odd rounds, on first in even ones), so a drift of the machine's speed touches both
alike; the summary gives the median over rounds of each round's on/off ratio, a bootstrap 95%
interval of that median, and every round's ratio, by requests/s and by CPU per request of the
measured process (what a CPU-bound process's requests/s follow, far less disturbed by the other
processes on a small machine).

``--only header`` measures what tracing cannot avoid: the load generator with tracing off, "on"
sending a fresh ``traceparent`` header with each request and nothing else.

Figures are printed and, with --out, written with the raw measurements (otel_overhead.txt/json).
"""

from __future__ import annotations

import locust  # noqa: F401  first: gevent monkey-patches sockets before anything else loads

# isort: split
import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gevent
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import http_load
import loadgen

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from embed_bench.commands.telemetry import Telemetry, TelemetryPlan  # noqa: E402
from target_server.launcher import free_port, running_target_server  # noqa: E402

SINK = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""
OTEL_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT",)


def start_sink() -> tuple[subprocess.Popen, str]:
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(port)], start_new_session=True)
    time.sleep(0.5)
    return sink, f"http://127.0.0.1:{port}"


def traced_env(sink: str, sampling: str | float | None) -> dict[str, str]:
    """Tracing to the sink: embed-bench's default sampling (None), every request ("all"), or a ratio."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink}
    if sampling == "all":
        env["OTEL_TRACES_SAMPLER"] = "parentbased_always_on"
    elif sampling is not None:
        env |= {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": str(sampling)}
    return env


def order(round_index: int) -> tuple[bool, bool]:
    """Off first in odd rounds, on first in even ones."""
    return (False, True) if round_index % 2 == 0 else (True, False)


class HeaderOnlyUser(loadgen.TinyConstantUser):
    """The tiny scenario's user with tracing off but a fresh ``traceparent`` on every request (as the
    short path writes an unsampled one): what the header alone costs the load generator."""

    def request_headers(self, body: bytes) -> dict[str, str]:
        headers = dict(super().request_headers(body))
        headers["traceparent"] = f"00-{random.getrandbits(128):032x}-{random.getrandbits(64):016x}-02"
        return headers


def tiny_figures(user: type, host: str, users: int, requests_per_user: int) -> dict:
    """One measurement of ``loadgen.py``'s tiny scenario with ``user``: its count and rate, and the
    Locust process's CPU per request."""
    scenario = loadgen.Scenario("tiny", user, 1, 1, 8, requests_per_user)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    measured = loadgen.measure(scenario, host, users, records=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the span export helper, waited for at quit
    helper_s = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {
        "requests": measured.requests,
        "failures": measured.failures,
        "requests_per_s": measured.requests_per_s,
        "cpu_ms_per_request": measured.cpu_ms_per_request,
        "helper_cpu_ms_per_request": 1000.0 * helper_s / max(measured.requests, 1),
    }


def header_round(host: str, users: int, requests_per_user: int, index: int) -> dict[str, dict]:
    """``--only header``: "off" the plain tiny user, "on" the same with a ``traceparent`` header."""
    figures = {}
    for with_header in order(index):
        user = HeaderOnlyUser if with_header else loadgen.TinyConstantUser
        figures["on" if with_header else "off"] = tiny_figures(user, host, users, requests_per_user)
    return figures


def loadgen_round(
    host: str, sink: str, users: int, requests_per_user: int, sampling: str | float | None, index: int
) -> dict[str, dict]:
    figures = {}
    for traced in order(index):
        for name, value in traced_env(sink, sampling).items():
            if traced:
                os.environ[name] = value
            else:
                os.environ.pop(name, None)
        figures["on" if traced else "off"] = tiny_figures(
            loadgen.TinyConstantUser, host, users, requests_per_user
        )
    for name in traced_env(sink, sampling):
        os.environ.pop(name, None)
    return figures


def server_round(
    sink: str,
    batch_sizes: list[int],
    concurrency: int,
    seconds: float,
    sampling: str | float | None,
    index: int,
    model: str,
) -> dict[str, dict]:
    texts = [f"passage number {i} " + "word " * 120 for i in range(4096)]
    traceparents = client_traceparents(sampling)
    figures: dict[str, dict] = {}
    for traced in order(index):
        env = traced_env(sink, sampling) if traced else {"OTEL_SDK_DISABLED": "true"}
        # the null model needs no warm-up; a real one gets its warm-up passes (serve's own)
        args = ("--model", model, "--threads", "64", *(("--no-warmup",) if model.startswith("null:") else ()))
        with running_target_server(*args, env=env) as url:
            for batch in batch_sizes:
                bodies = http_load.encode_bodies(texts, batch)
                http_load.run_load(url, bodies, concurrency, 2.0, 1, traceparents)  # warm up
                with tempfile.TemporaryDirectory(prefix="otel-telemetry-") as run_dir:
                    # on: server telemetry too, as embed-bench run samples it (once a second)
                    telemetry = Telemetry(
                        TelemetryPlan(f"{url}/metrics" if traced else None, 1.0, discover=True),
                        Path(run_dir),
                        lambda line: print(line, file=sys.stderr),
                    ).start()
                    cpu_before, helper_before = server_cpu_s(), server_cpu_s(HELPER)
                    totals = http_load.run_load(url, bodies, concurrency, seconds, 1, traceparents)
                    cpu_s, helper_s = server_cpu_s() - cpu_before, server_cpu_s(HELPER) - helper_before
                    sampled = telemetry.finish()
                figures.setdefault("on" if traced else "off", {})[f"b={batch}"] = {
                    "requests": totals.requests,
                    "failures": totals.failures,
                    "requests_per_s": totals.requests / totals.seconds,
                    "cpu_ms_per_request": 1000.0 * cpu_s / max(totals.requests, 1),
                    "helper_cpu_ms_per_request": 1000.0 * helper_s / max(totals.requests, 1),
                    "telemetry_scrapes": sampled.get("scrapes", 0),
                    "telemetry_failed": sampled.get("failed", 0),
                }
    return figures


def median_interval(values: list[float], resamples: int = 4000, seed: int = 1) -> tuple[float, float]:
    """A percentile-bootstrap 95% interval of the median of ``values`` (the rounds' ratios): how far
    the machine's noise leaves the figure open. Coarse with a few rounds, but never narrower than
    what the rounds show."""
    chooser = random.Random(seed)
    medians = sorted(statistics.median(chooser.choices(values, k=len(values))) for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


HELPER = "embed_bench.core.span_export"  # the span export helper's module, in its command line


def server_cpu_s(named: str = "target_server") -> float:
    """CPU seconds (user and system) of the bundled server's processes under this one (gunicorn's
    master and worker): what a CPU-bound server's requests/s follow, less disturbed by the client and
    other jobs sharing the machine than its wall-clock rate. With ``named=HELPER``: its span export
    helper's, counted apart."""
    total = 0.0
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if named in " ".join(child.cmdline()):
                times = child.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def client_traceparents(sampling: str | float | None, count: int = 4096) -> list[str]:
    """The ``traceparent`` headers embed-bench's client sends under ``sampling`` (its own span path,
    so one in twenty says sampled by default), which the server continues or skips as in a traced run."""
    from embed_bench.core.otel import tracer_provider
    from embed_bench.core.request_spans import JudgedTraceIds, request_tracer

    ids = JudgedTraceIds()
    tracer = request_tracer(tracer_provider("embed-bench", traced_env("", sampling), [], ids), ids)
    headers = []
    for _ in range(count):
        span = tracer.start("POST /embed", "server benchmark", 1, 128, 128, "http://127.0.0.1/embed")
        headers.append(tracer.headers(span, {})["traceparent"])
        tracer.end(span, 200, None)
    return headers


def span_cost(sink: str, requests: int = 20000) -> list[str]:
    """CPU microseconds per request of the client's span path alone (start, traceparent, end; gevent
    patched, as in Locust), exporting for real to the sink, for each sampling: the part of the load
    generator's CPU per request that tracing adds, without the noise of a whole run."""
    from embed_bench.core.otel import tracer_provider
    from embed_bench.core.request_spans import JudgedTraceIds, request_tracer

    lines = []
    for sampling in (0.0, None, "all"):
        # a queue that holds every span: spans made in a tight loop outrun the export helper, and a
        # dropped span would skip its hand-off (a Locust process cannot make them that fast)
        env = traced_env(sink, sampling) | {"OTEL_BSP_MAX_QUEUE_SIZE": str(requests)}
        os.environ.update(env)  # the exporter reads its endpoint from the environment
        ids = JudgedTraceIds()
        provider = tracer_provider("embed-bench", env, id_generator=ids)
        tracer = request_tracer(provider, ids)
        headers = {"Content-Type": "application/json"}
        started = time.process_time()
        for index in range(requests):
            span = tracer.start("POST /embed", "b=1 t=16 c=8", 1, 16, 16, "http://127.0.0.1:8000/embed")
            tracer.headers(span, headers)
            tracer.end(span, 200, None, 0.0)
            if index % 8 == 7:
                gevent.sleep(0)  # let the batch processor's greenlet export, as Locust's loop would
        provider.shutdown()  # the last export included
        micros = (time.process_time() - started) / requests * 1e6
        for name in env:
            os.environ.pop(name, None)
        label = {0.0: "none sampled", None: "default (one in twenty)", "all": "every request"}[sampling]
        lines.append(f"client span path, {label}: {micros:.1f} us CPU per request ({requests} requests)")
    return lines


def measure_rounds(
    args: argparse.Namespace, chosen: str | float | None
) -> tuple[list[dict], list[str], list[str]]:
    """Every round's figures, their printed lines, and the span path's lines (``--only spans``)."""
    for name in (*OTEL_VARIABLES, "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
        os.environ.pop(name, None)
    sink, sink_url = start_sink()
    endpoint, host = loadgen.start_endpoint(8)
    rounds = []
    lines: list[str] = []
    try:
        for index in range(args.rounds):
            figures = {}
            if args.only == "spans":
                break
            if args.only == "header":
                figures["loadgen"] = header_round(host, args.users, args.requests_per_user, index)
            elif args.only != "server":
                figures["loadgen"] = loadgen_round(
                    host, sink_url, args.users, args.requests_per_user, chosen, index
                )
            if args.only not in ("loadgen", "header"):
                figures["server"] = server_round(
                    sink_url,
                    args.batch_sizes,
                    args.concurrency,
                    args.seconds,
                    chosen,
                    index,
                    args.server_model,
                )
            rounds.append(figures)
            line = f"round {index + 1}: " + json.dumps(figures)
            print(line, flush=True)
            lines.append(line)
        span_lines = span_cost(sink_url) if args.only in (None, "spans") else []
    finally:
        endpoint.terminate()
        sink.terminate()
    return rounds, lines, span_lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument(
        "--requests-per-user",
        type=int,
        default=2000,
        help="tiny scenario; 2000 x 8 users runs past the span processor's 5 s export interval, so exports fall within the measured window",
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    sampling = parser.add_mutually_exclusive_group()
    sampling.add_argument("--sampler-ratio", type=float, help="trace this share of requests")
    sampling.add_argument("--every-request", action="store_true", help="trace every request")
    parser.add_argument("--server-model", default="null:1024", help="the server's --model")
    parser.add_argument(
        "--only",
        choices=("loadgen", "server", "spans", "header"),
        help="measure one side only (header: the load generator, tracing off, with and without a "
        "traceparent header on each request)",
    )
    parser.add_argument(
        "--pool",
        type=Path,
        nargs="+",
        help="instead of measuring, summarize the rounds of earlier runs (their --out folders) together; "
        "give the --only and sampling they were run with",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    chosen: str | float | None = "all" if args.every_request else args.sampler_ratio
    if args.pool:
        rounds = [
            r for run in args.pool for r in json.loads((run / "otel_overhead.json").read_text())["rounds"]
        ]
        lines = [f"pooled rounds of: {', '.join(str(run) for run in args.pool)}"]
        span_lines: list[str] = []
    else:
        rounds, lines, span_lines = measure_rounds(args, chosen)

    def median(path: list[str]) -> float:
        values = []
        for figures in rounds:
            value = figures
            for key in path:
                value = value[key]
            values.append(value)
        return statistics.median(values)

    def ratio_text(on_path: list[str], off_path: list[str], goal: float, inverse: bool = False) -> str:
        """The median over rounds of each round's on/off ratio (off/on with ``inverse``: CPU per
        request, where tracing's cost shows as more), and every round's."""
        each = []
        for figures in rounds:
            on_value, off_value = figures, figures
            for key in on_path:
                on_value = on_value[key]
            for key in off_path:
                off_value = off_value[key]
            each.append(off_value / on_value if inverse else on_value / off_value)
        spread = ", ".join(f"{value:.3f}" for value in each)
        low, high = median_interval(each)
        return (
            f"{statistics.median(each):.3f}x, 95% interval {low:.3f}-{high:.3f} "
            f"(goal >= {goal}x; rounds: {spread})"
        )

    summary = span_lines
    if args.only not in ("server", "spans"):
        off, on = median(["loadgen", "off", "requests_per_s"]), median(["loadgen", "on", "requests_per_s"])
        cpu_off, cpu_on = (
            median(["loadgen", "off", "cpu_ms_per_request"]),
            median(["loadgen", "on", "cpu_ms_per_request"]),
        )
        loadgen_ratio = ratio_text(
            ["loadgen", "on", "requests_per_s"], ["loadgen", "off", "requests_per_s"], 0.9
        )
        loadgen_cpu = ratio_text(
            ["loadgen", "on", "cpu_ms_per_request"], ["loadgen", "off", "cpu_ms_per_request"], 0.9, True
        )
        summary.append(
            f"load generator (1 Locust process, {args.users} users, tiny endpoint): {off:.0f} req/s off, "
            f"{on:.0f} on (medians): {loadgen_ratio}; CPU {cpu_off:.3f} ms/request off, {cpu_on:.3f} on: "
            f"by CPU per request {loadgen_cpu}"
        )
        if args.only != "header":
            helper = median(["loadgen", "on", "helper_cpu_ms_per_request"])
            summary.append(
                f"span export helper process (on; its start and last flush included): {helper:.3f} ms CPU "
                "per request of the run, on another core"
            )
    for batch in args.batch_sizes if args.only in (None, "server") else []:
        s_off = median(["server", "off", f"b={batch}", "requests_per_s"])
        s_on = median(["server", "on", f"b={batch}", "requests_per_s"])
        server_ratio = ratio_text(
            ["server", "on", f"b={batch}", "requests_per_s"],
            ["server", "off", f"b={batch}", "requests_per_s"],
            0.95,
        )
        server_cpu = ratio_text(
            ["server", "on", f"b={batch}", "cpu_ms_per_request"],
            ["server", "off", f"b={batch}", "cpu_ms_per_request"],
            0.95,
            True,
        )
        cpu_off = median(["server", "off", f"b={batch}", "cpu_ms_per_request"])
        cpu_on = median(["server", "on", f"b={batch}", "cpu_ms_per_request"])
        helper = median(["server", "on", f"b={batch}", "helper_cpu_ms_per_request"])
        summary.append(
            f"server ({args.server_model}, b={batch}, c={args.concurrency}): {s_off:.1f} req/s off, "
            f"{s_on:.1f} on (medians): {server_ratio}; CPU {cpu_off:.3f} ms/request off, {cpu_on:.3f} on: "
            f"by CPU per request {server_cpu}; span export helper {helper:.3f} ms CPU per request"
        )
    sampled = (
        "tracing off; 'on' adds a traceparent header to each request"
        if args.only == "header"
        else {
            "all": "every request traced",
            None: "embed-bench's default sampling (one trace in twenty)",
        }.get(chosen, f"sampler ratio {chosen}")
    )
    if args.only != "spans":
        summary.append(
            f"{sampled}; {len(rounds)} rounds, off and on alternating in order; "
            f"load averages: {os.getloadavg()}"
        )
    else:
        summary.append(f"load averages: {os.getloadavg()}")
    for line in summary:
        print(line)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "otel_overhead.txt").write_text("\n".join(lines + summary) + "\n")
        (args.out / "otel_overhead.json").write_text(
            json.dumps({"args": vars(args), "rounds": rounds}, indent=1, default=str)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
