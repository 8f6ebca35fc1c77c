"""Prices and the cost per million tokens.

A price is either per token (a hosted API) or per hour (an endpoint or a GPU server: infrastructure
plus license). An hourly price only becomes a price per token through a throughput, which is why
cost is computed here from a run's measured token throughput rather than stored.

The default pricing file, ``reports/data/pricing.toml``, holds the study's prices; ``--pricing FILE``
replaces it with another file of the same format (see that file's header).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from embed_bench.core.validation import positive_number
from reports.errors import ReportError

DEFAULT_PRICING_FILE = "pricing.toml"
_PER_TOKEN_KEYS = {"usd_per_million_tokens"}
_HOURLY_KEYS = {"infrastructure_usd_per_hour", "license_usd_per_hour"}
# Keys every entry may carry beside its figures: what it is, where the figure comes from, the
# hardware it pays for, a per-token API's published rate limits and the backend that measures it.
_OPTIONAL_KEYS = {
    "description",
    "source",
    "as_of",
    "gpu",
    "gpus",
    "vcpus",
    "hosted",
    "requests_per_minute",
    "tokens_per_minute",
    "backend",
}
HOSTED = "hosted"  # run.json's hardware of a provider's API (embed_bench.core.backends.HOSTED)


@dataclass(frozen=True)
class PricedHardware:
    """The hardware a price pays for: ``gpus`` x ``gpu`` (0 GPUs: a CPU instance of ``vcpus``), or a
    provider's hosted API."""

    gpu: str | None = None
    gpus: int = 0
    vcpus: int | None = None
    hosted: bool = False

    def describe(self) -> str:
        if self.hosted:
            return "hosted"
        cpus = f"{self.vcpus} vCPU" if self.vcpus else "vCPUs not given"
        return f"{self.gpus} x {self.gpu} ({cpus})" if self.gpus else cpus


@dataclass(frozen=True)
class Price:
    """One named price: ``usd_per_million_tokens`` or the two hourly figures, never both."""

    name: str
    description: str
    usd_per_million_tokens: float | None = None
    infrastructure_usd_per_hour: float | None = None
    license_usd_per_hour: float | None = None
    hardware: PricedHardware | None = None  # None: the entry does not say, so no run matches it
    source: str = ""
    as_of: str = ""
    requests_per_minute: float | None = None  # a per-token API's published limits, per key
    tokens_per_minute: float | None = None
    backend: str | None = None  # `embed-bench run --backend` that measures this option
    as_measured: bool = False  # the user's own rate for the hardware the run measured (--price)

    @property
    def total_usd_per_hour(self) -> float | None:
        if self.infrastructure_usd_per_hour is None:
            return None
        return self.infrastructure_usd_per_hour + (self.license_usd_per_hour or 0.0)


@dataclass(frozen=True)
class RunCost:
    """A run's price per million tokens at its mean and at its peak token throughput."""

    price: Price
    usd_per_million_tokens_at_mean: float | None
    usd_per_million_tokens_at_peak: float | None


def hourly_cost_per_million_tokens_usd(usd_per_hour: float, throughput_tokens_per_s: float) -> float:
    """The study's formula: hourly cost / (tokens per second x 3600 / 1e6)."""
    return usd_per_hour / (throughput_tokens_per_s * 3600 / 1e6)


def price_per_million_tokens_usd(
    price: Price, throughput_tokens_per_s: float | None, billed_per_counted: float = 1.0
) -> float | None:
    """A per-token price per million tokens *counted*: the API bills its own usage, so the price is
    scaled by the tokens it billed per token counted (``billed_per_counted``: server / counted
    tokens, 1 where the server reports no usage); an hourly price at the given throughput (None
    without one)."""
    if price.usd_per_million_tokens is not None:
        return price.usd_per_million_tokens * billed_per_counted
    if price.total_usd_per_hour is None or not throughput_tokens_per_s:
        return None
    return hourly_cost_per_million_tokens_usd(price.total_usd_per_hour, throughput_tokens_per_s)


def run_cost(
    price: Price,
    mean_tokens_per_s: float | None,
    peak_tokens_per_s: float | None,
    billed_per_counted: float = 1.0,
) -> RunCost:
    return RunCost(
        price=price,
        usd_per_million_tokens_at_mean=price_per_million_tokens_usd(
            price, mean_tokens_per_s, billed_per_counted
        ),
        usd_per_million_tokens_at_peak=price_per_million_tokens_usd(
            price, peak_tokens_per_s, billed_per_counted
        ),
    )


