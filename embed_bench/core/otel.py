"""OpenTelemetry tracing, off unless asked for: whether it was asked for, and its tracer provider.

Traces are turned on by Locust's own ``--otel`` flag or by the standard OTEL_* variables that name
where spans go (``OTEL_TRACES_EXPORTER``, ``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``
turn them off whatever else is set. Nothing is imported, built or sent otherwise: the
OpenTelemetry SDK is an optional extra (``embed-bench[otel]``) and a run without tracing never
loads it.

Why the SDK and its exporters rather than spans of our own: the OTLP wire format, batching,
sampling (``OTEL_TRACES_SAMPLER``), resource attributes (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``), headers and timeouts (``OTEL_EXPORTER_OTLP_*``) and the W3C
``traceparent`` format are the specification's, and every collector, Jaeger and Tempo read them as
the SDK writes them.

Sampling: ``OTEL_TRACES_SAMPLER`` (and ``OTEL_TRACES_SAMPLER_ARG``) as the specification names
them; unset, embed-bench samples one trace in twenty (``parentbased_traceidratio`` at
``DEFAULT_SAMPLE_RATIO``), because every request traced cost the load generator 0.58x of its
requests/s at its ceiling (the SDK spends about as much CPU on a span as the generator spends on its
request), and one in ten still 0.91x, its interval down to 0.88x, against a goal of 0.9x. The
requests left out take a short path on both sides (``embed_bench.core.request_spans``
on the client, ``target_server.tracing.unsampled_parent`` on the server); what the default costs
each side is in docs/guides/observability.md. Parent-based: the server records exactly the
requests the client sampled. Every sampler here also records a root span whose links include a
sampled span (the server's ``embed pass``, a trace of its own linked to the requests it served), so
a sampled request always finds its pass.

The exporter protocol defaults to ``http/protobuf`` (the specification's default; the extra
installs that exporter). ``grpc`` works where ``opentelemetry-exporter-otlp-proto-grpc`` is
installed; any other value is an error that names the variable. Locust-free: the Locust side
(``embed_bench.load.tracing``) and the tests use it as it is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
PROTOCOLS = ("http/protobuf", "grpc")
EXTRA_HINT = "install the tracing extra: pip install 'embed-bench[otel]'"
DEFAULT_SAMPLE_RATIO = 0.05  # one trace in twenty when OTEL_TRACES_SAMPLER is unset (see above)
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


class TracingSetupError(ValueError):
    """Tracing was asked for but cannot work as configured; the message says what to change."""


def _exporter_names(env: Mapping[str, str]) -> list[str]:
    names = [name.strip().lower() for name in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    return [name for name in names if name] or ["otlp"]


def tracing_requested(flag: bool, env: Mapping[str, str] | None = None) -> bool:
    """Whether spans are wanted: ``--otel`` or an OTEL_* variable that says where they go, unless
    the SDK is disabled or the traces exporter is ``none``."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if "OTEL_TRACES_EXPORTER" in env:
        return _exporter_names(env) != ["none"]
    return flag or any(env.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def span_exporter(name: str, env: Mapping[str, str]) -> Any:
    """The SDK's exporter ``name`` (``OTEL_TRACES_EXPORTER``) configured by ``env``; an error that
    names the variable where it cannot work."""
    return exporter_class(name, env)()  # endpoint, headers, timeout: the OTEL_EXPORTER_OTLP_* variables


def exporter_class(name: str, env: Mapping[str, str]) -> Any:
    """The SDK's exporter class for ``name`` and the protocol ``env`` names, imported (so a missing
    package is found at setup, not at the first export)."""
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter
    if name != "otlp":
        raise TracingSetupError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r}; use otlp, console or none")
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    protocol = (protocol or "http/protobuf").strip().lower()
    if protocol not in PROTOCOLS:
        raise TracingSetupError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL: unknown protocol {protocol!r}; use http/protobuf or grpc"
        )
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as error:
        package = "opentelemetry-exporter-otlp-proto-" + ("grpc" if protocol == "grpc" else "http")
        raise TracingSetupError(f"OTLP over {protocol} needs {package}: {EXTRA_HINT}") from error
    return OTLPSpanExporter


def _ratio(env: Mapping[str, str]) -> float:
    """``OTEL_TRACES_SAMPLER_ARG`` for the ratio samplers (1.0 when unset, as the SDK has it)."""
    text = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    if not text:
        return 1.0
    try:
        ratio = float(text)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise TracingSetupError(f"OTEL_TRACES_SAMPLER_ARG: {text!r} is not a ratio from 0 to 1")
    return ratio


