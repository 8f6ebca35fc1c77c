"""Every custom Locust option of embed-bench, and a typed, validated view of their values.

This module does not import Locust (tests and ``embed-bench run`` read it without gevent);
``embed_bench.load.shape`` subscribes ``add_bench_options`` to Locust's parser event. The options are
declared once, as a table, so the parser registration, the ``LOCUST_...`` environment
variables, the web UI form and the typed ``BenchOptions`` view cannot drift apart. Values are read
back through ``BenchOptions.from_namespace`` because Locust hands custom options around as loosely
typed attributes: the web UI writes form strings into options whose default is ``None``, and workers
receive the master's values as a plain dict with each spawn message.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from embed_bench.core.contract import ARRIVALS
from embed_bench.core.validation import positive_number

# Read at use time, never as a parser default, so the key never shows in `--help` or the web UI form.
API_KEY_FALLBACK_ENV = "JINA_API_KEY"
CAPACITY_GRID = "capacity"  # --grid capacity: a capacity search of --batch-size x --passage-tokens


@dataclass(frozen=True)
class OptionSpec:
    """One custom option: its flag, default, type and help; the env var is derived from the flag.

    ``label`` is what the web UI's form calls the field. Locust derives a label from the option's name
    in its page script (``slo_p95_ms`` -> "Slo P9 5Ms"), so ``embed_bench.load.web_ui`` puts this
    one in its place, and the form's error messages name the field by it too."""

    flag: str
    default: Any
    type: Callable[[str], Any]
    help: str
    secret: bool = False
    label: str = ""

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def form_label(self) -> str:
        """The field's label in the web form: ``label``, else the name in words (``Batch size``)."""
        return self.label or self.dest.replace("_", " ").capitalize()

    @property
    def form_name(self) -> str:
        """The field's ``name`` in Locust's form: the dest in camelCase, as Locust's page sends it
        (``slo_p95_ms`` -> ``sloP95Ms``; Locust turns it back into the dest when the form is posted)."""
        head, *rest = self.dest.split("_")
        return head + "".join(part[:1].upper() + part[1:] for part in rest)

    @property
    def env_var(self) -> str:
        return "LOCUST_" + self.dest.upper()


def _text(value: str) -> str:
    return str(value).strip()


