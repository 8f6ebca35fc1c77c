"""The decision table: what a team's own workload costs each month on each option, within its target.

The study priced each deployment at its average throughput under full load. That flatters an hourly
server, which costs the same busy or idle, and ignores latency. Here the input is the team's
workload (tokens per day and the peak request rate) and, per option, its capacity at the latency
target (from a capacity search: the highest request rate whose p95 and success rate held) with its
price from the pricing file:

- an hourly option (infrastructure + license per hour) needs enough instances for the peak and for
  the daily token volume, and pays for each of them all month: ``usd_per_hour x 730 h x instances``;
- a per-token API pays for the tokens it embeds: ``tokens per day x 30.4 days x usd_per_million / 1e6``,
  and is one account: it meets the target only when its measured capacity covers the peak;
- either way the effective price is ``monthly cost / monthly tokens``, per million tokens: the price
  at this workload's utilization.

The table names the cheapest option that meets the target and says, beneath it, what the figures
assume. The workload comes from ``--workload tokens-per-day=...,peak-requests-per-s=...`` or from a
small TOML file (see :func:`load_workload`). This module holds the model; the report section that
shows it is :mod:`reports.tables.decision`.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embed_bench.core.validation import positive_number
from reports.cost.numbers import three_figures
from reports.cost.pricing import Price
from reports.cost.profile import (
    DailyProfile,
    ProfileCost,
    hourly_profile_cost,
    is_trace_file,
    load_profile,
    parse_profile_toml,
    profile_of_trace,
)
from reports.errors import ReportError

HOURS_PER_MONTH = 730.0
DAYS_PER_MONTH = 30.4
SECONDS_PER_DAY = 86_400.0

_WORKLOAD_KEYS = {"tokens-per-day": "tokens_per_day", "peak-requests-per-s": "peak_requests_per_s"}
WORKLOAD_EXAMPLE = "tokens-per-day=2e9,peak-requests-per-s=40"


@dataclass(frozen=True)
class Workload:
    """A team's traffic: the tokens it embeds per day and its peak request rate."""

    tokens_per_day: float
    peak_requests_per_s: float
    description: str = ""
    profile: DailyProfile | None = None  # a day of hourly rates: hourly options then also autoscale

    @classmethod
    def of_profile(cls, profile: DailyProfile) -> Workload:
        """The day's volume and its busiest hour, with the profile kept for the autoscaled cost."""
        return cls(profile.tokens_per_day, profile.peak_requests_per_s, profile.description, profile)

    @property
    def mean_tokens_per_s(self) -> float:
        return self.tokens_per_day / SECONDS_PER_DAY

    @property
    def tokens_per_month(self) -> float:
        return self.tokens_per_day * DAYS_PER_MONTH

    def describe(self) -> str:
        text = f"{self.tokens_per_day:,.0f} tokens a day, peaks of {three_figures(self.peak_requests_per_s)} requests/s"
        if self.profile is not None:
            text += (
                f" (a 24-hour profile, busiest at {self.profile.peak_hour}:00; "
                f"autoscaling {self.profile.autoscaling.describe()})"
            )
        return f"{self.description}: {text}" if self.description else text


