"""A day of traffic: 24 hourly request rates, and what they cost on an autoscaled hourly option.

The decision table (:mod:`reports.cost.decision`) takes a workload as two numbers, tokens per day and
the peak request rate, and provisions an hourly option for the peak all month. A team that knows its
daily curve can do better: a :class:`DailyProfile` holds one request rate per hour of the day (hour 0
to 23, requests/s) and the tokens per request (one number, or one per hour), and an
:class:`AutoscalingPolicy` says how an hourly option follows it.

Given one instance's capacity at the latency target (requests/s and tokens/s, from a capacity
search) and an hourly price (infrastructure + license):

- each hour needs ``max(ceil(rate x (1 + headroom) / capacity requests/s),
  ceil(tokens/s x (1 + headroom) / capacity tokens/s))`` instances, at least ``min_instances`` and at
  most ``max_instances``; an hour whose demand needs more than ``max_instances`` is a *shortfall*:
  it runs at ``max_instances`` and misses the target, and is reported, never hidden;
- autoscaled, an option pays for the instances each hour holds, every day:
  ``sum over the day of instances x usd_per_hour x 30.4 days``;
- provisioned for the peak, it pays the day's largest instance count all month:
  ``max instances x usd_per_hour x 730 h`` (the decision table's convention);
- a per-token API pays for the same volume: ``tokens per day x 30.4 days x usd_per_million / 1e6``.

The month is the decision table's: 30.4 days and 730 hours (so 24 h x 30.4 = 729.6 h; a flat
profile's autoscaled cost is about 0.05 % below its peak-provisioned cost, which is the constants, not
autoscaling). The peak-provisioned count here is the largest *hourly* need, which may exceed the
decision table's count: that one sizes for the day's mean token load, this one for its busiest hour.

Not modelled: the time an instance takes to start (each hour is taken to be served from its start),
changes within an hour, and minimum billing increments.

A profile comes from a TOML file (:func:`parse_profile_toml`) or a CSV file
(:func:`parse_profile_csv`); :func:`load_profile` picks by suffix. ``reports/data/sample_profile.toml``
is an illustrative example (:func:`load_sample_profile`). Pure Python: no pandas.
"""

from __future__ import annotations

import csv
import io
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from embed_bench.core.trace import TIME_KEYS, TraceError, hourly_profile, load_trace
from embed_bench.core.validation import is_number, positive_number
from reports.cost.numbers import three_figures
from reports.errors import ReportError

# The decision table's month (reports.cost.decision), restated so that neither module imports the other.
HOURS_PER_MONTH = 730.0
DAYS_PER_MONTH = 30.4
HOURS_PER_DAY = 24
SECONDS_PER_HOUR = 3_600.0
SECONDS_PER_DAY = 86_400.0

SAMPLE_PROFILE_FILE = "sample_profile.toml"
CSV_COLUMNS = ("hour", "requests_per_s", "tokens_per_request")
_PROFILE_KEYS = ("requests_per_s", "tokens_per_request", "description")
_AUTOSCALING_KEYS = ("min_instances", "max_instances", "headroom_pct")
# ceil() of a need computed in floating point: 25 x 1.2 / 10 is 3.0000000000000004, which is 3 instances.
_NEED_DIGITS = 9


def _number(source: str, name: str, value: object, *, allow_zero: bool) -> float:
    return positive_number(value, f"{source}: {name}", allow_zero=allow_zero, error=ReportError)