def _non_negative_number(source: str, key: str, value: Any) -> float:
    return positive_number(value, f"{source}: {key}", allow_zero=True, error=ReportError)


def _normalized_gpu(name: str) -> str:
    """``NVIDIA A100-SXM4-40GB`` and ``NVIDIA A100 40GB`` are both an A100: the model's first word
    after the vendor, as ``torch.cuda.get_device_name`` and price lists spell it."""
    words = name.replace("-", " ").upper().split()
    words = [word for word in words if word not in ("NVIDIA", "TESLA", "GEFORCE")]
    return words[0] if words else ""


def hardware_mismatch(price: Price, run_hardware: object) -> str | None:
    """Why ``price`` does not pay for the hardware a run measured (run.json's ``hardware``), or None
    when it does. A price applied to other hardware prices one machine's throughput at another's
    rate; the table and the answer say so where the figure stands."""
    if price.as_measured:
        return None
    if run_hardware is None:
        return "the run does not say what hardware served it"
    if price.hardware is None:
        return f"{price.name} does not say what hardware it pays for"
    priced = price.hardware
    if run_hardware == HOSTED and not priced.hosted:
        return (
            f"{price.name} is for {priced.describe()}; the run measured a hosted endpoint, "
            "whose hardware it does not record"
        )
    if priced.hosted:
        return (
            None
            if run_hardware == HOSTED
            else f"{price.name} is a hosted API, the run measured a server of its own"
        )
    if not isinstance(run_hardware, Mapping):
        return "the run's hardware record is not readable"
    measured_on = describe_run_hardware(run_hardware)
    if run_hardware.get("device") == "cuda":
        gpu = str(run_hardware.get("gpu") or "")
        if not priced.gpus or _normalized_gpu(priced.gpu or "") != _normalized_gpu(gpu):
            return f"{price.name} is for {priced.describe()}, the run was measured on {measured_on}"
        return None
    if priced.gpus or priced.vcpus != run_hardware.get("cpus"):
        return f"{price.name} is for {priced.describe()}, the run was measured on {measured_on}"
    return None


def describe_run_hardware(run_hardware: object) -> str:
    """run.json's ``hardware`` in a few words: ``1 x NVIDIA H200``, ``2 CPUs (Intel Xeon ...)``."""
    if run_hardware is None:
        return "unknown hardware"
    if run_hardware == HOSTED:
        return "a hosted API"
    if not isinstance(run_hardware, Mapping):
        return "unreadable hardware"
    if run_hardware.get("device") == "cuda":
        return f"1 x {run_hardware.get('gpu')}"
    return f"{run_hardware.get('cpus')} CPUs ({run_hardware.get('cpu')})"