def _workload_number(source: str, key: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ReportError(f"{source}: {key} must be a number, found {value!r}") from None
    return positive_number(value, f"{source}: {key}", error=ReportError)


def parse_workload(text: str) -> Workload:
    """``tokens-per-day=2e9,peak-requests-per-s=40`` (numbers as Python reads them: 2e9, 2_000_000_000)."""
    source = f"--workload {text!r}"
    values: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        key, equals, value = (piece.strip() for piece in item.partition("="))
        if not equals or not key or not value:
            raise ReportError(
                f"{source}: expected KEY=VALUE pairs separated by commas, e.g. {WORKLOAD_EXAMPLE}"
            )
        if key not in _WORKLOAD_KEYS:
            raise ReportError(f"{source}: unknown key {key!r}; known: {', '.join(_WORKLOAD_KEYS)}")
        if key in values:
            raise ReportError(f"{source}: {key} is given twice")
        values[key] = value
    missing = [key for key in _WORKLOAD_KEYS if key not in values]
    if missing:
        raise ReportError(f"{source}: missing {', '.join(missing)} (e.g. {WORKLOAD_EXAMPLE})")
    return Workload(
        **{_WORKLOAD_KEYS[key]: _workload_number(source, key, value) for key, value in values.items()}
    )


def parse_workload_toml(text: str, source: str) -> Workload:
    """The TOML form: top-level ``tokens_per_day``, ``peak_requests_per_s`` and an optional
    ``description``::

        description = "search queries and nightly re-indexing"
        tokens_per_day = 2_000_000_000
        peak_requests_per_s = 40
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ReportError(f"{source}: not a valid TOML workload file ({exc})") from exc
    keys = set(_WORKLOAD_KEYS.values())
    unknown = sorted(set(document) - keys - {"description"})
    missing = sorted(keys - set(document))
    if unknown or missing:
        raise ReportError(
            f"{source}: a workload file holds tokens_per_day, peak_requests_per_s and an optional description; "
            f"missing {', '.join(missing) or 'nothing'}, unknown {', '.join(unknown) or 'nothing'}"
        )
    description = document.get("description", "")
    if not isinstance(description, str):
        raise ReportError(f"{source}: description must be a string")
    return Workload(
        tokens_per_day=_workload_number(source, "tokens_per_day", document["tokens_per_day"]),
        peak_requests_per_s=_workload_number(source, "peak_requests_per_s", document["peak_requests_per_s"]),
        description=description,
    )


def load_workload(value: str) -> Workload:
    """``--workload``: a request log (``run --trace``'s CSV or JSONL: its hourly profile), a 24-hour
    profile (CSV, or TOML with ``[profile]``), a TOML file of two numbers, else KEY=VALUE pairs."""
    path = Path(value)
    if is_trace_file(path):
        return Workload.of_profile(profile_of_trace(path))
    if value.lower().endswith(".csv"):
        return Workload.of_profile(load_profile(path))  # a 24-hour profile
    if path.is_file() or value.endswith(".toml"):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ReportError(f"--workload {value}: cannot read workload file ({exc.strerror})") from exc
        if "[profile]" in text:
            return Workload.of_profile(parse_profile_toml(text, str(path)))
        return parse_workload_toml(text, str(path))
    return parse_workload(value)


@dataclass(frozen=True)
class OptionCapacity:
    """One option of the table: a run's capacity at the target and the price it is billed at.

    ``capacity_*`` is what the table provisions: the lower bound of the capacity's interval where
    the search gave one, else its point estimate; ``capacity_interval_requests_per_s`` keeps the
    interval to show. ``hardware_note`` says why the price pays for other hardware than the run
    measured (None: it matches). ``measure_command`` is how to measure an option that has no
    capacity."""

    name: str
    price: Price
    capacity_requests_per_s: float | None  # 0 when no rate met the target, None when not measured
    capacity_tokens_per_s: float | None  # goodput at that rate
    hardware_note: str | None = None
    capacity_interval_requests_per_s: tuple[float, float] | None = None
    measure_command: str | None = None
    point_requests_per_s: float | None = (
        None  # the search's answer, where it differs from what is provisioned
    )

    @property
    def measured(self) -> bool:
        return self.capacity_requests_per_s is not None and self.capacity_tokens_per_s is not None


NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class DecisionRow:
    option: str
    price: Price
    capacity_requests_per_s: float | None
    capacity_tokens_per_s: float | None
    instances: int | None  # None for a per-token API, and when the target cannot be met
    monthly_cost_usd: float | None  # for an option not measured: its list price, for information
    effective_usd_per_million_tokens: float | None
    utilization_pct: float | None  # mean token load over the capacity paid for
    meets_target: bool  # only ever on a measured capacity
    note: str  # what sets the instance count, or why the target is not met
    measured: bool = True
    hardware_note: str | None = None  # the price pays for other hardware than the run measured
    capacity_interval_requests_per_s: tuple[float, float] | None = None
    measure_command: str | None = None
    monthly_cost_autoscaled_usd: float | None = None  # hourly options under a daily profile
    instances_per_hour: tuple[int, ...] | None = None

    @property
    def ranked_cost_usd(self) -> float:
        """What the answer compares: the autoscaled cost where the workload is a day's profile."""
        cost = (
            self.monthly_cost_autoscaled_usd
            if self.monthly_cost_autoscaled_usd is not None
            else self.monthly_cost_usd
        )
        return cost or 0.0


@dataclass(frozen=True)
class DecisionTable:
    workload: Workload
    target: str  # e.g. "p95 <= 200 ms and success >= 99.9%"
    rows: tuple[DecisionRow, ...]  # measured options, one row per option and price
    cheapest: DecisionRow | None  # measured, meets the target, priced on the hardware it ran on
    assumptions: tuple[str, ...]
    not_measured: tuple[DecisionRow, ...] = ()  # no capacity: never an answer, listed apart
    cheapest_on_other_hardware: DecisionRow | None = None  # cheaper, but its price is another machine's
    equal_to_cheapest: tuple[DecisionRow, ...] = ()  # within the measurement's noise of the answer


COST_TIE = 0.005  # monthly costs within 0.5% of each other are the same cost


def _overlap(first: tuple[float, float] | None, second: tuple[float, float] | None) -> bool:
    return first is not None and second is not None and max(first[0], second[0]) <= min(first[1], second[1])


def within_noise(row: DecisionRow, best: DecisionRow) -> bool:
    """Whether ``row`` cannot be told from ``best``: the same monthly cost (within ``COST_TIE``), or
    the same price with capacity intervals that overlap (which of the two holds more is noise, so
    its lower instance count is too)."""
    if math.isclose(row.ranked_cost_usd, best.ranked_cost_usd, rel_tol=COST_TIE):
        return True
    return row.price.name == best.price.name and _overlap(
        row.capacity_interval_requests_per_s, best.capacity_interval_requests_per_s
    )


def _rate_limit_excess(price: Price, workload: Workload) -> str | None:
    """Why the workload exceeds a per-token API's published rate limits, or None. The token check
    uses the mean load: the peak's token rate is at least that, so a workload over it fails surely."""
    if price.requests_per_minute is not None:
        per_minute = workload.peak_requests_per_s * 60
        if per_minute > price.requests_per_minute:
            return (
                f"the peak of {per_minute:,.0f} requests/min is over {price.name}'s published limit "
                f"of {price.requests_per_minute:,.0f} requests/min"
            )
    if price.tokens_per_minute is not None:
        per_minute = workload.mean_tokens_per_s * 60
        if per_minute > price.tokens_per_minute:
            return (
                f"the mean load of {per_minute:,.0f} tokens/min is over {price.name}'s published limit "
                f"of {price.tokens_per_minute:,.0f} tokens/min"
            )
    return None


def _per_token_row(option: OptionCapacity, workload: Workload, usd_per_million: float) -> DecisionRow:
    """A per-token API is priced on the workload's volume whether measured or not; it meets the
    target only on a measured capacity that covers the load, within its published rate limits."""
    limit = _rate_limit_excess(option.price, workload)
    short = _shortfall(option, workload) if option.measured else None
    if option.measured:
        note = limit or short or "billed per token"
    else:
        note = f"{NOT_MEASURED}: list price, for information" + (f"; {limit}" if limit else "")
    return DecisionRow(
        option=option.name,
        price=option.price,
        capacity_requests_per_s=option.capacity_requests_per_s,
        capacity_tokens_per_s=option.capacity_tokens_per_s,
        instances=None,
        monthly_cost_usd=workload.tokens_per_month * usd_per_million / 1e6,
        effective_usd_per_million_tokens=usd_per_million,
        utilization_pct=_utilization(workload, option.capacity_tokens_per_s),
        meets_target=option.measured and limit is None and short is None,
        note=note,
        measured=option.measured,
        hardware_note=option.hardware_note if option.measured else None,
        capacity_interval_requests_per_s=option.capacity_interval_requests_per_s,
        measure_command=option.measure_command,
    )


def _shortfall(option: OptionCapacity, workload: Workload) -> str | None:
    """Why one unit of this option cannot carry the workload, or None when it can."""
    assert option.capacity_requests_per_s is not None and option.capacity_tokens_per_s is not None
    if option.capacity_requests_per_s < workload.peak_requests_per_s:
        return f"capacity {option.capacity_requests_per_s:g} requests/s is below the peak {workload.peak_requests_per_s:g}"
    if option.capacity_tokens_per_s < workload.mean_tokens_per_s:
        return f"capacity {option.capacity_tokens_per_s:,.0f} tokens/s is below the mean load {workload.mean_tokens_per_s:,.0f}"
    return None


def _utilization(workload: Workload, capacity_tokens_per_s: float | None) -> float | None:
    if not capacity_tokens_per_s or capacity_tokens_per_s <= 0:
        return None
    return 100.0 * workload.mean_tokens_per_s / capacity_tokens_per_s


def _no_rate(option: OptionCapacity) -> str:
    """Why a measured option holds no traffic: no rate met the target, or the search's answer met it
    but no rate did so confidently, so the lower bound it is provisioned at is 0."""
    interval, point = option.capacity_interval_requests_per_s, option.point_requests_per_s
    if interval is not None and point:
        return (
            f"no rate met the target with 95% confidence: the search's answer, {point:g} requests/s, does not "
            f"hold at its interval's lower bound ({interval[0]:g}-{interval[1]:g} requests/s)"
        )
    return "no rate met the target"


def _hourly_row(option: OptionCapacity, workload: Workload, usd_per_hour: float) -> DecisionRow:
    requests_per_s, tokens_per_s = option.capacity_requests_per_s, option.capacity_tokens_per_s
    if requests_per_s is None or tokens_per_s is None or requests_per_s <= 0 or tokens_per_s <= 0:
        return DecisionRow(
            option.name, option.price, requests_per_s, tokens_per_s, None, None, None, None, False,
            NOT_MEASURED if not option.measured else _no_rate(option),
            measured=option.measured, hardware_note=option.hardware_note if option.measured else None,
            capacity_interval_requests_per_s=option.capacity_interval_requests_per_s,
            measure_command=option.measure_command,
        )  # fmt: skip
    for_peak = math.ceil(workload.peak_requests_per_s / requests_per_s)
    for_volume = math.ceil(workload.mean_tokens_per_s / tokens_per_s)
    instances = max(for_peak, for_volume)
    monthly = usd_per_hour * HOURS_PER_MONTH * instances
    autoscaled = (
        hourly_profile_cost(workload.profile, requests_per_s, tokens_per_s, usd_per_hour)
        if workload.profile is not None
        else None
    )
    return DecisionRow(
        option=option.name,
        price=option.price,
        capacity_requests_per_s=requests_per_s,
        capacity_tokens_per_s=tokens_per_s,
        instances=instances,
        monthly_cost_usd=monthly,
        effective_usd_per_million_tokens=monthly / workload.tokens_per_month * 1e6,
        utilization_pct=_utilization(workload, instances * tokens_per_s),
        meets_target=autoscaled is None or autoscaled.meets_target,
        note=_hourly_note(for_peak >= for_volume, autoscaled),
        hardware_note=option.hardware_note,
        capacity_interval_requests_per_s=option.capacity_interval_requests_per_s,
        monthly_cost_autoscaled_usd=autoscaled.monthly_cost_autoscaled_usd if autoscaled else None,
        instances_per_hour=autoscaled.instances_per_hour if autoscaled else None,
    )


def _hourly_note(peak_sets_it: bool, autoscaled: ProfileCost | None) -> str:
    note = "set by the peak" if peak_sets_it else "set by the daily token volume"
    if autoscaled is None:
        return note
    if autoscaled.shortfall_hours:
        hours = ", ".join(f"{hour}:00" for hour in autoscaled.shortfall_hours)
        return f"the autoscaling maximum cannot carry the hours {hours}"
    return f"{note}; autoscaled {min(autoscaled.instances_per_hour)}-{max(autoscaled.instances_per_hour)} instances"


def decide(workload: Workload, options: Sequence[OptionCapacity], target: str) -> DecisionTable:
    """One row per option, in the given order, and the cheapest that meets the target (the first
    of equals)."""
    if not options:
        raise ReportError("a decision table needs at least one priced run")
    rows = []
    for option in options:
        figures = [f for f in (option.capacity_requests_per_s, option.capacity_tokens_per_s) if f is not None]
        if not all(math.isfinite(figure) for figure in figures):
            raise ReportError(f"{option.name}: capacity must be a finite number")
        if any(figure < 0 for figure in figures):
            raise ReportError(f"{option.name}: capacity must not be negative")
        if option.price.usd_per_million_tokens is not None:
            rows.append(_per_token_row(option, workload, option.price.usd_per_million_tokens))
        elif option.price.total_usd_per_hour is not None:
            rows.append(_hourly_row(option, workload, option.price.total_usd_per_hour))
        else:
            raise ReportError(f"{option.name}: price {option.price.name!r} is neither per token nor hourly")
    measured = tuple(row for row in rows if row.measured)
    meeting = [row for row in measured if row.meets_target and row.monthly_cost_usd is not None]
    on_its_hardware = [row for row in meeting if row.hardware_note is None]
    cheapest = min(on_its_hardware, key=lambda row: row.ranked_cost_usd, default=None)
    equals = tuple(
        row
        for row in on_its_hardware
        if cheapest is not None and row is not cheapest and within_noise(row, cheapest)
    )
    cheaper_elsewhere = min(meeting, key=lambda row: row.ranked_cost_usd, default=None)
    if cheaper_elsewhere is not None and (
        cheaper_elsewhere.hardware_note is None
        or (
            cheapest is not None
            and (cheapest.monthly_cost_usd or 0.0) <= (cheaper_elsewhere.monthly_cost_usd or 0.0)
        )
    ):
        cheaper_elsewhere = None
    return DecisionTable(
        workload,
        target,
        measured,
        cheapest,
        _assumptions(target),
        not_measured=tuple(row for row in rows if not row.measured),
        cheapest_on_other_hardware=cheaper_elsewhere,
        equal_to_cheapest=equals,
    )


def _assumptions(target: str) -> tuple[str, ...]:
    return (
        f"Capacity is the highest request rate that met the target ({target}) in the run's capacity search: "
        "open-loop cells of the shape or mix the run measured, latency counted from each request's "
        "planned send time. Where the search gives an interval, instances are provisioned at its lower "
        "bound. Traffic of other shapes needs its own search.",
        f"Hourly options pay every instance {HOURS_PER_MONTH:g} hours a month, busy or idle "
        "(infrastructure + license). Instances = the larger of ceil(peak requests/s / capacity requests/s) "
        "and ceil(mean tokens/s / capacity tokens/s): the peak is provisioned all month.",
        f"Per-token APIs pay tokens per day x {DAYS_PER_MONTH:g} days x the price per million tokens. "
        "Such an API meets the target only on a measured capacity that covers the peak and the mean token "
        "load, within the rate limits its pricing entry publishes.",
        f"An option without a capacity search is '{NOT_MEASURED}' and never an answer, whatever its list "
        "price: closed-loop throughput says nothing about a latency target, and a hosted API's latency is "
        "its provider's.",
        "A price is matched to the hardware the run measured (run.json, from the server's /info); a price "
        "for other hardware is flagged in its row and never chosen as the answer.",
        f"Effective USD per million tokens = monthly cost / (tokens per day x {DAYS_PER_MONTH:g} / 1e6): "
        "the price at this workload's utilization, where the study's cost table assumed full load.",
        f"Options are equal when their monthly costs are within {COST_TIE:.1%} of each other, or when they run "
        "at the same price and their capacity intervals overlap: the answer then names them all, not a winner.",
        "Not included: reserved or spot discounts, storage, egress, and the time of the people who run a "
        "deployment.",
    )