OPTION_SPECS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "--grid",
        "",
        _text,
        "Grid to walk: quick | article | throughput | capacity | path to a grid TOML file. Empty: one "
        "cell of --batch-size x --passage-tokens at --users concurrency (or at --request-rate). capacity: "
        "the highest rate of that shape within --slo-p95-ms.",
    ),
    OptionSpec("--batch-size", 1, int, "Passages per request when no --grid is set."),
    OptionSpec(
        "--passage-tokens", 128, int, "Tokens per passage (special tokens excluded) when no --grid is set."
    ),
    OptionSpec(
        "--requests-per-user",
        5,
        int,
        "Measured requests each user sends per cell (the study repeated every cell 5 times).",
    ),
    OptionSpec(
        "--warmup-requests",
        1,
        int,
        "Warm-up requests each user sends per cell before the measured ones (named 'warmup ...').",
        label="Warm-up requests",
    ),
    OptionSpec(
        "--cell-max-seconds",
        300.0,
        float,
        "A cell ends after this many seconds even if its users have not finished their requests.",
        label="Cell time limit (s)",
    ),
    OptionSpec(
        "--repeats",
        1,
        int,
        "Walk the grid this many times, each repeat with fresh passages (the study averaged 5 runs).",
    ),
    OptionSpec(
        "--tokenizer",
        "",
        _text,
        "Tokenizer that makes passages token-exact: 'bundled' (or empty) for the bundled "
        "all-MiniLM-L6-v2 tokenizer, a tokenizer.json path (or its directory), or a Hugging Face hub id.",
    ),
    OptionSpec(
        "--seed",
        None,
        int,
        "Seed of the passage generator; the same seed sends the same passages. Empty: a fresh "
        "random seed per run, logged at start.",
    ),
    OptionSpec(
        "--model",
        "",
        _text,
        "Model name sent in the request body (Jina API and OpenAI-compatible servers). Empty: "
        "jina-embeddings-v3 on the Jina API; on any other host the model the server lists (/v1/models, "
        "/models, /info), or an error at start; the bundled server's /embed takes none.",
    ),
    OptionSpec(
        "--task",
        "",
        _text,
        "Task sent with the request (Jina API: retrieval.query, retrieval.passage, text-matching, "
        "classification, separation). Empty: not sent (SageMaker: text-matching).",
    ),
    OptionSpec(
        "--api-key",
        "",
        _text,
        f"API key sent as a Bearer token. Empty: the {API_KEY_FALLBACK_ENV} environment variable, if set.",
        secret=True,
        label="API key",
    ),
    OptionSpec(
        "--embeddings-path",
        "/v1/embeddings",
        _text,
        "Path of the OpenAI-compatible embeddings endpoint (some servers use /embeddings).",
    ),
    OptionSpec("--sagemaker-endpoint", "", _text, "SageMaker endpoint name.", label="SageMaker endpoint"),
    OptionSpec(
        "--aws-region",
        "",
        _text,
        "AWS region of the SageMaker endpoint. Empty: the boto3 default region.",
        label="AWS region",
    ),
    OptionSpec(
        "--request-timeout",
        120.0,
        float,
        "Seconds to wait for a response before recording the request as a 'timeout' failure.",
        label="Request timeout (s)",
    ),
    OptionSpec(
        "--request-rate",
        None,
        float,
        "Open loop: requests/s across all load generators (each process sends its share). Without "
        "--grid: one rate cell of --batch-size x --passage-tokens; with --grid capacity: the start rate.",
        label="Request rate (requests/s)",
    ),
    OptionSpec(
        "--arrival",
        "poisson",
        _text,
        "Arrival process of rate cells: poisson (exponential gaps) or constant (evenly spaced).",
    ),
    OptionSpec(
        "--max-in-flight",
        256,
        int,
        "Rate cells: the users (over all processes) that carry requests; a due request waits for a free one.",
        label="Max in flight (users)",
    ),
    OptionSpec(
        "--cell-duration",
        60.0,
        float,
        "Seconds a rate cell offers requests (its duration).",
        label="Rate cell duration (s)",
    ),
    OptionSpec(
        "--max-lag",
        5.0,
        float,
        "Rate cells: a request that waited this many seconds for a free user is dropped and counted.",
        label="Max lag (s)",
    ),
    OptionSpec(
        "--slo-p95-ms",
        None,
        float,
        "Capacity search (--grid capacity) or trace replay (--trace, for SLO attainment): the p95 latency "
        "target in ms, from the planned send times.",
        label="SLO p95 (ms)",
    ),
    OptionSpec(
        "--slo-success-pct",
        99.9,
        float,
        "Capacity search: the share of offered requests that must succeed (dropped ones fail).",
        label="SLO success (%)",
    ),
    OptionSpec(
        "--max-rate",
        None,
        float,
        "Capacity search: the highest rate it tries, in requests/s (a hosted API's rate limit, or a bound on "
        "how long the search runs); a deployment that meets the target there has a capacity of at least it.",
        label="Search max rate (/s)",
    ),
    OptionSpec(
        "--confirm-repeats",
        2,
        int,
        "Capacity search: rounds of confirmation steps at 1x, 0.85x and 1.15x of the answer (each long "
        "enough for 200 requests) that give the capacity its 95 percent interval; 0: none, a point estimate only.",
        label="Confirmation rounds",
    ),
    OptionSpec(
        "--trace",
        "",
        _text,
        "Replay a request log open loop instead of a grid: a CSV or JSONL file, one row per request with "
        "offset_s (or timestamp) and tokens (per input) or texts. Every row is sent once.",
        label="Trace file",
    ),
    OptionSpec(
        "--trace-speed",
        1.0,
        float,
        "Trace replay: divide every gap between requests by this factor (60: an hour in a minute).",
        label="Trace speed (x)",
    ),
    OptionSpec(
        "--trace-max-gap",
        None,
        float,
        "Trace replay: cut any idle gap longer than this many seconds (after --trace-speed) to it.",
        label="Trace max gap (s)",
    ),
    OptionSpec(
        "--run-dir",
        "",
        _text,
        "Directory that receives cells.csv. Empty: the directory of the --csv prefix, if any.",
        label="Run directory",
    ),
)


def add_bench_options(parser: Any, **_kwargs: Any) -> None:
    """Add the options to Locust's parser (an ``init_command_line_parser`` listener, subscribed by
    ``embed_bench.load.shape``, which every locustfile imports); idempotent, so importing twice is harmless."""
    # Straight on the parser: argument groups are plain argparse and drop Locust's web UI flags.
    for spec in OPTION_SPECS:
        if spec.flag in parser._option_string_actions:
            continue
        parser.add_argument(
            spec.flag,
            type=spec.type,
            default=spec.default,
            env_var=spec.env_var,
            help=spec.help,
            include_in_web_ui=True,
            is_secret=spec.secret,
        )


class OptionError(ValueError):
    """A custom option has a value the benchmark cannot run with."""


_NUMBER_MESSAGE = "{name} must be a {kind} number, got {value!r}"


def _coerce(spec: OptionSpec, value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return spec.default
    try:
        return spec.type(value)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"{spec.flag}: invalid value {value!r}") from exc