def sampler(env: Mapping[str, str]) -> Any:
    """The sampler ``OTEL_TRACES_SAMPLER`` names (embed-bench's one-in-ten default when unset), which
    also records a root span linked to a sampled span. An unknown name is an error naming the
    variable (the SDK would warn and trace everything)."""
    from opentelemetry.sdk.trace import sampling

    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if not name:
        inner: Any = sampling.ParentBased(sampling.TraceIdRatioBased(DEFAULT_SAMPLE_RATIO))
        root_ratio = DEFAULT_SAMPLE_RATIO
    elif name not in SAMPLERS:
        raise TracingSetupError(
            f"OTEL_TRACES_SAMPLER: unknown sampler {name!r}; use one of {', '.join(SAMPLERS)}"
        )
    elif name == "traceidratio":
        root_ratio = _ratio(env)
        inner = sampling.TraceIdRatioBased(root_ratio)
    elif name == "parentbased_traceidratio":
        root_ratio = _ratio(env)
        inner = sampling.ParentBased(sampling.TraceIdRatioBased(root_ratio))
    else:
        inner = {
            "always_on": sampling.ALWAYS_ON,
            "always_off": sampling.ALWAYS_OFF,
            "parentbased_always_on": sampling.DEFAULT_ON,
            "parentbased_always_off": sampling.DEFAULT_OFF,
        }[name]
        root_ratio = 1.0 if name.endswith("always_on") else 0.0
    return _follow_sampled_links(inner, sampling.TraceIdRatioBased.get_bound_for_rate(root_ratio))


def _follow_sampled_links(inner: Any, root_bound: int) -> Any:
    """``inner``, except that a root span with a sampled link is recorded and sampled.

    ``root_bound`` is the rule every sampler here applies to a root span without links, in the
    SDK's own terms: sampled when the trace id's low 64 bits are below it (``TraceIdRatioBased``'s
    bound; 2**64 for always on, 0 for always off). The client's request spans are all such roots,
    and the rule read as one comparison spares each request the sampler's layers
    (``embed_bench.core.request_spans``); the tests hold it to the sampler's decisions."""
    from opentelemetry.sdk.trace import sampling
    from opentelemetry.trace import get_current_span

    class FollowSampledLinks(sampling.Sampler):
        root_bound: int  # set below: a root without links is sampled if trace id & 2**64-1 < it

        def should_sample(
            self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None
        ):
            # links first: most spans have none, and the parent lookup is the costly part
            if (
                links
                and any(link.context.trace_flags.sampled for link in links)
                and not get_current_span(parent_context).get_span_context().is_valid  # a root
            ):
                return sampling.SamplingResult(sampling.Decision.RECORD_AND_SAMPLE, attributes)
            return inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return f"FollowSampledLinks{{{inner.get_description()}}}"

    FollowSampledLinks.root_bound = root_bound
    return FollowSampledLinks()


def tracer_provider(
    service_name: str,
    env: Mapping[str, str] | None = None,
    exporters: list[Any] | None = None,
    id_generator: Any = None,
):
    """A TracerProvider for this process, its spans batched to the exporters ``OTEL_TRACES_EXPORTER``
    names (or to ``exporters``, which tests pass: the SDK's in-memory exporter). ``service_name``
    unless ``OTEL_SERVICE_NAME`` names the service; the sampler is :func:`sampler`'s; the ids the
    SDK's random ones unless ``id_generator`` is given. OTLP spans are encoded and sent by a helper
    process (``embed_bench.core.span_export``), so that CPU is not taken from the requests."""
    env = os.environ if env is None else env
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as error:
        raise TracingSetupError(f"tracing needs the OpenTelemetry SDK: {EXTRA_HINT}") from error
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(
        resource=Resource.create(attributes), sampler=sampler(env), id_generator=id_generator
    )
    if exporters is not None:  # given: kept synchronously, so a test reads every span at once
        for exporter in exporters:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        return provider
    for name in _exporter_names(env):
        if name == "otlp":
            from embed_bench.core.span_export import HelperProcessBatchProcessor

            exporter_class(name, env)  # checked here; built in the helper process that sends
            provider.add_span_processor(HelperProcessBatchProcessor(name, env))
        elif name != "none":
            provider.add_span_processor(BatchSpanProcessor(span_exporter(name, env)))
    return provider
