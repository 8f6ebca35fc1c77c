"""``embed-bench serve`` / ``python -m target_server``: the target server under gunicorn.

gunicorn's ``gthread`` worker, one worker owning the model and many threads: request threads parse
and tokenize in parallel while one batcher thread drives the device. The model is loaded inside the
worker (never the master), in the background, so ``/health`` answers 503 until it is ready.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import socket
import sys
from collections.abc import Sequence
from typing import Any

from target_server.config import (
    ATTENTIONS,
    BATCHING_MODES,
    DEVICES,
    DTYPES,
    ENGINES,
    QUANTIZATIONS,
    ConfigError,
    resolve_config,
)

LOOPBACK = "127.0.0.1"


def faces_a_network(host: str) -> bool:
    """Whether a bind address takes connections from other machines (0.0.0.0, ::, an interface's
    address, a host name); 127.0.0.0/8, ::1 and localhost do not."""
    host = host.strip().strip("[]")
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def exposure_warning(host: str, port: int, api_key: str | None) -> str | None:
    """The warning for a server that faces a network without a key; None when it does not."""
    if api_key or not faces_a_network(host):
        return None
    return (
        f"WARNING: serving on {host}:{port} without an API key: anyone who reaches this address can "
        "send work to the model. Pass --api-key KEY (or set EMBED_BENCH_API_KEY), or --host 127.0.0.1"
    )


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m target_server",
        description="Serve a sentence-transformers embedding model for load tests (POST /embed, "
        "POST /v1/embeddings, GET /health, /info, /metrics, /openapi.json).",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--model", help="local path or hub id (default: the bundled all-MiniLM-L6-v2)")
    model.add_argument(
        "--trust-remote-code",
        action="store_true",
        default=None,
        help="allow the model's own code (jina-embeddings-v3 needs it)",
    )
    model.add_argument("--device", choices=DEVICES, help="default: auto (cuda if available)")
    model.add_argument("--dtype", choices=DTYPES, help="default: auto (bf16/fp16 on cuda, fp32 on cpu)")
    model.add_argument(
        "--engine",
        choices=ENGINES,
        help="what runs the forward pass (default: torch). onnx (ONNX Runtime) and openvino run on the "
        "CPU a copy of the model exported at start from its local files and cached (--engine-cache)",
    )
    model.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        help="int8: dynamic int8 quantization (int8 weights) with --engine onnx or openvino; default: none",
    )
    model.add_argument(
        "--attention",
        choices=ATTENTIONS,
        help="padded (default): a pass pads its passages to the longest. packed: the passages' tokens "
        "end to end, attention per passage, no compute on padding (torch; BERT and XLM-RoBERTa models)",
    )
    model.add_argument(
        "--engine-cache",
        metavar="DIR",
        help="where exported models are kept, one folder per model, engine and quantization "
        "(default: ~/.cache/embed-bench/engines, or under $XDG_CACHE_HOME)",
    )
    model.add_argument(
        "--cpu-threads",
        type=int,
        metavar="N",
        help="intra-op threads of the engine: torch's, ONNX Runtime's or OpenVINO's (default: the engine's, "
        "one per core; 0: the same). On 2 shared cores, "
        "1 keeps the forward pass from contending with the request threads and the load generator",
    )
    batching = parser.add_argument_group("batching")
    batching.add_argument("--batching", choices=BATCHING_MODES, help="default: continuous")
    batching.add_argument(
        "--max-batch-tokens",
        type=int,
        metavar="N",
        help="padded tokens per forward pass (default: 8192 for timeout, else 16384 on cuda, 4096 on cpu)",
    )
    batching.add_argument(
        "--batch-timeout",
        type=float,
        dest="batch_timeout_s",
        metavar="S",
        help="timeout mode: longest wait for a batch to fill (default: 2.0)",
    )
    batching.add_argument(
        "--max-queue-tokens",
        type=int,
        metavar="N",
        help="admission limit: tokens in flight before 429 (default: 16777216, the article grid's worst cell fits)",
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--max-inputs",
        type=int,
        dest="max_inputs_per_request",
        metavar="N",
        help="inputs per request before 413 (default: 2048)",
    )
    limits.add_argument("--max-body-bytes", type=int, metavar="N", help="default: 8388608")
    limits.add_argument(
        "--request-timeout",
        type=float,
        dest="request_timeout_s",
        metavar="S",
        help="longest wait for a result before 503 (default: 120)",
    )
    limits.add_argument(
        "--api-key",
        help="require 'Authorization: Bearer KEY' (or set EMBED_BENCH_API_KEY); set it whenever --host "
        "faces a network",
    )
    limits.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        default=None,
        help="skip the warm-up at start (the full-budget batch and the settling passes)",
    )
    limits.add_argument(
        "--warmup-seconds",
        type=float,
        metavar="S",
        help="after the full-budget batch, repeat small batches of common shapes until each one's "
        "latency settles, for at most S seconds (default: 30; 0: the full-budget batch only); logged",
    )
    http = parser.add_argument_group("http")
    http.add_argument(
        "--host",
        "--bind",
        dest="host",
        default=LOOPBACK,
        help="bind address (default: 127.0.0.1, this machine only; 0.0.0.0: every interface, as the "
        "images pass it)",
    )
    http.add_argument("--port", type=int, default=8000, help="default: 8000")
    http.add_argument("--threads", type=int, default=64, help="request threads of each worker (default: 64)")
    http.add_argument(
        "--frontends",
        type=int,
        metavar="N",
        help="front-end processes (default 1: one process parses, tokenizes and runs the model). N > 1: "
        "the model, batcher, admission and metrics in a model process of their own, and N gunicorn "
        "workers that parse, tokenize and encode for it, as vLLM's --api-server-count; pays where "
        "HTTP and tokenization, not the model, limit small requests",
    )
    http.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        metavar="N",
        help="a second listener for GET /metrics alone, on its own thread, so a scrape never waits behind "
        "queued requests (default 0: any free port, named in /info; -1: none; /metrics on --port stays)",
    )
    http.add_argument(
        "--access-log", action="store_true", help="log every request (off: it costs throughput)"
    )
    http.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    http.add_argument(
        "--otel",
        action="store_true",
        default=None,
        help="OpenTelemetry traces: continue each request's traceparent, a span per forward pass linking "
        "its requests; sent over OTLP as the OTEL_* variables say (default endpoint http://localhost:4318). "
        "An OTEL_EXPORTER_OTLP_ENDPOINT turns them on too. Needs embed-bench[otel]",
    )
    return parser


SERVER_FLAGS = ("host", "port", "threads", "metrics_port", "access_log", "log_level")


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Only what was given on the command line, so EMBED_BENCH_* env vars fill the rest."""
    return {key: value for key, value in vars(args).items() if key not in SERVER_FLAGS and value is not None}


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise SystemExit(
                    f"error: port {port} on {host} is already in use; pick another with --port"
                ) from None
            raise SystemExit(f"error: cannot bind {host}:{port}: {error.strerror}") from None