@dataclass(frozen=True)
class BenchOptions:
    """The custom options, typed and checked; ``api_key`` is excluded from repr and from ``public()``."""

    grid: str = ""
    batch_size: int = 1
    passage_tokens: int = 128
    requests_per_user: int = 5
    warmup_requests: int = 1
    cell_max_seconds: float = 300.0
    repeats: int = 1
    tokenizer: str = ""
    seed: int | None = None
    model: str = ""  # empty: settled per run by the user class (JinaApiUser.resolve_options)
    task: str = ""
    api_key: str = field(default="", repr=False, metadata={"secret": True})
    embeddings_path: str = "/v1/embeddings"
    sagemaker_endpoint: str = ""
    aws_region: str = ""
    request_timeout: float = 120.0
    request_rate: float | None = None
    arrival: str = "poisson"
    max_in_flight: int = 256
    cell_duration: float = 60.0
    max_lag: float = 5.0
    slo_p95_ms: float | None = None
    slo_success_pct: float = 99.9
    max_rate: float | None = None
    confirm_repeats: int = 2
    trace: str = ""
    trace_speed: float = 1.0
    trace_max_gap: float | None = None
    run_dir: str = ""

    def __post_init__(self) -> None:
        for name in ("batch_size", "passage_tokens", "requests_per_user", "repeats"):
            if getattr(self, name) < 1:
                raise OptionError(f"--{name.replace('_', '-')} must be at least 1")
        if self.warmup_requests < 0:
            raise OptionError("--warmup-requests must not be negative")
        if not 0 <= self.confirm_repeats <= 10:
            raise OptionError(f"--confirm-repeats takes 0 to 10 rounds, got {self.confirm_repeats!r}")
        if self.cell_max_seconds <= 0 or self.request_timeout <= 0:
            raise OptionError("--cell-max-seconds and --request-timeout must be positive")
        for name in (
            "request_rate",
            "cell_duration",
            "max_lag",
            "slo_p95_ms",
            "max_rate",
            "trace_speed",
            "trace_max_gap",
        ):
            value = getattr(self, name)
            if value is not None:
                positive_number(
                    value, f"--{name.replace('_', '-')}", error=OptionError, message=_NUMBER_MESSAGE
                )
        if self.max_in_flight < 1:
            raise OptionError("--max-in-flight must be at least 1")
        if self.arrival not in ARRIVALS:
            raise OptionError(f"--arrival must be {' or '.join(ARRIVALS)}, got {self.arrival!r}")
        if not 0 < self.slo_success_pct <= 100:
            raise OptionError(f"--slo-success-pct is a percentage in (0, 100], got {self.slo_success_pct!r}")
        if self.grid == CAPACITY_GRID and self.slo_p95_ms is None:
            raise OptionError("--grid capacity needs a target: --slo-p95-ms (and --slo-success-pct)")
        if self.request_rate is not None and self.grid and self.grid != CAPACITY_GRID:
            raise OptionError(
                "--request-rate makes a single rate cell (or the start of --grid capacity); "
                "give rates in the grid file's request_rate instead"
            )

        if self.trace and (self.grid or self.request_rate is not None):
            raise OptionError(
                "--trace replays the log's own requests at its own times; drop --grid and --request-rate "
                "(--trace-speed compresses time)"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> BenchOptions:
        """Build from any mapping of option dests (parsed options, web UI strings, a message payload)."""
        return cls(**{spec.dest: _coerce(spec, values.get(spec.dest)) for spec in OPTION_SPECS})

    @classmethod
    def from_namespace(cls, namespace: Any) -> BenchOptions:
        return cls.from_mapping(vars(namespace) if namespace is not None else {})

    def public(self) -> dict[str, Any]:
        """The values without secrets: safe to send to workers in our own messages or to log."""
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.metadata.get("secret")}

    def effective_api_key(self) -> str:
        return self.api_key or os.environ.get(API_KEY_FALLBACK_ENV, "").strip()


def concurrency_option(namespace: Any) -> int:
    """Locust's own ``--users``: the concurrency of the single cell run when no --grid is set."""
    value = getattr(namespace, "num_users", None) if namespace is not None else None
    try:
        return max(1, int(value)) if value not in (None, "") else 1
    except (TypeError, ValueError) as exc:
        raise OptionError(f"--users: invalid value {value!r}") from exc


def run_time_option(namespace: Any) -> float | None:
    """Locust's own ``--run-time`` in seconds; GridShape honours it as an overall bound."""
    value = getattr(namespace, "run_time", None) if namespace is not None else None
    return float(value) if value not in (None, "", 0) else None


def csv_prefix_option(namespace: Any) -> str | None:
    return getattr(namespace, "csv_prefix", None) if namespace is not None else None


def resolve_run_dir(options: BenchOptions, csv_prefix: str | None) -> Path | None:
    """The run directory: ``--run-dir``, else the folder of Locust's ``--csv`` prefix, else none."""
    if options.run_dir:
        return Path(options.run_dir)
    if csv_prefix:
        return Path(csv_prefix).parent
    return None