def _count(source: str, name: str, value: object, *, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ReportError(f"{source}: {name} must be an integer of at least {minimum}, found {value!r}")
    return value


@dataclass(frozen=True)
class AutoscalingPolicy:
    """How an hourly option follows the curve: never fewer than ``min_instances`` (0 scales to zero
    in idle hours), never more than ``max_instances`` (None: no cap), and ``headroom_pct`` percent of
    spare capacity above each hour's demand."""

    min_instances: int = 1
    max_instances: int | None = None
    headroom_pct: float = 0.0

    def __post_init__(self) -> None:
        _check_policy(self, "autoscaling policy")

    def describe(self) -> str:
        cap = f"at most {self.max_instances}" if self.max_instances is not None else "no maximum"
        return f"at least {self.min_instances} instance(s), {cap}, {self.headroom_pct:g}% headroom"


def _check_policy(policy: AutoscalingPolicy, source: str) -> None:
    _count(source, "min_instances", policy.min_instances, minimum=0)
    if policy.max_instances is not None:
        _count(source, "max_instances", policy.max_instances, minimum=max(1, policy.min_instances))
    _number(source, "headroom_pct", policy.headroom_pct, allow_zero=True)


@dataclass(frozen=True)
class DailyProfile:
    """A day of traffic: ``requests_per_s[h]`` is the mean request rate during hour ``h`` (0-23) and
    ``tokens_per_request[h]`` the mean tokens per request then. ``tokens_per_request`` may be given
    as one number, which holds for every hour; it is stored as 24. ``autoscaling`` is the policy the
    profile's file names (the default policy when it names none); the cost functions use it unless
    given another."""

    requests_per_s: tuple[float, ...]
    tokens_per_request: tuple[float, ...]
    description: str = ""
    autoscaling: AutoscalingPolicy = field(default_factory=AutoscalingPolicy)

    def __post_init__(self) -> None:
        source = "daily profile"
        tokens: Any = self.tokens_per_request
        if is_number(tokens):
            tokens = (tokens,) * HOURS_PER_DAY
        object.__setattr__(
            self, "requests_per_s", _hourly(source, "requests_per_s", self.requests_per_s, True)
        )
        object.__setattr__(self, "tokens_per_request", _hourly(source, "tokens_per_request", tokens, False))
        if not isinstance(self.description, str):
            raise ReportError(f"{source}: description must be a string, found {self.description!r}")
        if not isinstance(self.autoscaling, AutoscalingPolicy):
            raise ReportError(f"{source}: autoscaling must be an AutoscalingPolicy")
        if self.peak_requests_per_s <= 0:
            raise ReportError(f"{source}: every hour is at 0 requests/s; give at least one hour some traffic")

    @property
    def tokens_per_s_by_hour(self) -> tuple[float, ...]:
        return tuple(
            rate * tokens for rate, tokens in zip(self.requests_per_s, self.tokens_per_request, strict=True)
        )

    @property
    def tokens_per_day(self) -> float:
        return sum(self.tokens_per_s_by_hour) * SECONDS_PER_HOUR

    @property
    def tokens_per_month(self) -> float:
        return self.tokens_per_day * DAYS_PER_MONTH

    @property
    def requests_per_day(self) -> float:
        return sum(self.requests_per_s) * SECONDS_PER_HOUR

    @property
    def mean_tokens_per_s(self) -> float:
        return self.tokens_per_day / SECONDS_PER_DAY

    @property
    def mean_requests_per_s(self) -> float:
        return self.requests_per_day / SECONDS_PER_DAY

    @property
    def peak_requests_per_s(self) -> float:
        return max(self.requests_per_s)

    @property
    def peak_hour(self) -> int:
        """The busiest hour by request rate (the first of equals)."""
        return self.requests_per_s.index(self.peak_requests_per_s)

    @property
    def peak_tokens_per_s(self) -> float:
        return max(self.tokens_per_s_by_hour)

    def describe(self) -> str:
        text = (
            f"{self.tokens_per_day:,.0f} tokens a day, {self.mean_requests_per_s:.3g} requests/s on average, "
            f"peaks of {three_figures(self.peak_requests_per_s)} requests/s at {self.peak_hour:02d}:00"
        )
        return f"{self.description}: {text}" if self.description else text


def _hourly(source: str, name: str, values: object, allow_zero: bool) -> tuple[float, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise ReportError(
            f"{source}: {name} must be a list of {HOURS_PER_DAY} numbers (hour 0 to 23), found {values!r}"
        )
    if len(values) != HOURS_PER_DAY:
        raise ReportError(
            f"{source}: {name} must list {HOURS_PER_DAY} hourly values (hour 0 to 23), found {len(values)}"
        )
    return tuple(
        _number(source, f"{name} at hour {hour}", value, allow_zero=allow_zero)
        for hour, value in enumerate(values)
    )


# --- parsers ---------------------------------------------------------------------------------------


def _unknown_keys(source: str, table: str, found: Mapping[str, Any], known: Sequence[str]) -> None:
    unknown = sorted(set(found) - set(known))
    if unknown:
        raise ReportError(
            f"{source}: unknown key(s) in {table}: {', '.join(unknown)}; known: {', '.join(known)}"
        )


def parse_profile_toml(text: str, source: str) -> DailyProfile:
    """The TOML form: a ``[profile]`` table and an optional ``[autoscaling]`` table::

    [profile]
    description = "search queries and nightly re-indexing"   # optional
    requests_per_s = [4, 3, 12, ...]   # 24 numbers, hour 0 to 23
    tokens_per_request = 300           # or 24 numbers, one per hour

    [autoscaling]                      # optional; these are the defaults but max_instances
    min_instances = 1
    max_instances = 8                  # optional: no cap when absent
    headroom_pct = 0
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ReportError(f"{source}: not a valid TOML profile file ({exc})") from exc
    _unknown_keys(
        source, "the file (tables [profile] and [autoscaling])", document, ("profile", "autoscaling")
    )
    profile = document.get("profile")
    if not isinstance(profile, dict):
        raise ReportError(f"{source}: missing the [profile] table (requests_per_s and tokens_per_request)")
    _unknown_keys(source, "[profile]", profile, _PROFILE_KEYS)
    missing = [key for key in ("requests_per_s", "tokens_per_request") if key not in profile]
    if missing:
        raise ReportError(
            f"{source}: [profile] is missing {', '.join(missing)} "
            f"(requests_per_s: {HOURS_PER_DAY} numbers, hour 0 to 23; tokens_per_request: a number or {HOURS_PER_DAY})"
        )
    where = f"{source}: [profile]"
    tokens = profile["tokens_per_request"]
    if is_number(tokens):
        tokens = (_number(where, "tokens_per_request", tokens, allow_zero=False),) * HOURS_PER_DAY
    elif isinstance(tokens, list):
        tokens = _hourly(where, "tokens_per_request", tokens, False)
    else:
        raise ReportError(
            f"{where}: tokens_per_request must be a number or a list of {HOURS_PER_DAY}, found {tokens!r}"
        )
    description = profile.get("description", "")
    if not isinstance(description, str):
        raise ReportError(f"{where}: description must be a string, found {description!r}")
    return DailyProfile(
        requests_per_s=_hourly(where, "requests_per_s", profile["requests_per_s"], True),
        tokens_per_request=tokens,
        description=description,
        autoscaling=_parse_policy(document.get("autoscaling", {}), source),
    )


def _parse_policy(table: object, source: str) -> AutoscalingPolicy:
    if not isinstance(table, dict):
        raise ReportError(f"{source}: autoscaling must be a [autoscaling] table")
    _unknown_keys(source, "[autoscaling]", table, _AUTOSCALING_KEYS)
    where = f"{source}: [autoscaling]"
    min_instances = _count(where, "min_instances", table.get("min_instances", 1), minimum=0)
    max_instances = table.get("max_instances")
    if max_instances is not None:
        max_instances = _count(where, "max_instances", max_instances, minimum=max(1, min_instances))
    headroom = _number(where, "headroom_pct", table.get("headroom_pct", 0.0), allow_zero=True)
    return AutoscalingPolicy(min_instances, max_instances, headroom)


def parse_profile_csv(text: str, source: str) -> DailyProfile:
    """The CSV form: header ``hour,requests_per_s,tokens_per_request`` and 24 rows, hours 0 to 23 each
    once, in any order. Blank lines are skipped. No autoscaling settings: the default policy."""
    rows = [(number, row) for number, row in enumerate(csv.reader(io.StringIO(text)), start=1) if any(row)]
    if not rows:
        raise ReportError(f"{source}: empty profile; expected the header {','.join(CSV_COLUMNS)} and 24 rows")
    header = tuple(cell.strip() for cell in rows[0][1])
    if header != CSV_COLUMNS:
        raise ReportError(f"{source}: the header must be {','.join(CSV_COLUMNS)}, found {','.join(header)}")
    rates: dict[int, float] = {}
    tokens: dict[int, float] = {}
    for line, row in rows[1:]:
        where = f"{source}, line {line}"
        if len(row) != len(CSV_COLUMNS):
            raise ReportError(
                f"{where}: expected {len(CSV_COLUMNS)} values ({','.join(CSV_COLUMNS)}), found {len(row)}"
            )
        hour_text, rate_text, tokens_text = (cell.strip() for cell in row)
        try:
            hour = int(hour_text)
        except ValueError:
            raise ReportError(f"{where}: hour must be an integer from 0 to 23, found {hour_text!r}") from None
        if not 0 <= hour < HOURS_PER_DAY:
            raise ReportError(f"{where}: hour must be an integer from 0 to 23, found {hour}")
        if hour in rates:
            raise ReportError(f"{where}: hour {hour} is given twice; give each hour 0 to 23 once")
        rates[hour] = _number(
            where, "requests_per_s", _float(where, "requests_per_s", rate_text), allow_zero=True
        )
        tokens[hour] = _number(
            where, "tokens_per_request", _float(where, "tokens_per_request", tokens_text), allow_zero=False
        )
    missing = [str(hour) for hour in range(HOURS_PER_DAY) if hour not in rates]
    if missing:
        raise ReportError(
            f"{source}: found {len(rates)} hours, expected {HOURS_PER_DAY}; missing hour(s) {', '.join(missing)}"
        )
    return DailyProfile(
        requests_per_s=tuple(rates[hour] for hour in range(HOURS_PER_DAY)),
        tokens_per_request=tuple(tokens[hour] for hour in range(HOURS_PER_DAY)),
    )


def _float(where: str, name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ReportError(f"{where}: {name} must be a number, found {text!r}") from None


def load_profile(path: str | Path) -> DailyProfile:
    """A profile file: TOML (``.toml``) or CSV (``.csv``), by suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".csv"):
        raise ReportError(f"{path}: a profile file ends in .toml or .csv, found {suffix or 'no suffix'!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"{path}: cannot read profile file ({exc.strerror})") from exc
    except UnicodeDecodeError:
        raise ReportError(f"{path}: a profile file must be UTF-8 text") from None
    return parse_profile_toml(text, str(path)) if suffix == ".toml" else parse_profile_csv(text, str(path))


TRACE_SUFFIXES = (".jsonl", ".ndjson")


def is_trace_file(path: Path) -> bool:
    """A request log (``run --trace``'s format) rather than a 24-row profile: JSON lines, or a CSV whose
    header names ``offset_s`` or ``timestamp``."""
    if path.suffix.lower() in TRACE_SUFFIXES:
        return True
    if path.suffix.lower() != ".csv":
        return False
    try:
        with open(path, encoding="utf-8") as stream:
            header = stream.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return any(name.strip() in TIME_KEYS for name in header.split(","))


def profile_of_trace(path: str | Path) -> DailyProfile:
    """A trace as a day: each hour's requests per second and tokens per request over the seconds of it
    the trace covers (``embed_bench.core.trace.hourly_profile``). An hour it never covers is an error
    that names it: a gap in the log is unknown traffic, not zero traffic."""
    try:
        trace = load_trace(path)
        load = hourly_profile(trace)
    except TraceError as error:
        raise ReportError(f"--workload {path}: {error}") from None
    if load.missing_hours:
        hours = ", ".join(f"{hour:02d}:00" for hour in load.missing_hours)
        raise ReportError(
            f"--workload {path}: the trace does not cover hour(s) {hours}; a daily profile needs all 24 "
            "(give a day-long trace, or a profile TOML/CSV)"
        )
    name = Path(path).name
    return DailyProfile(
        requests_per_s=load.requests_per_s,
        tokens_per_request=load.tokens_per_request,
        description=f"trace {name} ({len(trace):,} requests; its busiest minute {three_figures(load.peak_minute_requests_per_s)} requests/s)",
    )


def load_sample_profile() -> DailyProfile:
    """The packaged ``reports/data/sample_profile.toml``: illustrative, not measured."""
    resource = resources.files("reports") / "data" / SAMPLE_PROFILE_FILE
    return parse_profile_toml(resource.read_text(encoding="utf-8"), f"sample {SAMPLE_PROFILE_FILE}")


# --- costs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileCost:
    """An hourly option under a daily profile: autoscaled and peak-provisioned, side by side.

    ``shortfall_hours`` lists the hours whose demand needs more than ``max_instances``: those run at
    the cap and miss the target, so the costs there are of an option that does not meet it."""

    instances_per_hour: tuple[int, ...]
    instance_hours_per_day: int
    peak_instances: int
    monthly_cost_autoscaled_usd: float
    monthly_cost_peak_provisioned_usd: float
    shortfall_hours: tuple[int, ...]
    tokens_per_month: float

    @property
    def meets_target(self) -> bool:
        return not self.shortfall_hours

    @property
    def saving_pct(self) -> float:
        """How much autoscaling saves over provisioning for the peak, in percent of the latter."""
        if self.monthly_cost_peak_provisioned_usd <= 0:
            return 0.0
        return 100.0 * (1 - self.monthly_cost_autoscaled_usd / self.monthly_cost_peak_provisioned_usd)

    @property
    def effective_usd_per_million_autoscaled(self) -> float:
        return self.monthly_cost_autoscaled_usd / self.tokens_per_month * 1e6

    @property
    def effective_usd_per_million_peak_provisioned(self) -> float:
        return self.monthly_cost_peak_provisioned_usd / self.tokens_per_month * 1e6


def _capacity(capacity_requests_per_s: float, capacity_tokens_per_s: float) -> tuple[float, float]:
    where = "capacity"
    return (
        _number(where, "requests/s per instance", capacity_requests_per_s, allow_zero=False),
        _number(where, "tokens/s per instance", capacity_tokens_per_s, allow_zero=False),
    )


def _plan(
    profile: DailyProfile,
    capacity_requests_per_s: float,
    capacity_tokens_per_s: float,
    policy: AutoscalingPolicy | None,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Instances per hour and the hours short of them."""
    requests_per_s, tokens_per_s = _capacity(capacity_requests_per_s, capacity_tokens_per_s)
    policy = profile.autoscaling if policy is None else policy
    factor = 1 + policy.headroom_pct / 100
    instances, short = [], []
    for hour, (rate, tokens) in enumerate(
        zip(profile.requests_per_s, profile.tokens_per_s_by_hour, strict=True)
    ):
        need = max(
            math.ceil(round(rate * factor / requests_per_s, _NEED_DIGITS)),
            math.ceil(round(tokens * factor / tokens_per_s, _NEED_DIGITS)),
            policy.min_instances,
        )
        if policy.max_instances is not None and need > policy.max_instances:
            need = policy.max_instances
            short.append(hour)
        instances.append(need)
    return tuple(instances), tuple(short)


def instances_per_hour(
    profile: DailyProfile,
    capacity_requests_per_s: float,
    capacity_tokens_per_s: float,
    policy: AutoscalingPolicy | None = None,
) -> tuple[int, ...]:
    """24 instance counts: each hour's ``max(ceil(rate x (1 + headroom) / capacity requests/s),
    ceil(tokens/s x (1 + headroom) / capacity tokens/s))``, at least ``min_instances``, capped at
    ``max_instances`` (see :func:`shortfall_hours`). ``policy`` defaults to the profile's own."""
    return _plan(profile, capacity_requests_per_s, capacity_tokens_per_s, policy)[0]


def shortfall_hours(
    profile: DailyProfile,
    capacity_requests_per_s: float,
    capacity_tokens_per_s: float,
    policy: AutoscalingPolicy | None = None,
) -> tuple[int, ...]:
    """The hours (0-23) whose demand needs more than ``max_instances``."""
    return _plan(profile, capacity_requests_per_s, capacity_tokens_per_s, policy)[1]


def _price(usd_per_hour: float) -> float:
    return _number("price", "USD per hour", usd_per_hour, allow_zero=True)


def autoscaled_monthly_cost(
    profile: DailyProfile,
    capacity_requests_per_s: float,
    capacity_tokens_per_s: float,
    usd_per_hour: float,
    policy: AutoscalingPolicy | None = None,
) -> float:
    """``sum over the day of instances x usd_per_hour x 30.4 days``."""
    instances = instances_per_hour(profile, capacity_requests_per_s, capacity_tokens_per_s, policy)
    return sum(instances) * _price(usd_per_hour) * DAYS_PER_MONTH


def peak_provisioned_monthly_cost(
    profile: DailyProfile,
    capacity_requests_per_s: float,
    capacity_tokens_per_s: float,
    usd_per_hour: float,
    policy: AutoscalingPolicy | None = None,
) -> float:
    """``max instances over the day x usd_per_hour x 730 h``: no autoscaling."""
    instances = instances_per_hour(profile, capacity_requests_per_s, capacity_tokens_per_s, policy)
    return max(instances) * _price(usd_per_hour) * HOURS_PER_MONTH


def per_token_monthly_cost(profile: DailyProfile, usd_per_million: float) -> float:
    """A per-token API on the same volume: ``tokens per day x 30.4 days x usd_per_million / 1e6``."""
    price = _number("price", "USD per million tokens", usd_per_million, allow_zero=True)
    return profile.tokens_per_month * price / 1e6


def hourly_profile_cost(
    profile: DailyProfile,
    capacity_requests_per_s: float,
    capacity_tokens_per_s: float,
    usd_per_hour: float,
    policy: AutoscalingPolicy | None = None,
) -> ProfileCost:
    """Both costs of an hourly option under ``profile``, with the plan behind them."""
    instances, short = _plan(profile, capacity_requests_per_s, capacity_tokens_per_s, policy)
    price = _price(usd_per_hour)
    return ProfileCost(
        instances_per_hour=instances,
        instance_hours_per_day=sum(instances),
        peak_instances=max(instances),
        monthly_cost_autoscaled_usd=sum(instances) * price * DAYS_PER_MONTH,
        monthly_cost_peak_provisioned_usd=max(instances) * price * HOURS_PER_MONTH,
        shortfall_hours=short,
        tokens_per_month=profile.tokens_per_month,
    )