def _priced_hardware(where: str, entry: Mapping[str, Any]) -> PricedHardware | None:
    if entry.get("hosted") is True:
        return PricedHardware(hosted=True)
    if "gpus" not in entry and "vcpus" not in entry:
        return None
    counts = {}
    for key in ("gpus", "vcpus"):
        value = entry.get(key, 0 if key == "gpus" else None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ReportError(f"{where}: {key} must be a whole number, found {value!r}")
        counts[key] = value
    gpu = entry.get("gpu")
    if bool(counts["gpus"]) != isinstance(gpu, str):
        raise ReportError(f'{where}: give gpu (its model, e.g. "NVIDIA L4") with gpus, or neither')
    return PricedHardware(gpu=gpu, gpus=counts["gpus"], vcpus=counts["vcpus"])


def _optional_fields(where: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {
        key: str(entry[key]) for key in ("description", "source", "as_of") if key in entry
    }
    fields["hardware"] = _priced_hardware(where, entry)
    for key in ("requests_per_minute", "tokens_per_minute"):
        if key in entry:
            fields[key] = positive_number(entry[key], f"{where}: {key}", error=ReportError)
    if "backend" in entry:
        fields["backend"] = str(entry["backend"])
    return fields


def parse_price(name: str, entry: Mapping[str, Any], source: str) -> Price:
    """Validate one table of a pricing file."""
    where = f"{source} [{name}]"
    unknown = set(entry) - _OPTIONAL_KEYS - _PER_TOKEN_KEYS - _HOURLY_KEYS
    if unknown:
        raise ReportError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; an entry holds its figures and "
            f"{', '.join(sorted(_OPTIONAL_KEYS))}"
        )
    keys = set(entry) - _OPTIONAL_KEYS
    if keys == _PER_TOKEN_KEYS:
        figures = {
            "usd_per_million_tokens": _non_negative_number(
                where, "usd_per_million_tokens", entry["usd_per_million_tokens"]
            )
        }
    elif keys == _HOURLY_KEYS:
        figures = {key: _non_negative_number(where, key, entry[key]) for key in sorted(_HOURLY_KEYS)}
    else:
        raise ReportError(
            f"{where}: give either usd_per_million_tokens or infrastructure_usd_per_hour + license_usd_per_hour "
            f"(and a description); found {', '.join(sorted(keys)) or 'nothing'}"
        )
    optional = _optional_fields(where, entry)
    optional.setdefault("description", "")
    if figures.keys() == _PER_TOKEN_KEYS and optional["hardware"] is None:
        optional["hardware"] = PricedHardware(hosted=True)  # billed per token: a provider's API
    return Price(name=name, **figures, **optional)


def load_price_book(path: Path | None = None) -> dict[str, Price]:
    """Every price in a pricing file (the packaged default when ``path`` is None), by name."""
    if path is None:
        resource = resources.files("reports") / "data" / DEFAULT_PRICING_FILE
        source, text = f"default {DEFAULT_PRICING_FILE}", resource.read_text(encoding="utf-8")
    else:
        source, text = str(path), _read(path)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ReportError(f"{source}: not a valid TOML pricing file ({exc})") from exc
    tables = {name: entry for name, entry in document.items() if isinstance(entry, dict)}
    if not tables or len(tables) != len(document):
        raise ReportError(f"{source}: a pricing file holds only [name] tables, one per price")
    return {name: parse_price(name, entry, source) for name, entry in tables.items()}


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"{path}: cannot read pricing file ({exc.strerror})") from exc


def look_up_price(book: Mapping[str, Price], name: str, source: str) -> Price:
    if name not in book:
        raise ReportError(f"unknown price {name!r} in {source}; known: {', '.join(sorted(book))}")
    return book[name]


def choose_prices(
    run_pricing_names: Sequence[str | None],
    pricing: str | None = None,
    usd_per_hour: float | None = None,
    usd_per_million_tokens: float | None = None,
) -> list[Price | None]:
    """The price of each run, from the command line or from each run's run.json ``pricing`` name.

    ``usd_per_hour`` / ``usd_per_million_tokens``: one custom price for every run.
    ``pricing`` naming an existing file: that file replaces the default one; each run is priced by
    its run.json name, or by the file's only entry when the run names none.
    ``pricing`` otherwise: a name in the default file, for every run.
    Neither: each run by its run.json name in the default file; a run that names none has no price.
    """
    if usd_per_hour is not None:
        custom = Price(
            "custom",
            f"--price {usd_per_hour:g} USD an hour: your own rate for the hardware each run measured",
            infrastructure_usd_per_hour=usd_per_hour,
            license_usd_per_hour=0.0,
            as_measured=True,
        )
        return [custom for _ in run_pricing_names]
    if usd_per_million_tokens is not None:
        custom = Price(
            "custom",
            f"--price-per-million-tokens {usd_per_million_tokens:g}",
            usd_per_million_tokens=usd_per_million_tokens,
        )
        return [custom for _ in run_pricing_names]
    if pricing is not None and not Path(pricing).is_file():
        if pricing.endswith(".toml") or "/" in pricing:
            raise ReportError(f"--pricing {pricing}: no such pricing file")
        price = look_up_price(load_price_book(), pricing, f"the default {DEFAULT_PRICING_FILE} (--pricing)")
        return [price for _ in run_pricing_names]
    book = load_price_book(Path(pricing) if pricing else None)
    source = pricing or f"the default {DEFAULT_PRICING_FILE}"
    only = next(iter(book.values())) if len(book) == 1 else None
    return [
        look_up_price(book, name, f"{source} (run.json pricing)") if name else only
        for name in run_pricing_names
    ]
