"""Server settings: one dataclass, filled from defaults, then ``EMBED_BENCH_*`` env vars, then overrides.

Flask keeps configuration as an upper-case mapping; :class:`ServerConfig` is the typed view of it
that the rest of the server reads, validated once so that a bad value fails at start with a message
that says what to fix, not in the middle of a load test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

BATCHING_MODES = ("continuous", "timeout", "none")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "float16", "bfloat16")
# The runtime of the forward pass (target_server.engines): torch as loaded, or the model exported to
# ONNX Runtime or OpenVINO at start (CPU only); QUANTIZATIONS: int8 for those two.
ENGINES = ("torch", "onnx", "openvino")
QUANTIZATIONS = ("none", "int8")
# How a torch forward pass treats passages of unlike lengths (target_server.packed): padded to the
# longest of the pass, or packed end to end with attention per passage (BERT and XLM-RoBERTa models).
ATTENTIONS = ("padded", "packed")
BUNDLED_MODEL = "bundled"
ENV_PREFIX = "EMBED_BENCH"
# One log line format for every server process (gunicorn's workers, the model process): the pid tells them apart.
LOG_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"


class ConfigError(ValueError):
    """A setting that cannot work; the message names the setting and what to change."""


@dataclass(frozen=True)
class ServerConfig:
    """Everything the target server can be told. Field names match the CLI flags (``--max-batch-tokens``)."""

    model: str = BUNDLED_MODEL
    trust_remote_code: bool = False
    device: str = "auto"
    dtype: str = "auto"
    engine: str = "torch"
    quantize: str = "none"
    attention: str = "padded"
    # Where exported models are kept between starts (None: $XDG_CACHE_HOME or ~/.cache, /embed-bench/engines).
    engine_cache: str | None = None
    batching: str = "continuous"
    # Padded tokens (longest input x rows) one forward pass may take. None: see batch_token_budget.
    max_batch_tokens: int | None = None
    batch_timeout_s: float = 2.0
    # Admission control: tokens admitted but not yet answered. Past it, new requests get 429 at once.
    max_queue_tokens: int = 16_777_216
    max_inputs_per_request: int = 2048
    max_body_bytes: int = 8 * 1024 * 1024
    # How long a request thread waits for its embeddings before answering 503 (never hang).
    request_timeout_s: float = 120.0
    api_key: str | None = None
    warmup: bool = True
    # After the full-budget batch, repeat small batches of common shapes until each one's forward pass
    # takes a steady time, for at most this many seconds (0: the full-budget batch only). A fresh CPU
    # server's first passes of a shape can take many times their steady time.
    warmup_seconds: float = 30.0
    # torch's intra-op threads (torch.set_num_threads); None or 0: torch's default (one per core).
    cpu_threads: int | None = None
    # OpenTelemetry traces (serve --otel); the standard OTEL_* variables turn them on too (tracing.py).
    otel: bool = False
    # Processes that take HTTP requests (serve --frontends); above 1, the model runs in a process of
    # its own (target_server.model_process). A setting, not only a flag, so a container's
    # EMBED_BENCH_FRONTENDS sets it.
    frontends: int = 1
    # Load the model on a background thread so /health answers 503 while loading (readiness probes).
    load_in_background: bool = False

    def batch_token_budget(self, device: str) -> int:
        """``max_batch_tokens``, or the default for the mode and device.

        The study's ``timeout`` batcher used 8192. Otherwise: 16384 on a GPU (the study's high-load
        request fits one pass), 4096 on a CPU, where larger passes lose throughput (cache misses in
        attention) and only add latency -- measured with benchmarks/batching.py.
        """
        if self.max_batch_tokens is not None:
            return self.max_batch_tokens
        if self.batching == "timeout":
            return 8192
        return 16384 if device.startswith("cuda") else 4096

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> ServerConfig:
        """Build from a Flask-style upper-case mapping; unknown keys are ignored (Flask keeps its own)."""
        values = {f.name: mapping[f.name.upper()] for f in fields(cls) if f.name.upper() in mapping}
        # Prefixed env vars are parsed as JSON, so EMBED_BENCH_API_KEY=123 arrives as a number.
        for name in ("model", "api_key", "engine_cache"):
            if values.get(name) is not None:
                values[name] = str(values[name])
        config = cls(**values)
        config.validate()
        return config

    def to_mapping(self) -> dict[str, Any]:
        return {key.upper(): value for key, value in dataclasses.asdict(self).items()}

    def validate(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        need(
            self.batching in BATCHING_MODES,
            f"batching must be one of {BATCHING_MODES}, got {self.batching!r}",
        )
        need(self.device in DEVICES, f"device must be one of {DEVICES}, got {self.device!r}")
        need(self.dtype in DTYPES, f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        need(isinstance(self.model, str) and bool(self.model), "model must be a local path or a hub id")
        need(self.engine in ENGINES, f"engine must be one of {ENGINES}, got {self.engine!r}")
        need(
            self.quantize in QUANTIZATIONS, f"quantize must be one of {QUANTIZATIONS}, got {self.quantize!r}"
        )
        need(
            not (self.engine == "torch" and self.quantize != "none"),
            f"--quantize {self.quantize} needs --engine onnx or openvino: torch's own dynamic int8 "
            "(torch.ao, deprecated) kept a cosine of only 0.76 with fp32 on the bundled model",
        )
        if self.engine != "torch" or self.quantize != "none":
            what = f"--engine {self.engine}" + (
                f" --quantize {self.quantize}" if self.quantize != "none" else ""
            )
            need(
                self.device in ("auto", "cpu"),
                f"{what} runs on the CPU; use --device cpu (or auto), or --engine torch without --quantize on cuda",
            )
            need(
                self.dtype in ("auto", "float32"),
                f"{what} runs in float32 (int8 weights with --quantize int8); drop --dtype {self.dtype}",
            )
            need(
                not (self.model == "null" or self.model.startswith("null:")),
                f"{what}: the null model has no forward pass to run elsewhere; use --engine torch",
            )
        need(self.attention in ATTENTIONS, f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        if self.attention == "packed":
            need(
                self.engine == "torch" and self.quantize == "none",
                f"--attention packed runs in torch; --engine {self.engine} runs the exported model padded "
                "(drop one of them)",
            )
            need(
                not (self.model == "null" or self.model.startswith("null:")),
                "--attention packed: the null model has no attention to pack; drop --attention",
            )
        need(
            self.engine_cache is None or bool(self.engine_cache),
            "engine_cache must be a directory (leave it unset for the default)",
        )
        for name in ("max_queue_tokens", "max_inputs_per_request", "max_body_bytes"):
            value = getattr(self, name)
            need(isinstance(value, int) and value > 0, f"{name} must be a positive integer, got {value!r}")
        need(
            self.max_batch_tokens is None
            or (isinstance(self.max_batch_tokens, int) and self.max_batch_tokens >= 16),
            f"max_batch_tokens must be an integer >= 16, got {self.max_batch_tokens!r}",
        )
        need(
            isinstance(self.batch_timeout_s, (int, float)) and 0 <= self.batch_timeout_s <= 3600,
            f"batch_timeout_s must be between 0 and 3600 seconds, got {self.batch_timeout_s!r}",
        )
        need(
            isinstance(self.request_timeout_s, (int, float)) and 0 < self.request_timeout_s <= 86400,
            f"request_timeout_s must be between 0 and 86400 seconds, got {self.request_timeout_s!r}",
        )
        need(self.api_key is None or bool(self.api_key), "api_key must not be empty (leave it unset instead)")
        need(
            isinstance(self.warmup_seconds, (int, float)) and 0 <= self.warmup_seconds <= 3600,
            f"warmup_seconds must be between 0 and 3600, got {self.warmup_seconds!r}",
        )
        need(
            isinstance(self.frontends, int)
            and not isinstance(self.frontends, bool)
            and 1 <= self.frontends <= 256,
            f"frontends must be at least 1 (one process) and at most 256, got {self.frontends!r}",
        )
        need(
            self.cpu_threads is None or (isinstance(self.cpu_threads, int) and self.cpu_threads >= 0),
            f"cpu_threads must be 0 (torch's default) or more, got {self.cpu_threads!r}",
        )


def resolve_config(overrides: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], ServerConfig]:
    """Defaults, then ``EMBED_BENCH_*`` env vars (JSON-parsed, as Flask does), then ``overrides``.

    Returns the upper-case mapping (for ``app.config``) and its validated typed view.
    """
    from flask import Config

    mapping = Config("")
    mapping.from_mapping(ServerConfig().to_mapping())
    mapping.from_prefixed_env(ENV_PREFIX)
    if overrides:
        mapping.from_mapping({key.upper(): value for key, value in overrides.items()})
    return dict(mapping), ServerConfig.from_mapping(mapping)