def check_tracing(flag: bool) -> str | None:
    """Why tracing, asked for, cannot work (no SDK, an unknown exporter); None when it can or is off.
    Checked here so the worker does not fail after the fork with the reason buried in its log."""
    from target_server.tracing import TracingSetupError, tracer_provider, tracing_requested

    if not tracing_requested(flag):
        return None
    try:
        tracer_provider().shutdown()
    except TracingSetupError as error:
        return f"tracing: {error}"
    return None


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    overrides = config_overrides(args) | {"load_in_background": True}
    try:  # fail here, with the setting named, rather than inside the worker
        _, config = resolve_config(overrides)
    except (ConfigError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.threads < 1:
        print(f"error: --threads must be at least 1, got {args.threads}", file=sys.stderr)
        return 2
    tracing_error = check_tracing(config.otel)
    if tracing_error is not None:
        print(f"error: {tracing_error}", file=sys.stderr)
        return 2
    check_port_free(args.host, args.port)
    warning = exposure_warning(args.host, args.port, config.api_key)
    if warning is not None:
        print(f"[embed-bench serve] {warning}", file=sys.stderr, flush=True)
    options = {
        "bind": f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}",
        "workers": 1,
        "worker_class": "gthread",
        "threads": args.threads,
        "metrics_port": args.metrics_port if args.metrics_port >= 0 else None,  # ours, not gunicorn's
        "timeout": 120,
        "graceful_timeout": 30,
        "keepalive": 30,
        "backlog": 2048,
        "accesslog": "-" if args.access_log else None,
        "loglevel": args.log_level,
        # No per-user control socket: several servers (tests, one per GPU) must not share one.
        "control_socket_disable": True,
    }
    if config.frontends > 1:
        return serve_with_frontends(overrides, options, config.frontends)
    from target_server.gunicorn_app import GunicornServer

    GunicornServer(overrides, options).run()
    return 0


def serve_with_frontends(overrides: dict[str, Any], options: dict[str, Any], frontends: int) -> int:
    """The model process first (it listens at once, then loads), then gunicorn with one worker per
    front end; the model process stops after the last front end. If it exits on its own, the
    front ends answer 503 and this stops them, exiting 1."""
    import os
    import signal
    import threading

    from target_server.gunicorn_app import GunicornServer, bind_host
    from target_server.model_link import ModelProcessFailed, ModelProcessHandle

    model = ModelProcessHandle.launch(
        overrides,
        workers=frontends * options["threads"],
        metrics_host=bind_host(options["bind"]),
        metrics_port=options["metrics_port"],
    )
    stopping = threading.Event()
    lost = threading.Event()
    serve_pid = os.getpid()

    def watch() -> None:
        if model.exited(None) and not stopping.is_set():
            lost.set()
            print("[embed-bench serve] the model process exited; stopping the front ends", file=sys.stderr)
            os.kill(serve_pid, signal.SIGTERM)

    # Until gunicorn installs its own handlers, a SIGTERM (the watch's, or a user's) unwinds
    # through the finally below, which stops the model process, rather than ending this at once.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    code: int | str | None = 0
    try:
        model.wait_listening()
        threading.Thread(target=watch, name="model-process-watch", daemon=True).start()
        GunicornServer(
            overrides,
            options | {"workers": frontends, "metrics_port": None, "model_link": model.address},
        ).run()
    except ModelProcessFailed as error:
        print(f"error: {error}", file=sys.stderr)
        code = 1
    except SystemExit as exit_:
        if os.getpid() != serve_pid:  # a worker (forked in run()) exiting: not ours to clean up
            raise
        code = exit_.code
    finally:
        if os.getpid() == serve_pid:  # also on Ctrl-C while the model process starts
            stopping.set()
            model.stop()
    if lost.is_set():
        return 1
    return code if isinstance(code, int) else 1
